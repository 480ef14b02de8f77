"""Our subclasses of Ray's OptunaSearch and ASHAScheduler use private attributes of Ray 2.60
(pyproject pins the range). When a Ray upgrade renames them, these tests fail, loudly and first."""
from __future__ import annotations

from types import SimpleNamespace

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.result import TRAINING_ITERATION

from hpo.scheduler import BaselineKeepingASHA
from hpo.searcher import PruningAwareOptunaSearch

UPGRADE_HINT = "Ray's internals changed: update hpo/searcher.py / hpo/scheduler.py and the pin in pyproject.toml"


def make_searcher() -> PruningAwareOptunaSearch:
    searcher = PruningAwareOptunaSearch(space={"lr": tune.loguniform(1e-4, 1e-2)}, metric="val_acc", mode="max",
                                        sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=3,
                                        baseline={"lr": 2e-4})
    for name in ("_ot_trials", "_ot_study", "_completed_trials"):
        assert hasattr(searcher, name), f"OptunaSearch.{name} is gone. {UPGRADE_HINT}"
    return searcher


def result(epoch: int, accuracy: float) -> dict:
    return {"val_acc": accuracy, "epoch": epoch, TRAINING_ITERATION: epoch}


def test_a_trial_stopped_early_reaches_optuna_as_pruned_with_its_epochs() -> None:
    searcher = make_searcher()
    searcher.suggest("stopped")
    searcher.on_trial_result("stopped", result(1, 0.5))
    searcher.on_trial_complete("stopped", result(2, 0.6))
    searcher.suggest("finished")
    for epoch in (1, 2):
        searcher.on_trial_result("finished", result(epoch, 0.7))
    searcher.on_trial_complete("finished", result(3, 0.8))
    stopped, finished = searcher._ot_study.get_trials(deepcopy=False)
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.5, 2: 0.6}
    assert finished.state == TrialState.COMPLETE and finished.value == 0.8


def test_the_baseline_is_never_stopped_before_the_budget() -> None:
    scheduler = BaselineKeepingASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3,
                                    baseline={"lr": 2e-4}, seed=0, metric="val_acc", mode="max")
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"lr": 1e-3 * (i + 1)}) for i in range(3)]
    baseline = SimpleNamespace(trial_id="base", config={"lr": 2e-4})
    decisions = {}
    for trial in (*trials, baseline):
        scheduler.on_trial_add(None, trial)
    for trial, accuracy in zip((*trials, baseline), (0.9, 0.8, 0.7, 0.1)):  # the baseline is the worst at rung 1
        decisions[trial.trial_id] = scheduler.on_trial_result(None, trial, {"epoch": 1, "val_acc": accuracy,
                                                                            TRAINING_ITERATION: 1})
    assert decisions["t2"] == scheduler.STOP  # ASHA still stops a weak trial...
    assert decisions["base"] == scheduler.CONTINUE  # ...but not the tutorial's setting


def brackets_drawn(seed: int, trials: int = 40) -> list[int]:
    """Which of two brackets each of `trials` trials was put in (Ray's private _trial_info and _brackets)."""
    scheduler = BaselineKeepingASHA(time_attr="epoch", max_t=16, grace_period=1, reduction_factor=4, brackets=2,
                                    baseline={"lr": 2e-4}, seed=seed, metric="val_acc", mode="max")
    for name in ("_trial_info", "_brackets"):
        assert hasattr(scheduler, name), f"ASHAScheduler.{name} is gone. {UPGRADE_HINT}"
    for index in range(trials):
        scheduler.on_trial_add(None, SimpleNamespace(trial_id=f"t{index}", config={"lr": 1e-3}))
    return [scheduler._brackets.index(scheduler._trial_info[f"t{index}"]) for index in range(trials)]


def test_the_bracket_of_each_trial_is_drawn_from_the_search_seed() -> None:
    import numpy as np

    np.random.seed(1)
    _, keys, position, *_ = np.random.get_state()
    first = brackets_drawn(seed=7)
    _, keys_after, position_after, *_ = np.random.get_state()
    assert (keys_after == keys).all() and position_after == position  # numpy's global generator left as it was
    np.random.seed(2)  # another global state: Ray's own draw would change with it
    assert brackets_drawn(seed=7) == first
    assert set(first) == {0, 1}  # the case: both brackets are used
    assert brackets_drawn(seed=8) != first  # another search seed, other brackets


def test_the_dashboard_sees_the_metric_the_tutorials_trial_and_tunes_ids() -> None:
    searcher = PruningAwareOptunaSearch(space={"lr": tune.loguniform(1e-4, 1e-2)}, metric="val_acc", mode="max",
                                        sampler=optuna.samplers.RandomSampler(seed=0), max_epochs=3,
                                        points_to_evaluate=[{"lr": 2e-4}], baseline={"lr": 2e-4})
    assert hasattr(searcher, "_setup_study"), f"OptunaSearch._setup_study is gone. {UPGRADE_HINT}"
    searcher.suggest("first")
    searcher.suggest("second")
    tutorial, other = searcher._ot_study.get_trials(deepcopy=False)
    assert searcher._ot_study.metric_names == ["val_acc"]
    assert tutorial.params == {"lr": 2e-4}
    assert tutorial.user_attrs == {"setting": "tutorial", "tune_trial_id": "first"}
    assert other.user_attrs == {"tune_trial_id": "second"}
