"""When to stop a trial: ASHA on val_acc with epochs as its clock, never stopping the tutorial's
setting (the baseline); or FIFO (every trial to the full budget, for comparison)."""
from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from hpo.experiment import baseline_point


class BaselineKeepingASHA(ASHAScheduler):
    """ASHA that never stops the tutorial's setting.

    The tutorial's trial is the baseline: trained to the full budget, it makes "the search beat
    the tutorial's setting by X points" a comparison at the same epochs. It still counts in
    ASHA's rungs, so the other trials are judged against it as usual.
    """

    def __init__(self, *args: Any, baseline: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.baseline = baseline

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        is_baseline = all(trial.config.get(key) == value for key, value in self.baseline.items())
        before_budget = result.get(self._time_attr, 0) < self._max_t
        return self.CONTINUE if is_baseline and before_budget and decision == self.STOP else decision


def make_scheduler(experiment: dict[str, Any]) -> TrialScheduler:
    """FIFO, or ASHA from the experiment's grace period (tied to the budget unless set) and reduction factor."""
    if experiment["scheduler"] == "fifo":
        return FIFOScheduler()
    return BaselineKeepingASHA(time_attr="epoch", max_t=experiment["max_epochs"],
                               grace_period=experiment["grace_period"],
                               reduction_factor=experiment["reduction_factor"],
                               baseline=baseline_point(experiment["search_space"], experiment["max_epochs"]))
