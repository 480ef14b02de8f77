"""The statistics of best.py on constructed cases whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from hpo.comparison import compare, paired_gain, time_to_accuracy, verdict
from mnist.evaluate import mcnemar_p_value


def test_paired_gain_matches_the_t_interval_by_formula() -> None:
    # Differences of 1, 2, 3 points: mean 2, sd 1, t(0.975, df=2) = 4.302653.
    result = paired_gain([0.991, 0.992, 0.993], [0.981, 0.972, 0.963])
    half_width = 4.302652729911275 / np.sqrt(3)
    assert result["gain_points"] == pytest.approx(2.0)
    assert result["gain_ci95_points"] == pytest.approx([2 - half_width, 2 + half_width])
    assert result["p_value"] == pytest.approx(0.07418, abs=1e-4)  # t = 2 * sqrt(3) = 3.4641, df 2
    assert verdict(result["gain_ci95_points"]).startswith("not significant")


def test_a_consistent_gain_is_significant_and_pairing_matters() -> None:
    baseline = [0.990, 0.994, 0.991, 0.995, 0.992]  # seeds differ a lot...
    winner = [b + 0.002 + d for b, d in zip(baseline, [0.0001, -0.0001, 0.0002, 0.0, -0.0002])]  # ...the gain does not
    result = paired_gain(winner, baseline)
    low, high = result["gain_ci95_points"]
    assert 0 < low < 0.2 < high < 0.3 and result["p_value"] < 0.001
    assert verdict(result["gain_ci95_points"]).startswith("significant gain")


def test_one_seed_has_no_interval() -> None:
    result = paired_gain([0.99], [0.98])
    assert result["gain_points"] == pytest.approx(1.0) and result["gain_ci95_points"] is None
    assert "one seed" in verdict(None)


def test_mcnemar_counts_only_the_discordant_images() -> None:
    agree = np.ones(1000, dtype=bool)
    winner, baseline = agree.copy(), agree.copy()
    baseline[:10] = False  # the winner alone gets 10 images right, the baseline alone none
    assert mcnemar_p_value(winner, baseline) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_p_value(agree, agree) == 1.0
    baseline[10:20], winner[10:20] = True, False  # 10 each way: no evidence
    assert mcnemar_p_value(winner, baseline) == pytest.approx(1.0)


def history(accuracies: list[float], seconds: float = 10.0) -> list[dict]:
    return [{"epoch": i + 1, "val_acc": a, "epoch_time_s": seconds} for i, a in enumerate(accuracies)]


def test_time_to_accuracy_is_the_first_epoch_the_mean_curve_reaches_the_target() -> None:
    runs = [history([0.95, 0.98, 0.99, 0.995]), history([0.97, 0.98, 0.99, 0.993])]
    assert time_to_accuracy(runs, 0.985) == {"epoch": 3, "seconds": 30.0}
    assert time_to_accuracy(runs, 0.999) is None


def test_compare_writes_every_key_best_py_promises() -> None:
    truth_right = np.ones(100, dtype=bool)
    result = compare([0.99, 0.992], [0.98, 0.981], [truth_right, truth_right], [truth_right, truth_right],
                     [history([0.98, 0.99]), history([0.985, 0.99])], [history([0.96, 0.98]), history([0.97, 0.98])])
    assert {"winner_test_acc", "baseline_test_acc", "gain_points", "gain_ci95_points", "p_value"} <= set(result)
    assert result["time_to_accuracy"]["target_val_acc"] == pytest.approx(0.98)
    assert result["time_to_accuracy"]["winner"] == {"epoch": 1, "seconds": 10.0}
    assert result["time_to_accuracy"]["baseline"] == {"epoch": 2, "seconds": 20.0}
    assert result["gain_points"] == pytest.approx(1.05) and result["mcnemar_p_values"] == [1.0, 1.0]


def test_without_validation_there_is_no_time_to_accuracy() -> None:
    right = np.ones(10, dtype=bool)
    no_val = [history([float("nan")] * 2)]
    result = compare([0.99], [0.98], [right], [right], no_val, no_val)
    assert result["time_to_accuracy"] is None and "--full" in result["time_to_accuracy_note"]
