"""Benchmark: what early stopping costs and saves against FIFO + random search, same samples, data and budget, one run.

    python -m benchmarks.schedulers [--num-samples 20] [--max-epochs 9] [--limit 12000] [--seeds 0 1 2 3 4]

Three arms over the default search space, each run once per searcher seed (the seed also
seeds every trial's training and ASHA's bracket draws; with two trials at a time ASHA's and
TPE's decisions still depend on which trial reports first, so a rerun can differ by a few
epochs); about 75 minutes for the default 5 seeds on a free 2-core CPU:
    asha_tpe     plain ASHA: grace period 1 epoch, reduction factor 4, one bracket (rungs at 1 and 4)
    tied_tpe     ASHA with the budget-tied grace period (max_epochs // 4), the defaults' scheduler
    hedged_tpe   the hedge: the same with a second bracket, whose trials are first judged at 4
    fifo_random  every trial trained to the full budget, random sampling
Prints, per seed and as means with their spread over seeds: epochs, wall time, best val_acc,
and the epochs each arm trained before it first passed the tutorial's final val_acc; then the
paired comparison hedge minus FIFO over seeds with its 95% interval (scipy), the choice (the
best mean val_acc, the fewest epochs among the arms within 0.05 points of it) and the chosen arm
minus each other arm, paired the same way, and (means):
    ARM_epochs_ratio_vs_fifo: X    ARM_best_val_acc_gap_points: Y (FIFO minus ARM), for each ASHA arm
    train_share_of_wall: Z         (share of the searches' wall time spent training)
`--arms` runs some of them (at a 30-epoch budget: --arms asha_tpe tied_tpe hedged_tpe).
Writes anytime.png (best-so-far against cumulative epochs, mean over seeds, band = min..max)
into the run's folder, --storage-path/--name; the same command with the same --name continues a
stopped run (benchmarks/arms.py).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from scipy import stats

from benchmarks.arms import BenchRun, parse_bench_flags, print_runs
from hpo.comparison import paired_gain
from hpo.experiment import resolve_experiment
from hpo.plots import plot_arms_anytime
from mnist.errors import run_cli

ARMS = {  # label: (scheduler, searcher, grace_period (None: max_epochs // reduction_factor), brackets)
    "asha_tpe": ("asha", "tpe", 1, 1),
    "tied_tpe": ("asha", "tpe", None, 1),
    "hedged_tpe": ("asha", "tpe", 1, 2),
    "fifo_random": ("fifo", "random", None, 1),
}


def print_paired(what: str, first: list[dict[str, Any]], second: list[dict[str, Any]]) -> None:
    """`what` ("hedge minus FIFO"): first arm minus second, seed by seed, with a 95% interval over seeds (scipy's
    paired t), for the best val_acc and the epochs."""
    accuracy = paired_gain([row["best_val_acc"] for row in first], [row["best_val_acc"] for row in second])
    low_high = accuracy["gain_ci95_points"]
    print(f"paired over seeds, {what}: best val_acc {accuracy['gain_points']:+.3f} points, "
          + ("no interval (one seed)" if low_high is None else f"95% CI [{low_high[0]:+.3f}, {low_high[1]:+.3f}]"))
    epochs = np.array([row["epochs"] for row in first], float) - np.array([row["epochs"] for row in second], float)
    ratios = ", ".join(f"{row['epochs'] / other['epochs']:.3f}" for row, other in zip(first, second))
    interval = (stats.t.interval(0.95, len(epochs) - 1, loc=epochs.mean(), scale=stats.sem(epochs))
                if len(epochs) > 1 and epochs.std() > 0 else None)
    print(f"paired over seeds, {what}: epochs {epochs.mean():+.1f}, "
          + ("no interval" if interval is None else f"95% CI [{interval[0]:+.1f}, {interval[1]:+.1f}]")
          + f"; epochs ratio per seed {ratios}")


# The training data as it stood when the 5-seed, 30-epoch run began (before the experiments' fixed synthetic
# digits), so that seeds resumed in a later session compare with the ones before.
BENCH_TRAIN = {"synthetic": 0.0}

# Best validation accuracies within this many points count as a tie, settled by the fewer epochs: five seeds'
# means differ by a few hundredths of a point from run to run.
TIE_POINTS = 0.05


def choose_arm(mean: dict[str, dict[str, float]]) -> tuple[str, list[str]]:
    """The arm with the best mean validation accuracy, the one with the fewest epochs among those within
    TIE_POINTS of it ("accuracy at the least epochs"); and the arms so tied."""
    best = max(row["best_val_acc"] for row in mean.values())
    tied = [label for label, row in mean.items() if 100 * (best - row["best_val_acc"]) <= TIE_POINTS]
    return min(tied, key=lambda name: mean[name]["epochs"]), tied


def main(argv: list[str] | None = None) -> int:
    args = parse_bench_flags(argv, __doc__, "results/bench", arms=list(ARMS))
    bench = BenchRun(args)

    def searches() -> Iterator[tuple[str, int, dict[str, Any]]]:
        for seed in args.seeds:
            for label in args.arms:
                scheduler, searcher, grace, brackets = ARMS[label]
                yield label, seed, resolve_experiment(
                    {"num_samples": args.num_samples, "max_epochs": args.max_epochs, "grace_period": grace,
                     "reduction_factor": 4, "brackets": brackets, "max_concurrent": args.max_concurrent,
                     "tpe_startup_trials": 5, "scheduler": scheduler, "searcher": searcher, "seed": seed,
                     "train": {"limit": args.limit, **BENCH_TRAIN}}, {}, label)

    runs = bench.run("benchmarks.schedulers", searches)
    print(f"{args.num_samples} samples, {args.max_epochs} epochs budget, {args.limit} images, "
          f"{args.max_concurrent} trials at once, searcher seeds {args.seeds}")
    print_runs(runs, args.seeds)
    if {"hedged_tpe", "fifo_random"} <= set(runs):
        print_paired("hedge minus FIFO", runs["hedged_tpe"], runs["fifo_random"])
    plot = bench.folder / "anytime.png"
    plot_arms_anytime({label: [row["anytime"] for row in rows] for label, rows in runs.items()}, plot)
    mean = {label: {key: float(np.mean([row[key] for row in rows])) for key in ("epochs", "best_val_acc", "train_share")}
            for label, rows in runs.items()}
    print(f"best-so-far plot: {plot}")
    chosen, tied = choose_arm(mean)
    print(f"choice: {chosen} (best val_acc within {TIE_POINTS} points of the best arm: {', '.join(tied)}; the fewest "
          f"epochs among them, {mean[chosen]['epochs']:.1f})")
    for other in [label for label in runs if label != chosen]:  # what the choice buys and costs, seed by seed
        print_paired(f"{chosen} minus {other}", runs[chosen], runs[other])
    if "fifo_random" in mean:
        fifo = mean["fifo_random"]
        for label in [label for label in ("asha_tpe", "tied_tpe", "hedged_tpe") if label in mean]:
            print(f"{label}_epochs_ratio_vs_fifo: {mean[label]['epochs'] / fifo['epochs']:.3f}    "
                  f"{label}_best_val_acc_gap_points: {100 * (fifo['best_val_acc'] - mean[label]['best_val_acc']):.3f}")
    shares = [row["train_share"] for row in mean.values()]
    print(f"train_share_of_wall: {float(np.mean(shares)):.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
