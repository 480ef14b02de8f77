"""Did the search gain anything? Winner vs baseline, trained with the same seeds, tested once each.

Two views, both from scipy.stats, none by hand:
- over seeds: the paired differences of test accuracy (seed i for both), a paired t-test and
  its 95% confidence interval of the mean gain;
- over images: McNemar's exact test on the test images one model got right and the other wrong,
  one per seed pair (a binomial test of the discordant counts).
And time-to-accuracy: when the winner's mean validation curve first reaches the baseline's
final validation accuracy, in epochs and training seconds.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from hpo.trial_terms import METRIC
from mnist.evaluate import mcnemar_p_value


def paired_gain(winner_acc: Sequence[float], baseline_acc: Sequence[float]) -> dict[str, Any]:
    """Mean gain in points (winner - baseline, x100), its 95% CI and p-value (paired t over seeds).

    With one seed there is no interval: the CI and p-value are None.
    """
    winner, baseline = np.asarray(winner_acc, float), np.asarray(baseline_acc, float)
    if winner.shape != baseline.shape or winner.size == 0:
        raise ValueError("winner and baseline need the same, non-zero number of seeds")
    gain = 100 * float(np.mean(winner - baseline))
    if winner.size < 2:
        return {"gain_points": gain, "gain_ci95_points": None, "p_value": None}
    differences = 100 * (winner - baseline)
    if np.all(differences == differences[0]):  # no spread: the t-statistic is undefined, the interval a point
        return {"gain_points": gain, "gain_ci95_points": [gain, gain], "p_value": 0.0 if gain else 1.0}
    result = stats.ttest_rel(100 * winner, 100 * baseline)
    interval = result.confidence_interval(0.95)
    return {"gain_points": gain, "gain_ci95_points": [float(interval.low), float(interval.high)],
            "p_value": float(result.pvalue)}


def verdict(ci95: list[float] | None) -> str:
    """Plain words for the interval: significant only when it excludes 0."""
    if ci95 is None:
        return "no interval with one seed (use --seeds 2 or more)"
    low, high = ci95
    if low > 0:
        return "significant gain (the 95% interval is above 0)"
    if high < 0:
        return "significant loss (the 95% interval is below 0)"
    return "not significant (the 95% interval holds 0)"


def mean_curve(histories: Sequence[Sequence[dict[str, Any]]], key: str) -> np.ndarray:
    """Per-epoch mean of `key` over runs (all of the same length)."""
    return np.mean([[row[key] for row in history] for history in histories], axis=0)


def time_to_accuracy(histories: Sequence[Sequence[dict[str, Any]]], target: float) -> dict[str, Any] | None:
    """First epoch (and cumulative training seconds) at which the mean validation curve reaches `target`."""
    accuracy = mean_curve(histories, METRIC)
    seconds = np.cumsum(mean_curve(histories, "epoch_time_s"))
    reached = np.flatnonzero(accuracy >= target)
    if reached.size == 0:
        return None
    return {"epoch": int(reached[0] + 1), "seconds": float(seconds[reached[0]])}


def compare(winner_acc: Sequence[float], baseline_acc: Sequence[float], winner_correct: Sequence[np.ndarray],
            baseline_correct: Sequence[np.ndarray], winner_histories: Sequence[Sequence[dict[str, Any]]],
            baseline_histories: Sequence[Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """Everything comparison.json holds, from the per-seed results of both."""
    gain = paired_gain(winner_acc, baseline_acc)
    result: dict[str, Any] = {
        "winner_test_acc": [float(a) for a in winner_acc], "baseline_test_acc": [float(a) for a in baseline_acc],
        **gain, "p_value_method": "paired t-test over seeds (scipy.stats.ttest_rel)",
        "verdict": verdict(gain["gain_ci95_points"]),
        "mcnemar_p_values": [mcnemar_p_value(w, b) for w, b in zip(winner_correct, baseline_correct)],
    }
    has_validation = all(not math.isnan(row[METRIC]) for history in baseline_histories for row in history)
    if not has_validation:
        result["time_to_accuracy"] = None
        result["time_to_accuracy_note"] = "trained without a validation split (--full): no validation curve"
        return result
    target = float(mean_curve(baseline_histories, METRIC)[-1])
    result["time_to_accuracy"] = {"target_val_acc": target, "what": "the baseline's final validation accuracy "
                                  "(mean over seeds); first epoch each mean curve reaches it",
                                  "winner": time_to_accuracy(winner_histories, target),
                                  "baseline": time_to_accuracy(baseline_histories, target)}
    return result


def describe(comparison: dict[str, Any]) -> list[str]:
    """The printed summary of a comparison."""
    winner, baseline = comparison["winner_test_acc"], comparison["baseline_test_acc"]
    lines = [f"test accuracy over {len(winner)} seed(s): winner {100 * np.mean(winner):.2f}%, "
             f"baseline {100 * np.mean(baseline):.2f}%",
             f"gain {comparison['gain_points']:+.3f} points"]
    if comparison["gain_ci95_points"] is not None:
        low, high = comparison["gain_ci95_points"]
        lines[-1] += f", 95% CI [{low:+.3f}, {high:+.3f}], p = {comparison['p_value']:.3g} (paired t over seeds)"
    lines.append(comparison["verdict"])
    lines.append("McNemar (per-image, per seed pair) p = " + ", ".join(f"{p:.3g}" for p in comparison["mcnemar_p_values"]))
    timing = comparison.get("time_to_accuracy")
    if timing:
        def when(entry: dict[str, Any] | None) -> str:
            return "never" if entry is None else f"epoch {entry['epoch']}, {entry['seconds']:.0f} s of training"
        lines.append(f"reaching the baseline's final val_acc {timing['target_val_acc']:.4f}: "
                     f"winner {when(timing['winner'])}; baseline {when(timing['baseline'])}")
    return lines
