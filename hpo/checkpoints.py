"""A trial's checkpoints in Ray: one file (mnist's checkpoint) in a Ray Checkpoint folder.

Ray Tune trials and Ray Train workers report them the same way; a search keeps only the
best checkpoint of a trial that early stopping ended (it will never resume).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ray.tune import Checkpoint

from hpo.storage import ExperimentStore
from hpo.trial_terms import STOPPED_EARLY
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.layout import TRIAL_CHECKPOINT

if TYPE_CHECKING:
    import pandas as pd



def report_with_checkpoint(report: Callable[..., None], metrics: dict[str, Any], state: dict[str, Any]) -> None:
    """`report(metrics, checkpoint=...)` (tune.report or ray.train.report) with `state` as a Ray Checkpoint."""
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(state, Path(folder) / TRIAL_CHECKPOINT)
        report(metrics, checkpoint=Checkpoint.from_directory(folder))


def read_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    """The training state inside a Ray Checkpoint (loaded with weights_only=True)."""
    with checkpoint.as_directory() as folder:
        return load_checkpoint(Path(folder) / TRIAL_CHECKPOINT, for_resume=True)


def drop_stale_checkpoints(trials: "pd.DataFrame", store: ExperimentStore) -> None:
    """A trial ASHA stopped will never resume: keep its best checkpoint only (on any storage)."""
    for trial in trials[(trials["status"] == STOPPED_EARLY) & (trials["checkpoint"] != "")].itertuples():
        trial_folder, best = trial.checkpoint.split("/")  # trial_NNN_<id>/checkpoint_NNNNNN
        for checkpoint in store.folders(trial_folder):
            if checkpoint.startswith("checkpoint_") and checkpoint != best:
                store.delete(f"{trial_folder}/{checkpoint}")
