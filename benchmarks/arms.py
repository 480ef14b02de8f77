"""What the benchmarks that compare arms of searches share: their flags, one timed search, the per-seed lines,
and a run that continues where it stopped (a 5-seed benchmark at a 30-epoch budget is hours on 2 cores).

A run is a folder, `--storage-path`/`--name`: its flags in bench.json, each finished search's figures in
rows/ARM-seedS.json. Run the same command again with the same --name and the finished searches are read back,
an unfinished one is run again from its start (its wall time must be one search's), the rest run as usual.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from hpo.driver import SearchInterrupted, run_search
from hpo.storage import ExperimentStore
from hpo.summary import anytime_curve, trial_tables
from mnist.atomic import read_json, write_json_atomic
from mnist.errors import UserError

# The flags that make two runs the same benchmark: a run continued with other values would mix two benchmarks.
SIZE_FLAGS = ("num_samples", "max_epochs", "limit", "max_concurrent")


def timed_search(experiment: dict[str, Any], folder: Path, address: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    results, _ = run_search(experiment, ExperimentStore(str(folder.parent), folder.name), resume=False, address=address)
    wall = time.perf_counter() - started
    trials, history = trial_tables(results, experiment)
    anytime = anytime_curve(history, trials)
    slots = experiment["max_concurrent"]
    return {"epochs": int(trials["epochs"].sum()), "wall_s": wall, "best_val_acc": float(trials["best_val_acc"].max()),
            "train_s": float(trials["time_s"].sum()), "train_share": float(trials["time_s"].sum()) / (wall * slots),
            "passed_at_epochs": anytime["passed_at_epochs"], "anytime": anytime}


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A search's figures as JSON: the best-so-far curve's arrays as lists."""
    anytime = {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in row["anytime"].items()}
    return {**row, "anytime": anytime}


def row_from_json(row: dict[str, Any]) -> dict[str, Any]:
    anytime = {**row["anytime"], "epochs": np.asarray(row["anytime"]["epochs"]),
               "best_so_far": np.asarray(row["anytime"]["best_so_far"], float)}
    return {**row, "anytime": anytime}


class BenchRun:
    """One benchmark run's folder: its searches, each run once (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, size_flags: tuple[str, ...] = SIZE_FLAGS) -> None:
        self.folder = Path(args.storage_path) / args.name
        self.flags = {key: getattr(args, key) for key in size_flags}
        self.address = args.address

    def check_flags(self) -> None:
        """A run continued with other sizes is refused, naming the flag (seeds and arms may be added)."""
        saved_file = self.folder / "bench.json"
        if not saved_file.exists():
            write_json_atomic(saved_file, self.flags)
            return
        saved = read_json(saved_file)
        for key, value in self.flags.items():
            if saved.get(key) != value:
                raise UserError(f"{saved_file}: this run was made with --{key.replace('_', '-')} {saved.get(key)}, "
                                f"not {value}; give the same flags to continue it, or another --name")

    def search(self, experiment: dict[str, Any], label: str, seed: int) -> dict[str, Any]:
        """The arm's search for this seed: read back if it finished before, else run (from its start)."""
        return row_from_json(self.measured(label, seed, lambda folder: row_json(
            timed_search(experiment, folder, self.address))))

    def measured(self, label: str, seed: int, measure: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """`measure(folder)`'s JSON figures for the arm and seed: read back if it finished before, else measured
        in a fresh folder (an unfinished one is run again from its start) and kept."""
        row_file = self.folder / "rows" / f"{label}-seed{seed}.json"
        if row_file.exists():
            print(f"{label} seed {seed}: finished before, read from {row_file}", flush=True)
            return read_json(row_file)
        search_folder = self.folder / f"{label}-seed{seed}"
        if search_folder.exists():
            print(f"{label} seed {seed}: {search_folder} did not finish; running it again from its start", flush=True)
            shutil.rmtree(search_folder)
        try:
            row = measure(search_folder)
        except SearchInterrupted as interrupted:  # Ctrl-C or SIGTERM: the finished searches are kept
            print(f"{label} seed {seed}: {interrupted}; the same command with --name {self.folder.name} continues "
                  "the run (this search from its start)", file=sys.stderr)
            raise KeyboardInterrupt from None
        write_json_atomic(row_file, row)
        return row

    def run(self, tool: str, searches: Callable[[], Iterator[tuple[str, int, dict[str, Any]]]]
            ) -> dict[str, list[dict[str, Any]]]:
        """Every (label, seed, experiment) of `searches`, in order, holding the run's folder for this process;
        the rows by label, in the order of the seeds."""
        runs: dict[str, list[dict[str, Any]]] = {}
        with ExperimentStore(str(self.folder.parent), self.folder.name).lock(tool):
            self.check_flags()
            for label, seed, experiment in searches():
                runs.setdefault(label, []).append(self.search(experiment, label, seed))
        return runs


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


def parse_bench_flags(argv: list[str] | None, doc: str, storage: str,
                      arms: list[str] | None = None) -> argparse.Namespace:
    """The flags of every benchmark that compares arms of searches of a number of trials."""
    parser = bench_parser(doc, storage)
    parser.add_argument("--num-samples", type=int, default=20, help="trials of each search")
    if arms:
        parser.add_argument("--arms", nargs="+", choices=arms, default=arms, help="the arms to run (default all)")
    return checked_bench_flags(parser.parse_args(argv))


def bench_parser(doc: str, storage: str) -> argparse.ArgumentParser:
    """The flags of every benchmark that compares arms of searches: their size, the seeds (one run of each arm
    per seed), where they go, the run's name (the same name continues it) and which cluster they join."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-epochs", type=int, default=9, help="epoch budget of a trial")
    parser.add_argument("--limit", type=int, default=12000, help="training images (first N of the 60,000)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at once in every search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="searcher seeds: one run of each arm per seed")
    parser.add_argument("--storage-path", default=storage, help=f"where the runs go (default {storage})")
    parser.add_argument("--name", default=f"{datetime.now():%Y%m%d-%H%M%S}",
                        help="the run's folder under --storage-path (default: the date and time); the same command "
                             "with the same --name continues a stopped run, its finished searches read back")
    parser.add_argument("--address", default=None,
                        help="a Ray cluster every search joins (default: RAY_ADDRESS, else a private one per search)")
    return parser


def checked_bench_flags(args: argparse.Namespace) -> argparse.Namespace:
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds must differ, got {args.seeds}")
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UserError(f"--name must be a plain folder name, got {args.name!r}")
    return args
