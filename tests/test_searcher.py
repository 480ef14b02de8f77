"""The searcher (Ray Tune's public Searcher driving Optuna's ask/tell) and the scheduler, through the calls Tune
makes and what Optuna's public API reads back: no Ray or Optuna internals."""
from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hpo.scheduler import BaselineKeepingASHA
from hpo.searcher import (SEARCHER_ATTR, OptunaSearcher, check_study, fail_orphaned_optuna_trials, make_searcher,
                          optuna_storage_url)
from hpo.experiment import resolve_experiment
from mnist.errors import UserError

SPACE = {"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [32, 64, 128]}}
BASELINE = {"lr": 2e-4, "batch_size": 32}


def searcher_in(folder: Path, sampler: optuna.samplers.BaseSampler | None = None, name: str = "s") -> OptunaSearcher:
    folder.mkdir(parents=True, exist_ok=True)
    return OptunaSearcher(SPACE, BASELINE, max_epochs=3, sampler=sampler or optuna.samplers.RandomSampler(seed=0),
                          storage_url=optuna_storage_url(folder), study_name=name)


def result(epoch: int, accuracy: float) -> dict:
    return {"val_acc": accuracy, "epoch": epoch}


def study_of(folder: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna_storage_url(folder))


def test_the_tutorials_setting_comes_first_labelled_for_the_dashboard(tmp_path: Path) -> None:
    searcher = searcher_in(tmp_path)
    assert searcher.suggest("first") == BASELINE
    second = searcher.suggest("second")
    assert second != BASELINE and 1e-4 <= second["lr"] <= 1e-2 and second["batch_size"] in (32, 64, 128)
    tutorial, other = study_of(tmp_path).get_trials()
    assert study_of(tmp_path).metric_names == ["val_acc"]
    assert tutorial.params == BASELINE
    assert tutorial.user_attrs == {"setting": "tutorial", "tune_trial_id": "first"}
    assert other.user_attrs == {"tune_trial_id": "second"}


def test_each_ending_is_told_as_what_it_was(tmp_path: Path) -> None:
    """Stopped early -> PRUNED with its epochs; trained to the budget -> COMPLETE with its last value; an error
    or a diverged loss -> FAIL."""
    searcher = searcher_in(tmp_path)
    for trial_id in ("stopped", "finished", "errored", "diverged"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("stopped", result(1, 0.5))
    searcher.on_trial_complete("stopped", result(2, 0.6))  # Tune hands the last result to on_trial_complete only
    for epoch in (1, 2):
        searcher.on_trial_result("finished", result(epoch, 0.7))
    searcher.on_trial_complete("finished", result(3, 0.8))
    searcher.on_trial_result("errored", result(1, 0.4))
    searcher.on_trial_complete("errored", None, error=True)
    searcher.on_trial_complete("diverged", {**result(1, float("nan")), "diverged": True})
    searcher.on_trial_complete("finished", result(3, 0.8))  # told once: a second call changes nothing
    stopped, finished, errored, diverged = study_of(tmp_path).get_trials()
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.5, 2: 0.6}
    assert finished.state == TrialState.COMPLETE and finished.value == 0.8
    assert finished.intermediate_values == {1: 0.7, 2: 0.7, 3: 0.8}
    assert errored.state == diverged.state == TrialState.FAIL


def test_a_saved_and_restored_searcher_samples_on_as_if_never_stopped(tmp_path: Path) -> None:
    """What Tune does on --resume: the searcher's state saved, read back into a fresh object, asked again. TPE
    models the history after two trials, so the study's history and the sampler's seed both count."""
    def tpe() -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=True, n_startup_trials=2)

    def run(searcher: OptunaSearcher, ids: range) -> list[dict]:
        asked = []
        for index in ids:
            asked.append(searcher.suggest(f"t{index}"))
            searcher.on_trial_complete(f"t{index}", result(3, 0.5 + 0.01 * index))
        return asked

    straight = run(searcher_in(tmp_path / "straight", tpe()), range(8))
    interrupted = searcher_in(tmp_path / "resumed", tpe())
    first = run(interrupted, range(4))
    interrupted.save(str(tmp_path / "state.pkl"))
    resumed = pickle.loads(pickle.dumps(interrupted))  # the object Tune unpickles...
    resumed.restore(str(tmp_path / "state.pkl"))  # ...and the state it saved last
    assert first + run(resumed, range(4, 8)) == straight
    assert len({tuple(sorted(point.items())) for point in straight}) == 8  # the case: eight different points


def test_a_study_another_searcher_wrote_is_not_resumed(tmp_path: Path) -> None:
    searcher_in(tmp_path, name="ours")
    check_study(tmp_path, "ours")  # ours: resumable
    other = optuna.create_study(study_name="stock", storage=optuna_storage_url(tmp_path), direction="maximize")
    other.set_user_attr("note", "as Ray's OptunaSearch writes it: no searcher attribute")
    with pytest.raises(UserError, match="study 'stock' was written by another searcher") as refused:
        check_study(tmp_path, "stock")
    assert "\n" not in str(refused.value) and SEARCHER_ATTR not in other.user_attrs


def test_trials_left_running_by_a_killed_driver_are_failed(tmp_path: Path) -> None:
    searcher = searcher_in(tmp_path)
    searcher.suggest("ran")
    searcher.on_trial_complete("ran", result(3, 0.9))
    searcher.suggest("orphan")  # asked, then the driver died before Tune saved that it ran it
    fail_orphaned_optuna_trials(tmp_path)
    assert [trial.state for trial in study_of(tmp_path).get_trials()] == [TrialState.COMPLETE, TrialState.FAIL]


def test_the_experiment_makes_a_seeded_tpe_searcher(tmp_path: Path) -> None:
    experiment = resolve_experiment({"search_space": SPACE, "seed": 5, "tpe_startup_trials": 1}, {}, "test")
    searchers = []
    for run in range(2):
        (tmp_path / str(run)).mkdir()
        searchers.append(make_searcher(experiment, tmp_path / str(run), "s"))
    assert [searcher.suggest("t0") for searcher in searchers] == [experiment["baseline"]] * 2
    for searcher in searchers:
        searcher.on_trial_complete("t0", result(experiment["max_epochs"], 0.9))
    assert searchers[0].suggest("t1") == searchers[1].suggest("t1")  # same seed, same proposal


def asha(seed: int, brackets: int = 1) -> BaselineKeepingASHA:
    return BaselineKeepingASHA(time_attr="epoch", max_t=16, grace_period=1, reduction_factor=4, brackets=brackets,
                               baseline={"lr": 2e-4}, seed=seed, metric="val_acc", mode="max")


def test_the_baseline_is_never_stopped_before_the_budget() -> None:
    scheduler = asha(seed=0)
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"lr": 1e-3 * (i + 1)}) for i in range(3)]
    baseline = SimpleNamespace(trial_id="base", config={"lr": 2e-4})
    decisions = {}
    for trial in (*trials, baseline):
        scheduler.on_trial_add(None, trial)
    for trial, accuracy in zip((*trials, baseline), (0.9, 0.8, 0.7, 0.1)):  # the baseline is the worst at rung 1
        decisions[trial.trial_id] = scheduler.on_trial_result(None, trial, result(1, accuracy))
    assert decisions["t2"] == scheduler.STOP  # ASHA still stops a weak trial...
    assert decisions["base"] == scheduler.CONTINUE  # ...but not the tutorial's setting


def decisions_at_epoch_one(seed: int, trials: int = 40) -> list[str]:
    """What two-bracket ASHA decides for trials reporting ever lower accuracies at epoch 1: in the first bracket
    (judged at epoch 1) such a trial is stopped, in the second (judged at epoch 4) it goes on. So the decisions
    show which bracket each trial was drawn into."""
    scheduler = asha(seed, brackets=2)
    decisions = []
    for index in range(trials):
        trial = SimpleNamespace(trial_id=f"t{index}", config={"lr": 1e-3})
        scheduler.on_trial_add(None, trial)
        decisions.append(scheduler.on_trial_result(None, trial, result(1, 1 - index / 100)))
    return decisions


def test_the_bracket_of_each_trial_is_drawn_from_the_search_seed() -> None:
    np.random.seed(1)
    _, keys, position, *_ = np.random.get_state()
    first = decisions_at_epoch_one(seed=7)
    _, keys_after, position_after, *_ = np.random.get_state()
    assert (keys_after == keys).all() and position_after == position  # numpy's global generator left as it was
    np.random.seed(2)  # another global state: Ray's own draw would change with it
    assert decisions_at_epoch_one(seed=7) == first
    assert first.count(BaselineKeepingASHA.STOP) >= 5 and first.count(BaselineKeepingASHA.CONTINUE) >= 5
    assert decisions_at_epoch_one(seed=8) != first  # another search seed, other brackets
