"""What to try next: Optuna's TPE (or random sampling) through Optuna's ask-and-tell API, behind Ray Tune's
documented extension point, `ray.tune.search.Searcher`. The study lives in SQLite in the experiment folder
(optuna.db), so a search resumes with everything Optuna learnt, and optuna-dashboard opens it.

Only public API of both: Ray calls suggest / on_trial_result / on_trial_complete / save / restore; Optuna is
asked (`study.ask`) and told (`study.tell`), and each epoch is reported to the asked trial.
"""
from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from hpo.experiment import is_baseline
from hpo.space import dimensions
from hpo.trial_terms import METRIC, MODE, ended_early
from mnist.errors import UserError
from mnist.layout import OPTUNA_DB

# Written on every study this searcher creates: a resume checks it, so that a study that another searcher
# wrote (Ray's stock OptunaSearch, an older version of this one) is refused instead of continued half-right.
SEARCHER_ATTR = "ccnet_hpo_searcher"
SEARCHER_KIND = "optuna ask/tell: pruned trials PRUNED with their epochs, failed ones FAIL"
DIRECTIONS = {"max": "maximize", "min": "minimize"}


def optuna_storage_url(folder: Path) -> str:
    """The Optuna study's storage: optuna.db in the experiment folder (an absolute path: Ray runs the searcher
    in the driver, whatever its working directory)."""
    return f"sqlite:///{(folder / OPTUNA_DB).resolve()}"


def optuna_storage(folder: Path) -> optuna.storages.RDBStorage:
    """The study's storage as an object (optuna-dashboard serves it)."""
    return optuna.storages.RDBStorage(optuna_storage_url(folder))


def study_names(folder: Path, why_needed: str) -> list[str]:
    """The studies in `folder`/optuna.db, or a one-line refusal when it is missing, truncated or not Optuna's."""
    path = folder / OPTUNA_DB
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"{path}: missing or empty; {why_needed}")
    try:
        return optuna.study.get_all_study_names(optuna_storage_url(folder))
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError, RuntimeError):
        raise UserError(f"{path}: not an Optuna study, or truncated") from None


def check_study(folder: Path, name: str) -> None:
    """Refuse, in one line, a search to resume whose optuna.db is missing, truncated, not its study, or a study
    that another searcher wrote."""
    names = study_names(folder, "the search's Optuna study is needed to resume it")
    if name not in names:
        raise UserError(f"{folder / OPTUNA_DB}: holds no study {name!r} (studies: {', '.join(names) or 'none'}), "
                        "or is truncated")
    written_by = optuna.load_study(study_name=name, storage=optuna_storage_url(folder)).user_attrs.get(SEARCHER_ATTR)
    if written_by != SEARCHER_KIND:
        raise UserError(f"{folder / OPTUNA_DB}: study {name!r} was written by "
                        f"{'another searcher' if written_by is None else repr(written_by)}, not this version's "
                        f"({SEARCHER_KIND}); it cannot be continued: start a new search (best.py still reads it)")


def check_any_study(folder: Path) -> None:
    """Refuse, in one line, a folder with no search's study to show."""
    if not study_names(folder, "is it a search's folder (results/<name>)?"):
        raise UserError(f"{folder / OPTUNA_DB}: holds no study yet; a search creates it as it starts (before its first trial)")


class OptunaSearcher(Searcher):
    """Ray Tune's Searcher asking an Optuna study what to try next and telling it how each trial ended.

    - The tutorial's setting is enqueued when the study is created: it is the first trial asked (trial 1).
    - Every epoch's metric is reported to the Optuna trial: the dashboard's intermediate values, and what
      TPE scores a pruned trial by.
    - A trial ASHA stopped early is told PRUNED (Ray's stock OptunaSearch tells it COMPLETE with a 2-epoch
      value, which TPE would take for a final score); a trial that errored or diverged is told FAIL.
    - The sampler (seeded TPE, multivariate, constant liar; or random) is pickled with the searcher when Tune
      saves the search, so a resumed search samples on from where it was, with the study's whole history.
    """

    def __init__(self, space: dict[str, dict[str, list]], baseline: dict[str, Any], max_epochs: int,
                 sampler: optuna.samplers.BaseSampler, storage_url: str, study_name: str) -> None:
        super().__init__(metric=METRIC, mode=MODE)
        self.distributions = {key: dimension.distribution() for key, dimension in dimensions(space).items()}
        self.baseline = baseline
        self.max_epochs = max_epochs
        self.study = optuna.create_study(storage=storage_url, study_name=study_name, sampler=sampler,
                                         direction=DIRECTIONS[MODE])
        self.study.set_user_attr(SEARCHER_ATTR, SEARCHER_KIND)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and still there in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.set_metric_names([METRIC])  # the dashboard's axes say val_acc, not "Objective 0"
        self.study.enqueue_trial(baseline)
        self.asked: dict[str, optuna.Trial] = {}  # Tune's trial id -> the Optuna trial it runs
        self.reported: dict[str, set[int]] = {}  # Tune's trial id -> the epochs already reported
        self.told: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Tune offers its metric, mode and param_space: the space and the metric are this searcher's own."""
        return metric in (None, METRIC) and mode in (None, MODE)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        trial = self.study.ask(self.distributions)
        trial.set_user_attr("tune_trial_id", trial_id)  # the dashboard names each trial's folder
        if is_baseline(self.baseline, trial.params):
            trial.set_user_attr("setting", "tutorial")
        self.asked[trial_id] = trial
        self.reported[trial_id] = set()
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.asked or trial_id in self.told:
            return
        trial = self.asked[trial_id]
        self._report(trial_id, result)  # Tune hands the last result to on_trial_complete only
        value = (result or {}).get(METRIC)
        if error or value is None or not math.isfinite(value):  # raised, never reported, or diverged
            self.study.tell(trial, state=TrialState.FAIL)
        elif ended_early(result, self.max_epochs):
            self.study.tell(trial, state=TrialState.PRUNED)  # scored by its last reported epoch
        else:
            self.study.tell(trial, value)
        self.told.add(trial_id)

    def _report(self, trial_id: str, result: dict[str, Any] | None) -> None:
        value, epoch = (result or {}).get(METRIC), (result or {}).get("epoch")
        if trial_id not in self.asked or trial_id in self.told or value is None or epoch is None:
            return
        if math.isfinite(value) and epoch not in self.reported[trial_id]:
            self.asked[trial_id].report(value, epoch)
            self.reported[trial_id].add(epoch)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))


def make_searcher(experiment: dict[str, Any], folder: Path, name: str) -> Searcher:
    """TPE (seeded, multivariate, constant liar) or random sampling; the study in SQLite inside the experiment
    folder; the tutorial's setting first (resolve_experiment refused spaces that cannot hold it). For comparison,
    "tpe-complete" is Ray's stock OptunaSearch with the same sampler and study, which tells Optuna a trial ASHA
    stopped as COMPLETE with its last value."""
    if experiment["searcher"] == "random":
        sampler = optuna.samplers.RandomSampler(seed=experiment["seed"])
    else:
        with warnings.catch_warnings():  # multivariate and constant_liar: "experimental" in Optuna 3.x
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=experiment["seed"], multivariate=True, constant_liar=True,
                                                 n_startup_trials=experiment["tpe_startup_trials"])
    if experiment["searcher"] == "tpe-complete":
        return OptunaSearch(points_to_evaluate=[experiment["baseline"]], sampler=sampler,
                            storage=optuna_storage(folder), study_name=name)  # metric, mode: from TuneConfig
    return OptunaSearcher(experiment["search_space"], experiment["baseline"], experiment["max_epochs"], sampler,
                          optuna_storage_url(folder), name)


def fail_orphaned_optuna_trials(folder: Path) -> None:
    """Tell FAIL the Optuna trials left RUNNING once every Tune trial has ended.

    A driver killed between asking Optuna for a trial and saving the searcher's state leaves that trial
    RUNNING in the study; the resumed searcher never knew it, so it never ran.
    """
    url = optuna_storage_url(folder)
    for name in optuna.study.get_all_study_names(url):
        study = optuna.load_study(study_name=name, storage=url)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
