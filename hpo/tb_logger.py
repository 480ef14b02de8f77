"""TensorBoard over trials: one run per trial with a readable name, and the HParams dashboard.

`tensorboard --logdir results/<name>` shows each trial's per-epoch scalars under a name like
`trial_003 lr=2.0e-04 bs=32 do=0.50 step=4 g=0.80`, and HParams lists every trial's
hyperparameters against its best val_acc. It runs in the driver from the results Tune
sends there, so it works the same on a cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import TBXLoggerCallback
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from hpo.space import dimensions
from hpo.trial_terms import BEST_METRIC, METRIC, trial_number
from mnist.outputs import SCALARS  # the same tags as a `python -m mnist.train` run

SHORT_NAMES = {"lr": "lr", "batch_size": "bs", "dropout": "do", "step_size": "step", "gamma": "g",
               "weight_decay": "wd", "label_smoothing": "ls", "schedule": "sched", "rotate": "rot"}
BEST_METRIC_TAG = f"hparams/{BEST_METRIC}"


def run_name(number: int, params: dict[str, Any], space: dict[str, dict[str, list]]) -> str:
    """`trial_003 lr=2.0e-04 bs=32 ...`: each value as its search dimension prints it."""
    scales = dimensions(space)
    parts = [f"{SHORT_NAMES.get(key, key)}={scales[key].format(value) if key in scales else value}"
             for key, value in params.items()]
    return f"trial_{number:03d} " + " ".join(parts)


# Subclassing Tune's TBXLoggerCallback tells Tune not to add its own, which would log the same
# scalars again under ray/tune/... with trial-folder names.
class TrialTensorBoard(TBXLoggerCallback):
    def __init__(self, folder: Path, space: dict[str, dict[str, list]]) -> None:
        super().__init__()
        self.folder = folder
        self.space = space
        self.searched_keys = list(space)
        self.writers: dict[str, SummaryWriter] = {}
        self.best: dict[str, float] = {}

    def _writer(self, trial: Any) -> SummaryWriter:
        if trial.trial_id not in self.writers:
            number = trial_number(trial)  # Tune's creation counter, as in trial folders
            params = {key: trial.config[key] for key in self.searched_keys}
            self.writers[trial.trial_id] = SummaryWriter(str(self.folder / run_name(number, params, self.space)))
        return self.writers[trial.trial_id]

    def log_trial_start(self, trial: Any) -> None:
        self._writer(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if "epoch" not in result:
            return
        writer = self._writer(trial)
        for tag, key in SCALARS.items():
            writer.add_scalar(tag, result[key], result["epoch"])
        self.best[trial.trial_id] = max(self.best.get(trial.trial_id, 0.0), result[METRIC])
        writer.add_scalar(BEST_METRIC_TAG, self.best[trial.trial_id], result["epoch"])
        writer.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._writer(trial)
        params = {key: trial.config[key] for key in self.searched_keys}
        # The HParams plugin pairs each run's hyperparameters with the metric tag's scalars.
        for event in hparams(params, {BEST_METRIC_TAG: self.best.get(trial.trial_id, 0.0)}):
            writer.file_writer.add_summary(event)
        writer.close()
        self.writers.pop(trial.trial_id, None)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
