"""The words a search uses about its trials, defined once: the metric, a trial's number and name, how it ended.

The driver, the searcher, the scheduler, the progress line, TensorBoard and the summaries all
read these from here, so that "trial 3", "stopped early" or "val_acc" mean one thing everywhere.
"""
from __future__ import annotations

from typing import Any

METRIC, MODE = "val_acc", "max"  # what the searcher and the scheduler optimise, and the summaries rank by
# trials.csv's columns: the metric at the trial's best epoch and at its last.
BEST_METRIC, LAST_METRIC = f"best_{METRIC}", f"last_{METRIC}"

# How a trial ended (trials.csv's status column).
COMPLETED = "completed"  # trained to the full budget
STOPPED_EARLY = "stopped early"  # ASHA stopped it before the budget
DIVERGED = "diverged"  # its training loss became non-finite: it stopped itself
ERROR = "error"  # it raised (after Tune's retries)
NO_RESULT = "no result"  # it never reported an epoch


def trial_number(trial: Any) -> int:
    """Tune's creation counter of a trial (1 = the first proposed, the tutorial's setting), from its tag."""
    return int(trial.experiment_tag.split("_", 1)[0])


def trial_name(trial: Any) -> str:
    """Short, sortable trial names and folders instead of Tune's <function>_<id>_<every param>_<date>."""
    return f"trial_{trial_number(trial):03d}_{trial.trial_id}"


def ended_early(result: dict[str, Any] | None, max_epochs: int) -> bool:
    """Whether a trial whose last result is `result` ended before the budget without diverging: ASHA stopped it."""
    return bool(result) and not result.get("diverged", False) and result.get("epoch", max_epochs) < max_epochs


def status_of(errored: bool, last_epoch: int | None, diverged: bool, max_epochs: int) -> str:
    """trials.csv's status of a trial from how its run ended and its last reported epoch (None: none)."""
    if errored:
        return ERROR
    if last_epoch is None:
        return NO_RESULT
    if diverged:
        return DIVERGED
    return COMPLETED if last_epoch >= max_epochs else STOPPED_EARLY
