"""Chaos: drivers raced, resumed while running, and killed at random moments; after each, the folders are checked.

    python -m tools.chaos [--rounds 20] [--seed 0] [--out results/chaos]

Not part of the suite (minutes per round). Each round, on a tiny search (3 trials, 2 epochs,
2,000 images): two search.py on one --name started together (exactly one runs, the other is
refused naming it), a --resume while it runs (refused), SIGTERM of the search at a random
moment then --resume (it finishes), and SIGTERM of best.py at a random moment (best/ is the
previous whole one or absent, never mixed, no stray temporary file), then SIGTERM to a second
search's whole process group (as timeout, docker stop, systemd and Slurm send it: the resume hint
within 10 s, then --resume finishes), and two `python -m mnist.train` into one --out started at the same
instant (one trains, the other is refused naming it; the folder holds the winner's config, metrics and
checkpoints only). At the end: no Ray process or session folder of ours is left. Prints the counts.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

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
    group_sigterm(folder.with_name(folder.name + "-group"), rng, counts)
    concurrent_trainings(folder.with_name(folder.name + "-train"), counts)


def concurrent_trainings(out: Path, counts: dict[str, int]) -> None:
    """Two trainings into one folder started at the same instant, told apart by their learning rates: exactly
    one runs, the other exits 2 naming it, and everything in the folder is the one that ran."""
    rates = ("0.001", "0.002")
    runs = [subprocess.Popen([sys.executable, "-m", "mnist.train", "-e", "1", "--limit", "600", "-b", "64", "-l", rate,
                              "--threads", "1", "--out", str(out)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT) for rate in rates]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    winners = [rate for rate, (code, _) in zip(rates, outcomes) if code == 0]
    refused = [said for code, said in outcomes if code == 2 and "in use by mnist.train" in said]
    whole = False
    if len(winners) == 1 and len(refused) == 1:
        config = json.loads((out / "config.json").read_text())["config"]
        best = torch.load(out / "best.pt", weights_only=True)
        rows = (out / "metrics.csv").read_text().strip().splitlines()
        whole = (str(config["lr"]) == winners[0] and str(best["config"]["lr"]) == winners[0]) and len(rows) == 2
    counts["concurrent_trainings_one_ran"] += whole


# The most the group case may take from SIGTERM to the resume hint.
GROUP_SIGTERM_LIMIT_S = 10


def group_sigterm(folder: Path, rng: np.random.Generator, counts: dict[str, int]) -> None:
    """SIGTERM to the search's whole process group at a random moment (what timeout, docker stop, systemd and
    Slurm do): the hint to resume within GROUP_SIGTERM_LIMIT_S, exit 130, and a --resume that finishes."""
    flags = ["--name", folder.name, "--storage-path", str(folder.parent)]
    log = folder.with_suffix(".log")
    with open(log, "w") as output:
        search = subprocess.Popen([*SEARCH, *flags], stdout=output, stderr=subprocess.STDOUT, cwd=ROOT,
                                  start_new_session=True)
    time.sleep(rng.uniform(2, 25))  # from Ray starting to trials running
    signalled = time.monotonic()
    try:
        os.killpg(search.pid, signal.SIGTERM)
    except ProcessLookupError:  # it had ended already
        pass
    code = search.wait(timeout=300)
    seconds = time.monotonic() - signalled
    said = log.read_text()
    # Finished before the signal; or finished and signalled while the process exited (after run_cli gave SIGTERM
    # back its default: the search's results were whole and said, the exit status is the signal's).
    ended_before = code == 0 or (code == -signal.SIGTERM and "next: python hpo/best.py" in said)
    started = (folder / "experiment.json").exists()  # else the signal came while Ray started: nothing to resume
    counts["group_sigterm_hint_in_10s"] += seconds <= GROUP_SIGTERM_LIMIT_S and (
        ended_before or (code == 130 and ("continue with:" in said if started else said.rstrip().endswith("interrupted"))))
    if not started:
        counts["group_sigterm_resume_finished"] += not folder.exists()  # and nothing half-made left behind
        print(f"  group SIGTERM while Ray started: exit {code} after {seconds:.1f} s", flush=True)
        return
    finished = subprocess.run([*SEARCH[:2], "--resume", *flags], capture_output=True, text=True, cwd=ROOT)
    counts["group_sigterm_resume_finished"] += finished.returncode == 0 or (
        ended_before and "already" in finished.stderr)
    print(f"  group SIGTERM: exit {code} after {seconds:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/chaos")
    args = parser.parse_args()
    from hpo.ray_sessions import processes_of

    rng, out = np.random.default_rng(args.seed), Path(args.out)
    counts = {key: 0 for key in ("one_driver_won", "resume_while_running_refused", "resume_finished",
                                 "best_whole_or_absent", "group_sigterm_hint_in_10s", "group_sigterm_resume_finished",
                                 "concurrent_trainings_one_ran")}
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
