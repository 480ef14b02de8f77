"""When to stop a trial: ASHA on val_acc with epochs as its clock, never stopping the tutorial's
setting (the baseline); or FIFO (every trial to the full budget, for comparison)."""
from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from hpo.experiment import is_baseline


class BaselineKeepingASHA(ASHAScheduler):
    """ASHA that never stops the tutorial's setting, and draws each trial's bracket from the search's seed.

    The tutorial's trial is the baseline: trained to the full budget, it makes "the search beat
    the tutorial's setting by X points" a comparison at the same epochs. It still counts in
    ASHA's rungs, so the other trials are judged against it as usual. Ray draws a trial's
    bracket from numpy's global generator; here the draw comes from a generator of the search's
    own, seeded by its seed and saved with the scheduler, so a search (and its resume) repeats.
    """

    def __init__(self, *, time_attr: str, max_t: int, baseline: dict[str, Any], seed: int, **kwargs: Any) -> None:
        super().__init__(time_attr=time_attr, max_t=max_t, **kwargs)
        self.baseline = baseline
        self.budget_attr, self.budget = time_attr, max_t  # what the constructor was told, not Ray's fields
        self.bracket_draws = np.random.RandomState(seed).get_state()

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        outside = np.random.get_state()  # Ray draws from the global generator: lend it the search's own state
        np.random.set_state(self.bracket_draws)
        try:
            super().on_trial_add(tune_controller, trial)
        finally:
            self.bracket_draws = np.random.get_state()
            np.random.set_state(outside)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        before_budget = result.get(self.budget_attr, 0) < self.budget
        keep = is_baseline(self.baseline, trial.config) and before_budget
        return self.CONTINUE if keep and decision == self.STOP else decision


def make_scheduler(experiment: dict[str, Any]) -> TrialScheduler:
    """FIFO, or ASHA from the experiment's grace period (tied to the budget unless set), reduction factor
    and brackets."""
    if experiment["scheduler"] == "fifo":
        return FIFOScheduler()
    return BaselineKeepingASHA(time_attr="epoch", max_t=experiment["max_epochs"],
                               grace_period=experiment["grace_period"],
                               reduction_factor=experiment["reduction_factor"],
                               brackets=experiment["brackets"], seed=experiment["seed"],
                               baseline=experiment["baseline"])
