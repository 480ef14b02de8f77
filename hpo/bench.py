"""Benchmark: what ASHA + TPE buys over FIFO + random search, same samples, data and budget, one run.

    python hpo/bench.py [--num-samples 20] [--max-epochs 9] [--limit 12000]

Prints epochs trained, wall time and best val_acc of each search, and the share of the
ASHA+TPE search's wall time spent in training epochs (the rest is Ray: start-up, trial
actors, checkpoint syncing). The last lines are:
    epochs_ratio_asha_vs_fifo: X   (target <= 0.33)
    best_val_acc_gap_points: Y     (FIFO minus ASHA, target <= 0.3)
    train_share_of_wall: Z         (target >= 0.75)
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=20, help="trials of each search")
    parser.add_argument("--max-epochs", type=int, default=9, help="epoch budget of a trial")
    parser.add_argument("--limit", type=int, default=12000, help="training images (first N of the 60,000)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once in both searches")
    parser.add_argument("--storage-path", default="results/bench", help="where the two searches are written")
    args = parser.parse_args(argv)
    # ASHA as Ray ships it (reduction factor 4), rungs at 1 and 4 epochs.
    shared = {"num_samples": args.num_samples, "max_epochs": args.max_epochs, "grace_period": 1,
              "reduction_factor": 4, "max_concurrent": args.max_concurrent, "tpe_startup_trials": 5,
              "train": {"limit": args.limit}}
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    figures = {}
    for label, scheduler, searcher in (("asha_tpe", "asha", "tpe"), ("fifo_random", "fifo", "random")):
        experiment = resolve_experiment({**shared, "scheduler": scheduler, "searcher": searcher}, {}, label)
        figures[label] = timed_search(experiment, Path(args.storage_path) / f"{label}-{stamp}")
    print(f"{args.num_samples} samples, {args.max_epochs} epochs budget, {args.limit} images, "
          f"{args.max_concurrent} trials at once")
    for label, row in figures.items():
        print(f"{label:12s} epochs {row['epochs']:4d}  wall {row['wall_s']:7.1f} s  best val_acc {row['best_val_acc']:.4f}"
              f"  training {row['train_s']:.1f} s")
    asha, fifo = figures["asha_tpe"], figures["fifo_random"]
    print(f"epochs_ratio_asha_vs_fifo: {asha['epochs'] / fifo['epochs']:.3f}")
    print(f"best_val_acc_gap_points: {100 * (fifo['best_val_acc'] - asha['best_val_acc']):.3f}")
    print(f"train_share_of_wall: {asha['train_share']:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
