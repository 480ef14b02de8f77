"""Chaos: drivers raced, resumed while running, and killed at random moments; after each, the folders are checked.

    python -m tools.chaos [--rounds 20] [--seed 0] [--out results/chaos]

Not part of the suite (minutes per round). Each round, on a tiny search (3 trials, 2 epochs,
2,000 images): two search.py on one --name started together (exactly one runs, the other is
refused naming it), a --resume while it runs (refused), SIGTERM of the search at a random
moment then --resume (it finishes), and SIGTERM of best.py at a random moment (best/ is the
previous whole one or absent, never mixed, no stray temporary file). At the end: no Ray
process or session folder of ours is left. Prints the counts.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEARCH = [sys.executable, str(ROOT / "hpo" / "search.py"), "--experiment", str(ROOT / "experiments" / "cpu-quick.yaml"),
          "--num-samples", "3", "--max-epochs", "2", "--limit", "2000", "--max-concurrent", "2"]
BEST = [sys.executable, str(ROOT / "hpo" / "best.py"), "--seeds", "2", "--epochs", "1"]
BEST_FILES = {"model.pt", "ensemble.pt", "metrics.json", "comparison.json", "comparison.png", "curves.png", "confusion_matrix.png",
              "misclassified.png", "baseline"}


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)


def best_is_whole_or_absent(folder: Path) -> bool:
    best = folder / "best"
    if any(folder.rglob("*.tmp")) and not all(".best.staging" in str(p) for p in folder.rglob("*.tmp")):
        return False
    if not best.exists():
        return True
    if {p.name for p in best.iterdir()} != BEST_FILES:
        return False
    seeds = json.loads((best / "comparison.json").read_text())["seeds"]
    return json.loads((best / "metrics.json").read_text())["seed"] == seeds[0]


def round_of_chaos(folder: Path, rng: np.random.Generator, counts: dict[str, int]) -> None:
    name, storage = folder.name, folder.parent
    flags = ["--name", name, "--storage-path", str(storage)]
    first, second = start([*SEARCH, *flags], folder.with_suffix(".a.log")), start([*SEARCH, *flags],
                                                                                  folder.with_suffix(".b.log"))
    time.sleep(rng.uniform(8, 20))
    was_running = any(p.poll() is None for p in (first, second))
    resume = subprocess.run([*SEARCH[:2], "--resume", *flags], capture_output=True, text=True, cwd=ROOT)
    # While the search runs, a resume is refused; once it has ended (a short round, or while the resume
    # started), a resume may run: the lock is free then.
    ended_meanwhile = all(p.poll() is not None for p in (first, second))
    counts["resume_while_running_refused"] += (resume.returncode == 2 and "in use by" in resume.stderr
                                               or not was_running or ended_meanwhile)
    running = [p for p in (first, second) if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)  # a random moment of the search
    codes = sorted(p.wait(timeout=300) for p in (first, second))
    counts["one_driver_won"] += codes.count(2) == 1
    finished = subprocess.run([*SEARCH[:2], "--resume", *flags], capture_output=True, text=True, cwd=ROOT)
    if finished.returncode != 0 and "already" in finished.stderr:  # it had finished before the SIGTERM
        finished = subprocess.CompletedProcess(finished.args, 0)
    counts["resume_finished"] += finished.returncode == 0
    best = start([*BEST, "--search", str(folder)], folder.with_suffix(".best.log"))
    time.sleep(rng.uniform(2, 40))
    best.send_signal(signal.SIGTERM)  # a random moment of the retraining, the final writes included
    best.wait(timeout=300)
    counts["best_whole_or_absent"] += best_is_whole_or_absent(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/chaos")
    args = parser.parse_args()
    from hpo.cluster import processes_of

    rng, out = np.random.default_rng(args.seed), Path(args.out)
    counts = {key: 0 for key in ("one_driver_won", "resume_while_running_refused", "resume_finished",
                                 "best_whole_or_absent")}
    for index in range(args.rounds):
        folder = out / f"round{index:02d}"
        out.mkdir(parents=True, exist_ok=True)
        round_of_chaos(folder, rng, counts)
        print(f"round {index + 1}/{args.rounds}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    left = [record for record in out.glob(".*.ray-session")]
    sessions = [p for p in Path("/tmp/ray").glob("session_2*") if processes_of(p.name)]  # any user's, ours included
    print(f"rounds {args.rounds}: " + ", ".join(f"{k} {v}/{args.rounds}" for k, v in counts.items())
          + f"; ray session records left {len(left)}, sessions with live processes {len(sessions)}")
    return 0 if all(v == args.rounds for v in counts.values()) and not left else 1


if __name__ == "__main__":
    sys.exit(main())
