"""Benchmark: what early stopping costs and saves against FIFO + random search, same samples, data and budget, one run.

    python hpo/bench.py [--num-samples 20] [--max-epochs 9] [--limit 12000] [--seeds 0 1 2]

Three arms over the default search space, each run once per searcher seed (the seed also
seeds every trial's training; with two trials at a time ASHA's and TPE's decisions still
depend on which trial reports first, so a rerun can differ by a few epochs), and the figures
are means over seeds (about 45 minutes for the default 3 seeds on a free 2-core CPU):
    asha_tpe     ASHA as before: grace period 1 epoch, reduction factor 4 (rungs at 1 and 4)
    hedged_tpe   the default now: ASHA's grace period tied to the budget (max_epochs // 4)
    fifo_random  every trial trained to the full budget, random sampling
Prints each run's epochs, wall time and best val_acc, then (means over seeds):
    epochs_ratio_asha_vs_fifo: X           best_val_acc_gap_points: Y (FIFO minus ASHA)
    hedged_epochs_ratio_vs_fifo: R         (target <= 0.5)
    hedged_best_val_acc_gap_points: G      (FIFO minus hedged, target <= 0.10)
    train_share_of_wall: Z                 (share of the hedged search's wall time spent training)
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from hpo.driver import run_search
from hpo.experiment import resolve_experiment
from hpo.storage import ExperimentStore
from hpo.summary import trial_tables
from mnist.errors import run_cli


def timed_search(experiment: dict[str, Any], folder: Path) -> dict[str, float]:
    started = time.perf_counter()
    results, resources = run_search(experiment, ExperimentStore(str(folder.parent), folder.name), resume=False,
                                    address=None)
    wall = time.perf_counter() - started
    trials, _ = trial_tables(results, experiment)
    slots = experiment["max_concurrent"]
    return {"epochs": int(trials["epochs"].sum()), "wall_s": wall, "best_val_acc": float(trials["best_val_acc"].max()),
            "train_s": float(trials["time_s"].sum()), "train_share": float(trials["time_s"].sum()) / (wall * slots)}


ARMS = {  # label: (scheduler, searcher, grace_period; None = tied to the budget)
    "asha_tpe": ("asha", "tpe", 1),
    "hedged_tpe": ("asha", "tpe", None),
    "fifo_random": ("fifo", "random", None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=20, help="trials of each search")
    parser.add_argument("--max-epochs", type=int, default=9, help="epoch budget of a trial")
    parser.add_argument("--limit", type=int, default=12000, help="training images (first N of the 60,000)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once in every search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="searcher seeds: one run of each arm per seed")
    parser.add_argument("--storage-path", default="results/bench", help="where the searches are written")
    args = parser.parse_args(argv)
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in ARMS}
    for seed in args.seeds:
        for label, (scheduler, searcher, grace) in ARMS.items():
            experiment = resolve_experiment({"num_samples": args.num_samples, "max_epochs": args.max_epochs,
                                             "grace_period": grace, "reduction_factor": 4,
                                             "max_concurrent": args.max_concurrent, "tpe_startup_trials": 5,
                                             "scheduler": scheduler, "searcher": searcher, "seed": seed,
                                             "train": {"limit": args.limit}}, {}, label)
            runs[label].append(timed_search(experiment, Path(args.storage_path) / f"{label}-seed{seed}-{stamp}"))
    print(f"{args.num_samples} samples, {args.max_epochs} epochs budget, {args.limit} images, "
          f"{args.max_concurrent} trials at once, searcher seeds {args.seeds}")
    for label, rows in runs.items():
        for seed, row in zip(args.seeds, rows):
            print(f"{label:12s} seed {seed}  epochs {row['epochs']:4d}  wall {row['wall_s']:7.1f} s  "
                  f"best val_acc {row['best_val_acc']:.4f}  training {row['train_s']:.1f} s")
    for label, rows in runs.items():
        best = 100 * np.array([row["best_val_acc"] for row in rows])
        epochs = np.array([row["epochs"] for row in rows])
        print(f"{label:12s} over seeds: epochs {epochs.mean():.1f} (sd {epochs.std(ddof=min(1, len(rows) - 1)):.1f})  "
              f"best val_acc {best.mean():.3f}% (sd {best.std(ddof=min(1, len(rows) - 1)):.3f})")
    mean = {label: {key: float(np.mean([row[key] for row in rows])) for key in rows[0]} for label, rows in runs.items()}
    asha, hedged, fifo = mean["asha_tpe"], mean["hedged_tpe"], mean["fifo_random"]
    print(f"epochs_ratio_asha_vs_fifo: {asha['epochs'] / fifo['epochs']:.3f}")
    print(f"best_val_acc_gap_points: {100 * (fifo['best_val_acc'] - asha['best_val_acc']):.3f}")
    print(f"hedged_epochs_ratio_vs_fifo: {hedged['epochs'] / fifo['epochs']:.3f}")
    print(f"hedged_best_val_acc_gap_points: {100 * (fifo['best_val_acc'] - hedged['best_val_acc']):.3f}")
    print(f"train_share_of_wall: {hedged['train_share']:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
