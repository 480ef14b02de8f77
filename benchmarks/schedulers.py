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
best mean val_acc, the fewest epochs among the arms within 0.05 points of it), and (means):
    ARM_epochs_ratio_vs_fifo: X    ARM_best_val_acc_gap_points: Y (FIFO minus ARM), for each ASHA arm
    train_share_of_wall: Z         (share of the searches' wall time spent training)
`--arms` runs some of them (at a 30-epoch budget: --arms asha_tpe tied_tpe hedged_tpe).
Writes anytime.png (best-so-far against cumulative epochs, mean over seeds, band = min..max)
into the --storage-path folder.
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hpo.comparison import paired_gain
from hpo.driver import run_search
from hpo.experiment import resolve_experiment
from hpo.plots import plot_arms_anytime
from hpo.storage import ExperimentStore
from hpo.summary import anytime_curve, trial_tables
from mnist.errors import UserError, run_cli

ARMS = {  # label: (scheduler, searcher, grace_period (None: max_epochs // reduction_factor), brackets)
    "asha_tpe": ("asha", "tpe", 1, 1),
    "tied_tpe": ("asha", "tpe", None, 1),
    "hedged_tpe": ("asha", "tpe", 1, 2),
    "fifo_random": ("fifo", "random", None, 1),
}


def timed_search(experiment: dict[str, Any], folder: Path, address: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    results, _ = run_search(experiment, ExperimentStore(str(folder.parent), folder.name), resume=False, address=address)
    wall = time.perf_counter() - started
    trials, history = trial_tables(results, experiment)
    anytime = anytime_curve(history, trials)
    slots = experiment["max_concurrent"]
    return {"epochs": int(trials["epochs"].sum()), "wall_s": wall, "best_val_acc": float(trials["best_val_acc"].max()),
            "train_s": float(trials["time_s"].sum()), "train_share": float(trials["time_s"].sum()) / (wall * slots),
            "passed_at_epochs": anytime["passed_at_epochs"], "anytime": anytime}


def spread(values: list[float]) -> str:
    array = np.asarray(values, float)
    return f"{array.mean():.3f} (sd {array.std(ddof=1) if len(array) > 1 else 0.0:.3f})"


def print_runs(runs: dict[str, list[dict[str, Any]]], seeds: list[int]) -> None:
    for label, rows in runs.items():
        for seed, row in zip(seeds, rows):
            passed = (f"passed the tutorial's final val_acc after {row['passed_at_epochs']} epochs"
                      if row["passed_at_epochs"] is not None else "never passed the tutorial's final val_acc")
            print(f"{label:12s} seed {seed}  epochs {row['epochs']:4d}  wall {row['wall_s']:7.1f} s  "
                  f"best val_acc {row['best_val_acc']:.4f}  {passed}  training {row['train_s']:.1f} s")
    for label, rows in runs.items():
        passed = [row["passed_at_epochs"] for row in rows if row["passed_at_epochs"] is not None]
        print(f"{label:12s} over seeds: epochs {spread([row['epochs'] for row in rows])}  best val_acc % "
              f"{spread([100 * row['best_val_acc'] for row in rows])}  epochs to pass the tutorial "
              f"{spread(passed) if passed else 'never'} ({len(passed)}/{len(rows)} passed)")


def print_paired(hedged: list[dict[str, Any]], fifo: list[dict[str, Any]]) -> None:
    """Hedge minus FIFO, seed by seed, with a 95% interval over seeds (scipy's paired t)."""
    accuracy = paired_gain([row["best_val_acc"] for row in hedged], [row["best_val_acc"] for row in fifo])
    low_high = accuracy["gain_ci95_points"]
    print(f"paired over seeds, hedge minus FIFO: best val_acc {accuracy['gain_points']:+.3f} points, "
          + ("no interval (one seed)" if low_high is None else f"95% CI [{low_high[0]:+.3f}, {low_high[1]:+.3f}]"))
    epochs = np.array([row["epochs"] for row in hedged], float) - np.array([row["epochs"] for row in fifo], float)
    ratios = ", ".join(f"{row['epochs'] / other['epochs']:.3f}" for row, other in zip(hedged, fifo))
    interval = (stats.t.interval(0.95, len(epochs) - 1, loc=epochs.mean(), scale=stats.sem(epochs))
                if len(epochs) > 1 and epochs.std() > 0 else None)
    print(f"paired over seeds, hedge minus FIFO: epochs {epochs.mean():+.1f}, "
          + ("no interval" if interval is None else f"95% CI [{interval[0]:+.1f}, {interval[1]:+.1f}]")
          + f"; epochs ratio per seed {ratios}")


# Best validation accuracies within this many points count as a tie, settled by the fewer epochs: five seeds'
# means differ by a few hundredths of a point from run to run.
TIE_POINTS = 0.05


def choose_arm(mean: dict[str, dict[str, float]]) -> str:
    """The arm with the best mean validation accuracy, the one with the fewest epochs among those within
    TIE_POINTS of it: "accuracy at the least epochs"."""
    best = max(row["best_val_acc"] for row in mean.values())
    tied = [label for label, row in mean.items() if 100 * (best - row["best_val_acc"]) <= TIE_POINTS]
    label = min(tied, key=lambda name: mean[name]["epochs"])
    return (f"{label} (best val_acc within {TIE_POINTS} points of the best arm: {', '.join(tied)}; the fewest "
            f"epochs among them, {mean[label]['epochs']:.1f})")


def parse_bench_flags(argv: list[str] | None, doc: str, storage: str,
                      arms: list[str] | None = None) -> argparse.Namespace:
    """The flags of every benchmark that compares arms of searches: their size, the seeds (one run of each arm
    per seed), where they go and which cluster they join."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=20, help="trials of each search")
    parser.add_argument("--max-epochs", type=int, default=9, help="epoch budget of a trial")
    parser.add_argument("--limit", type=int, default=12000, help="training images (first N of the 60,000)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once in every search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="searcher seeds: one run of each arm per seed")
    parser.add_argument("--storage-path", default=storage, help=f"where the searches go (default {storage})")
    parser.add_argument("--address", default=None,
                        help="a Ray cluster every search joins (default: RAY_ADDRESS, else a private one per search)")
    if arms:
        parser.add_argument("--arms", nargs="+", choices=arms, default=arms, help="the arms to run (default all)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds must differ, got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_bench_flags(argv, __doc__, "results/bench", arms=list(ARMS))
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in args.arms}
    for seed in args.seeds:
        for label in args.arms:
            scheduler, searcher, grace, brackets = ARMS[label]
            experiment = resolve_experiment({"num_samples": args.num_samples, "max_epochs": args.max_epochs,
                                             "grace_period": grace, "reduction_factor": 4, "brackets": brackets,
                                             "max_concurrent": args.max_concurrent, "tpe_startup_trials": 5,
                                             "scheduler": scheduler, "searcher": searcher, "seed": seed,
                                             "train": {"limit": args.limit}}, {}, label)
            runs[label].append(timed_search(experiment, Path(args.storage_path) / f"{label}-seed{seed}-{stamp}",
                                            args.address))
    print(f"{args.num_samples} samples, {args.max_epochs} epochs budget, {args.limit} images, "
          f"{args.max_concurrent} trials at once, searcher seeds {args.seeds}")
    print_runs(runs, args.seeds)
    if {"hedged_tpe", "fifo_random"} <= set(runs):
        print_paired(runs["hedged_tpe"], runs["fifo_random"])
    plot = Path(args.storage_path) / f"anytime-{stamp}.png"
    plot_arms_anytime({label: [row["anytime"] for row in rows] for label, rows in runs.items()}, plot)
    mean = {label: {key: float(np.mean([row[key] for row in rows])) for key in ("epochs", "best_val_acc", "train_share")}
            for label, rows in runs.items()}
    print(f"best-so-far plot: {plot}")
    print(f"choice: {choose_arm(mean)}")
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
