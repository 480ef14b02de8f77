"""The search driver: Ray Tune runs the trials, Optuna's TPE proposes them, ASHA stops the weak ones.

Ray is the engine on one laptop and on a cluster alike: the same code, a different `address`.
The data are read once here and shipped to the trials through Ray's object store.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from hpo.experiment import baseline_point, trial_config
from hpo.space import dimensions
from hpo.storage import ExperimentStore
from hpo.tb_logger import TrialTensorBoard
from hpo.trainable import ccnet_trainable
from mnist.checkpoint import run_metadata, write_json_atomic
from mnist.data import load_mnist
from mnist.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

METRIC, MODE = "val_acc", "max"
# Concurrency beyond this makes TPE propose mostly blind (constant liar helps, but only so much).
MAX_DEFAULT_CONCURRENCY = 8


class PruningAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna a trial ASHA stopped early is PRUNED, not COMPLETE.

    Ray's OptunaSearch reports every finished trial as COMPLETE with its last value, so TPE
    would treat an ASHA-stopped trial's 2-epoch accuracy as its final score. Pruned, Optuna
    keeps its intermediate values (reported each epoch) and TPE weighs it as such.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # Tune hands the last result to on_trial_complete only: record it as an intermediate value too.
        ot_trial = self._ot_trials.get(trial_id)
        if result and ot_trial is not None and trial_id not in self._completed_trials and self.metric in result:
            step = result[TRAINING_ITERATION]
            if step not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(result[self.metric], step)
        stopped_early = (bool(result) and not error and not result.get("diverged", False)
                         and result.get("epoch", self.max_epochs) < self.max_epochs)
        if not stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)  # its value: the last intermediate one
        self._completed_trials.add(trial_id)


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


def trial_number(trial: Any) -> int:
    """Tune's creation counter of a trial (1 = the first proposed, the tutorial's setting)."""
    return int(trial.experiment_tag.split("_", 1)[0])


def trial_name(trial: Any) -> str:
    """Short, sortable trial names and folders instead of Tune's <function>_<id>_<every param>_<date>."""
    return f"trial_{trial_number(trial):03d}_{trial.trial_id}"


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS); else start a private one on this machine.

    A plain ray.init() would silently join any cluster left running by `ray start`.
    """
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except ConnectionError as error:
        raise UserError(f"cannot reach the Ray cluster at {address} ({str(error).splitlines()[0]})") from None
    # Ray takes SIGTERM and kills the driver without a final save; as SIGINT, Tune stops cleanly and resumably.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


def trial_resources(experiment: dict[str, Any]) -> tuple[dict[str, float], int]:
    """({"cpu": c, "gpu": g} of one trial, trials at once), checked against what the cluster has.

    Ray would leave a trial asking for GPUs that do not exist PENDING forever: fail now instead.
    """
    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    cpus_per_trial = experiment["cpus_per_trial"]
    gpus_per_trial = experiment["gpus_per_trial"]
    if gpus_per_trial is None:
        gpus_per_trial = 1 if gpus >= 1 else 0
    if gpus_per_trial > 0 and gpus == 0:
        raise UserError(f"gpus_per_trial is {gpus_per_trial}, but the Ray cluster has no GPUs "
                        f"({cpus:g} CPUs): use --gpus-per-trial 0 to run on CPUs")
    if gpus_per_trial > gpus:
        raise UserError(f"gpus_per_trial is {gpus_per_trial}, but the Ray cluster has only {gpus:g} GPUs")
    if cpus_per_trial > cpus:
        raise UserError(f"cpus_per_trial is {cpus_per_trial}, but the Ray cluster has only {cpus:g} CPUs")
    slots = int(gpus // gpus_per_trial) if gpus_per_trial else int(cpus // cpus_per_trial)
    concurrent = experiment["max_concurrent"] or max(1, min(slots, MAX_DEFAULT_CONCURRENCY))
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}, concurrent


def search_space(experiment: dict[str, Any]) -> dict[str, Any]:
    """Tune domains for the searched keys; every other key is the trial's fixed mnist config."""
    domains = {key: dimension.domain() for key, dimension in dimensions(experiment["search_space"]).items()}
    return {**trial_config(experiment, {}), **domains}


def drop_stale_checkpoints(trials: "pd.DataFrame", store: ExperimentStore) -> None:
    """A trial ASHA stopped will never resume: keep its best checkpoint only (on any storage)."""
    for trial in trials[(trials["status"] == "stopped early") & (trials["checkpoint"] != "")].itertuples():
        trial_folder, best = trial.checkpoint.split("/")  # trial_NNN_<id>/checkpoint_NNNNNN
        for checkpoint in store.folders(trial_folder):
            if checkpoint.startswith("checkpoint_") and checkpoint != best:
                store.delete(f"{trial_folder}/{checkpoint}")


def make_searcher(experiment: dict[str, Any], folder: Path, name: str) -> PruningAwareOptunaSearch:
    """TPE (seeded, multivariate) or random sampling; the study in SQLite inside the experiment folder."""
    if experiment["searcher"] == "tpe":
        sampler = optuna.samplers.TPESampler(seed=experiment["seed"], multivariate=True, constant_liar=True,
                                             n_startup_trials=experiment["tpe_startup_trials"])
    else:
        sampler = optuna.samplers.RandomSampler(seed=experiment["seed"])
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / 'optuna.db').resolve()}")
    # The tutorial's setting is trial 1; resolve_experiment refused spaces that cannot hold it.
    baseline = baseline_point(experiment["search_space"], experiment["max_epochs"])
    return PruningAwareOptunaSearch(
        points_to_evaluate=[baseline], sampler=sampler, storage=storage, study_name=name, max_epochs=experiment["max_epochs"])


def make_tuner(experiment: dict[str, Any], store: ExperimentStore, resume: bool, resources: dict[str, float],
               concurrent: int) -> tune.Tuner:
    data = load_mnist(experiment["train"].get("data"))
    print(f"each trial: {resources['cpu']:g} CPU, {resources['gpu']:g} GPU; up to {concurrent} at once", flush=True)
    # with_parameters puts the 60 MB of uint8 images in the object store once; trials read it zero-copy.
    trainable = tune.with_resources(tune.with_parameters(ccnet_trainable, data=data), resources)
    if resume:
        # The searcher (its Optuna study and sampler state) and the scheduler come back from the saved state.
        return tune.Tuner.restore(store.tune_path, trainable=trainable, resume_errored=True)
    if experiment["scheduler"] == "fifo":
        scheduler = FIFOScheduler()
    else:
        scheduler = BaselineKeepingASHA(time_attr="epoch", max_t=experiment["max_epochs"],
                                        grace_period=experiment["grace_period"],
                                        reduction_factor=experiment["reduction_factor"],
                                        baseline=baseline_point(experiment["search_space"], experiment["max_epochs"]))
    tune_config = tune.TuneConfig(metric=METRIC, mode=MODE, search_alg=make_searcher(experiment, store.local, store.name),
                                  scheduler=scheduler, num_samples=experiment["num_samples"],
                                  max_concurrent_trials=concurrent, time_budget_s=experiment["time_budget_s"],
                                  trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                  # One worker process serves trial after trial: no torch import and start-up each time.
                                  reuse_actors=True)
    run_config = tune.RunConfig(
        # Trials write results and checkpoints here from every node: a shared folder or a URI.
        name=store.name, storage_path=store.tune_storage_path,
        callbacks=[TrialTensorBoard(store.local / "tensorboard", experiment["search_space"])],
        # Keep each trial's best checkpoint by val_acc and its latest (to resume from).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                checkpoint_score_order=MODE),
        # A crashed trial restarts from its last checkpoint, twice at most.
        failure_config=tune.FailureConfig(max_failures=2),
        verbose=1,
    )
    return tune.Tuner(trainable, param_space=search_space(experiment), tune_config=tune_config, run_config=run_config)


def run_search(experiment: dict[str, Any], store: ExperimentStore, resume: bool,
               address: str | None) -> tuple[tune.ResultGrid, dict[str, float]]:
    """Run (or resume) the search kept in `store`; returns Tune's ResultGrid and a trial's resources."""
    exists = store.exists() and tune.Tuner.can_restore(store.tune_path)
    if exists and not resume:
        raise UserError(f"{store}: an experiment is already there; --resume to continue it, or choose another --name")
    if resume and not exists:
        raise UserError(f"{store}: no experiment to resume there")
    store.local.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(store.local / "experiment.json", {"experiment": experiment, **run_metadata()})
        store.push("experiment.json")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    connect(address)
    try:
        resources, concurrent = trial_resources(experiment)
        results = make_tuner(experiment, store, resume, resources, concurrent).fit()
    finally:
        ray.shutdown()
    if results.num_terminated + results.num_errors == len(results):
        fail_orphaned_optuna_trials(store.local)
    return results, resources


def fail_orphaned_optuna_trials(folder: Path) -> None:
    """Mark FAIL the Optuna trials left RUNNING once every Tune trial has ended.

    A driver killed between asking Optuna for a trial and saving the searcher's state leaves
    that trial RUNNING in the study; the resumed searcher never knew it, so it never ran.
    """
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / 'optuna.db').resolve()}")
    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
