"""Benchmark: is telling Optuna PRUNED worth its code? Our searcher against Ray's stock OptunaSearch, one run.

    python -m benchmarks.searchers [--num-samples 20] [--max-epochs 9] [--limit 12000] [--seeds 0 1 2 3 4]

Two arms over the default search space, the same ASHA (grace period 1 epoch, reduction factor 4), the same
seeded TPE sampler, samples, data and budget, run once per seed (the seed also seeds every trial's training):
    pruned    hpo.searcher.OptunaSearcher: a trial ASHA stopped is told PRUNED with its per-epoch values
    complete  Ray's stock OptunaSearch: such a trial is told COMPLETE with its last value, which TPE takes for
              a final score
Prints each search (epochs trained, the winner's best val_acc), the means over seeds, and the paired
difference pruned minus complete with its 95% interval (scipy's paired t over seeds), then
    winner_val_acc_gain_points: X   (pruned minus complete; its interval says whether PRUNED is worth it)
    epochs_ratio_pruned_vs_complete: R
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from scipy import stats

from benchmarks.arms import BenchRun, parse_bench_flags, print_runs
from hpo.comparison import paired_gain
from hpo.experiment import resolve_experiment
from mnist.errors import run_cli

ARMS = {"pruned": "tpe", "complete": "tpe-complete"}  # label: the experiment's searcher


def paired_lines(pruned: list[dict[str, Any]], complete: list[dict[str, Any]]) -> list[str]:
    """Pruned minus complete, seed by seed, with 95% intervals over seeds."""
    accuracy = paired_gain([row["best_val_acc"] for row in pruned], [row["best_val_acc"] for row in complete])
    low_high = accuracy["gain_ci95_points"]
    epochs = np.array([row["epochs"] for row in pruned], float) - np.array([row["epochs"] for row in complete], float)
    interval = (stats.t.interval(0.95, len(epochs) - 1, loc=epochs.mean(), scale=stats.sem(epochs))
                if len(epochs) > 1 and epochs.std() > 0 else None)
    verdict = ("no interval (one seed)" if low_high is None else
               "PRUNED finds better winners (interval above 0)" if low_high[0] > 0 else
               "PRUNED finds worse winners (interval below 0)" if low_high[1] < 0 else
               "no difference shown (the interval holds 0)")
    return [f"paired over seeds, pruned minus complete: winner val_acc {accuracy['gain_points']:+.3f} points, "
            + ("no interval" if low_high is None else f"95% CI [{low_high[0]:+.3f}, {low_high[1]:+.3f}]")
            + f": {verdict}",
            f"paired over seeds, pruned minus complete: epochs {epochs.mean():+.1f}, "
            + ("no interval" if interval is None else f"95% CI [{interval[0]:+.1f}, {interval[1]:+.1f}]")]


def main(argv: list[str] | None = None) -> int:
    args = parse_bench_flags(argv, __doc__, "results/bench-searchers")

    def searches() -> Iterator[tuple[str, int, dict[str, Any]]]:
        for seed in args.seeds:
            for label, searcher in ARMS.items():
                yield label, seed, resolve_experiment(
                    {"num_samples": args.num_samples, "max_epochs": args.max_epochs, "grace_period": 1,
                     "reduction_factor": 4, "max_concurrent": args.max_concurrent, "tpe_startup_trials": 5,
                     "searcher": searcher, "seed": seed, "train": {"limit": args.limit}}, {}, label)

    runs = BenchRun(args).run("benchmarks.searchers", searches)
    print(f"{args.num_samples} samples, {args.max_epochs} epochs budget, {args.limit} images, "
          f"{args.max_concurrent} trials at once, ASHA grace 1 / reduction 4, seeds {args.seeds}")
    print_runs(runs, args.seeds)
    for line in paired_lines(runs["pruned"], runs["complete"]):
        print(line)
    mean = {label: {key: float(np.mean([row[key] for row in rows])) for key in ("epochs", "best_val_acc")}
            for label, rows in runs.items()}
    print(f"winner_val_acc_gain_points: {100 * (mean['pruned']['best_val_acc'] - mean['complete']['best_val_acc']):.3f}")
    print(f"epochs_ratio_pruned_vs_complete: {mean['pruned']['epochs'] / mean['complete']['epochs']:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
