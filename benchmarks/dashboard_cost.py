"""Benchmark: does serving the dashboard slow a search? The same search twice in one run.

    python -m benchmarks.dashboard_cost [--num-samples 10] [--max-epochs 3] [--limit 6000] [--poll-s 1]

Once without the dashboard, once with it (`--dashboard`, a thread of the driver) while a client
asks it for the whole study every `poll-s` seconds, as an open browser tab does (the page's own
refresh is slower). Prints both searches' wall time and training time, the requests served,
and `dashboard_wall_ratio: R` (with / without; 1.00 = no cost).
"""
from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from datetime import datetime
from pathlib import Path

from benchmarks.arms import timed_search
from hpo.dashboard import serve_dashboard
from hpo.experiment import resolve_experiment
from mnist.errors import run_cli


def poll(url: str, every_s: float, stop: threading.Event) -> int:
    """GET the study as the page does, until `stop`; returns the answers received."""
    answered = 0
    while not stop.wait(every_s):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                json.load(response)
            answered += 1
        except OSError:  # before the study exists the server answers 404
            pass
    return answered


def one_search(experiment: dict, folder: Path, poll_s: float | None) -> dict[str, float]:
    """bench.py's timed search; with `poll_s`, served (as --dashboard does: a thread of this driver) and polled."""
    if poll_s is None:
        return {**timed_search(experiment, folder), "requests": 0}
    folder.mkdir(parents=True)
    stop, answered = threading.Event(), []
    with serve_dashboard(folder, 0) as url:
        study = url.replace("/dashboard/", "/api/studies/1?after=0")
        client = threading.Thread(target=lambda: answered.append(poll(study, poll_s, stop)))
        client.start()
        row = timed_search(experiment, folder)
        stop.set()
        client.join()
    return {**row, "requests": answered[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=10, help="trials of each search")
    parser.add_argument("--max-epochs", type=int, default=3, help="epoch budget of a trial")
    parser.add_argument("--limit", type=int, default=6000, help="training images (first N of the 60,000)")
    parser.add_argument("--poll-s", type=float, default=1.0, help="seconds between the client's requests")
    parser.add_argument("--storage-path", default="results/bench", help="where the searches are written")
    args = parser.parse_args(argv)
    experiment = resolve_experiment({"num_samples": args.num_samples, "max_epochs": args.max_epochs,
                                     "scheduler": "fifo", "searcher": "random", "max_concurrent": 2,
                                     "train": {"limit": args.limit}}, {}, "bench_dashboard")
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    plain = one_search(experiment, Path(args.storage_path) / f"no_dashboard-{stamp}", None)
    served = one_search(experiment, Path(args.storage_path) / f"dashboard-{stamp}", args.poll_s)
    for label, row in (("without dashboard", plain), ("with dashboard", served)):
        print(f"{label:18s} wall {row['wall_s']:6.1f} s  training {row['train_s']:6.1f} s  "
              f"requests served {row['requests']}")
    print(f"dashboard_wall_ratio: {served['wall_s'] / plain['wall_s']:.3f}")
    print(f"dashboard_training_ratio: {served['train_s'] / plain['train_s']:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
