"""What a user running a search sees: a compact progress line, not Ray's internals.

The console gets one line when a trial ends (and at most every `every_s` seconds while
trials run): trials done / stopped early / running / to go, the best val_acc so far and an
estimate of the time left. Everything Ray, Tune and the trials write to stderr (warnings,
tracebacks, Ray's own TensorBoard hint, colour codes) goes to `search.log` in the
experiment folder instead, with these progress lines among it.
"""
from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ray.tune import Callback

from hpo.trial_terms import METRIC, ended_early, trial_number
from mnist.layout import SEARCH_LOG


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class SearchProgress(Callback):
    """Prints the search's progress to stdout (and into the log, when stderr is one)."""

    def __init__(self, num_samples: int, max_epochs: int, every_s: float = 60.0,
                 time_budget_s: float | None = None) -> None:
        self.num_samples, self.max_epochs, self.every_s = num_samples, max_epochs, every_s
        self.time_budget_s = time_budget_s  # Tune ends the search there, whatever the trials to go
        self.started = time.monotonic()
        self.last_line = 0.0
        self.best: tuple[float, int] | None = None  # (val_acc, trial number)

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()  # also on resume: the estimate is of this session

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if METRIC in result and (self.best is None or result[METRIC] > self.best[0]):
            self.best = (result[METRIC], trial_number(trial))
        if time.monotonic() - self.last_line >= self.every_s:
            self.report(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.report(trials, ending=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.report(trials, ending=trial, failed=True)

    def line(self, trials: list, ending: Any = None, failed: bool = False) -> str:
        """The progress line; `ending` is a trial Tune is ending now (its status is not updated yet)."""
        def status(t: Any) -> str:
            return ("ERROR" if failed else "TERMINATED") if t is ending else t.status
        ended = [t for t in trials if status(t) in ("TERMINATED", "ERROR")]
        stopped = [t for t in ended if status(t) == "TERMINATED" and ended_early(t.last_result, self.max_epochs)]
        failed_trials = [t for t in ended if status(t) == "ERROR"]
        running = [t for t in trials if status(t) == "RUNNING"]
        to_go = max(0, self.num_samples - len(ended) - len(running))
        elapsed = time.monotonic() - self.started
        parts = [f"trials {len(ended)}/{self.num_samples} done ({len(stopped)} stopped early"
                 + (f", {len(failed_trials)} failed" if failed_trials else "") + f"), {len(running)} running, {to_go} to go"]
        if self.best is not None:
            parts.append(f"best val_acc {self.best[0]:.4f} (trial {self.best[1]})")
        if ended and (to_go or running):
            per_trial = elapsed / len(ended)  # wall time per ended trial, concurrency included
            left = per_trial * (to_go + len(running) / 2)
            if self.time_budget_s is not None and left > self.time_budget_s - elapsed:
                parts.append(f"~{_duration(max(0.0, self.time_budget_s - elapsed))} left (time budget)")
            else:
                parts.append(f"~{_duration(left)} left")
        return f"[{_duration(elapsed)}] " + " | ".join(parts)

    def report(self, trials: list, ending: Any = None, failed: bool = False) -> None:
        self.last_line = time.monotonic()
        text = self.line(trials, ending, failed)
        print(text, flush=True)
        if stat.S_ISREG(os.fstat(2).st_mode):  # stderr is search.log (see stderr_to): keep the line there too
            print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2: Python, Ray's C++ core, child processes) to `path`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "a") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def search_log(folder: Path) -> Iterator[Path]:
    """stderr into `folder`/search.log for the duration (appended on resume).

    Until the search has made its folder the log is written beside it (.<name>.search.log);
    a search refused before that leaves nothing behind.
    """
    staging = staged_log(folder)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with stderr_to(staging):
            yield folder / SEARCH_LOG
    finally:
        keep_staged_log(folder)


def staged_log(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.search.log"


def keep_staged_log(folder: Path) -> None:
    """The log written beside the folder goes into the folder's search.log (when there is a folder)."""
    staging = staged_log(folder)
    if folder.is_dir() and staging.exists():
        with open(folder / SEARCH_LOG, "ab") as log:
            log.write(staging.read_bytes())
    staging.unlink(missing_ok=True)
