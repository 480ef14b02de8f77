"""What to try next: Optuna's TPE (or random sampling) behind Ray Tune's OptunaSearch, the study in SQLite.

The study lives in the experiment folder (optuna.db), so a search resumes with everything
Optuna learnt, and a user can open it with optuna-dashboard.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from hpo.experiment import is_baseline
from mnist.layout import OPTUNA_DB
from hpo.trial_terms import ended_early
from mnist.errors import UserError



def optuna_storage(folder: Path) -> optuna.storages.RDBStorage:
    """The Optuna study's storage: optuna.db in the experiment folder."""
    return optuna.storages.RDBStorage(f"sqlite:///{(folder / OPTUNA_DB).resolve()}")


def study_names(folder: Path, why_needed: str) -> list[str]:
    """The studies in `folder`/optuna.db, or a one-line refusal when it is missing, truncated or not Optuna's."""
    path = folder / OPTUNA_DB
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"{path}: missing or empty; {why_needed}")
    try:
        return [study.study_name for study in optuna_storage(folder).get_all_studies()]
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError, RuntimeError):
        raise UserError(f"{path}: not an Optuna study, or truncated") from None


def check_study(folder: Path, name: str) -> None:
    """Refuse, in one line, a search to resume whose optuna.db is missing, truncated or not its study."""
    names = study_names(folder, "the search's Optuna study is needed to resume it")
    if name not in names:
        raise UserError(f"{folder / OPTUNA_DB}: holds no study {name!r} (studies: {', '.join(names) or 'none'}), "
                        "or is truncated")


def check_any_study(folder: Path) -> None:
    """Refuse, in one line, a folder with no search's study to show."""
    if not study_names(folder, "is it a search's folder (results/<name>)?"):
        raise UserError(f"{folder / OPTUNA_DB}: holds no study yet; the search creates it when its first trial starts")


class PruningAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna a trial ASHA stopped early is PRUNED, not COMPLETE.

    Ray's OptunaSearch reports every finished trial as COMPLETE with its last value, so TPE
    would treat an ASHA-stopped trial's 2-epoch accuracy as its final score. Pruned, Optuna
    keeps its intermediate values (reported each epoch) and TPE weighs it as such.
    """

    def __init__(self, *args: Any, max_epochs: int, baseline: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.baseline = baseline

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([self._metric])  # the dashboard's axes say val_acc, not "Objective 0"

    def suggest(self, trial_id: str) -> dict | None:
        """Optuna's next trial, labelled for the dashboard: Tune's trial id, and which one is the tutorial's."""
        params = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if isinstance(params, dict) and ot_trial is not None:
            ot_trial.set_user_attr("tune_trial_id", trial_id)
            if is_baseline(self.baseline, params):
                ot_trial.set_user_attr("setting", "tutorial")
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Tune hands the last result to on_trial_complete only: record it as an intermediate value too.
        ot_trial = self._ot_trials.get(trial_id)
        if result and ot_trial is not None and trial_id not in self._completed_trials and self.metric in result:
            step = result[TRAINING_ITERATION]
            if step not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(result[self.metric], step)
        stopped_early = not error and ended_early(result, self.max_epochs)
        if not stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)  # its value: the last intermediate one
        self._completed_trials.add(trial_id)


def make_searcher(experiment: dict[str, Any], folder: Path, name: str) -> PruningAwareOptunaSearch:
    """TPE (seeded, multivariate) or random sampling; the study in SQLite inside the experiment folder."""
    if experiment["searcher"] == "tpe":
        sampler = optuna.samplers.TPESampler(seed=experiment["seed"], multivariate=True, constant_liar=True,
                                             n_startup_trials=experiment["tpe_startup_trials"])
    else:
        sampler = optuna.samplers.RandomSampler(seed=experiment["seed"])
    storage = optuna_storage(folder)
    # The tutorial's setting is trial 1; resolve_experiment refused spaces that cannot hold it.
    return PruningAwareOptunaSearch(points_to_evaluate=[experiment["baseline"]], sampler=sampler, storage=storage,
                                    study_name=name, max_epochs=experiment["max_epochs"],
                                    baseline=experiment["baseline"])


def fail_orphaned_optuna_trials(folder: Path) -> None:
    """Mark FAIL the Optuna trials left RUNNING once every Tune trial has ended.

    A driver killed between asking Optuna for a trial and saving the searcher's state leaves
    that trial RUNNING in the study; the resumed searcher never knew it, so it never ran.
    """
    storage = optuna_storage(folder)
    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
