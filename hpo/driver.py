"""The search driver: wires the pieces into one Ray Tune run (or resumes it).

The cluster (hpo.cluster), what to try next (hpo.searcher), when to stop a trial
(hpo.scheduler), the trainable (hpo.trainable), TensorBoard (hpo.tb_logger) and the
experiment's storage (hpo.storage) are each their own module; this one builds the Tuner.

Ray is the engine on one laptop and on a cluster alike: the same code, a different `address`.
The data are read once here and shipped to the trials through Ray's object store.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import optuna
import ray
from ray import tune

from hpo.cluster import (check_address, check_gpus_usable, check_storage_shared, connect, end_leftover_cluster,
                         end_private_cluster, fake_gpus, SigtermStop, trial_resources)
from hpo.dashboard import HOST, serve_dashboard
from hpo.experiment import trial_config
from hpo.progress import SearchProgress, keep_staged_log
from hpo.scheduler import make_scheduler
from hpo.searcher import check_study, fail_orphaned_optuna_trials, make_searcher
from hpo.space import dimensions
from hpo.saved_state import check_saved_state
from hpo.storage import ExperimentStore, read_experiment_file
from hpo.tb_logger import TrialTensorBoard
from hpo.tracking import MlflowTrials, reopen_search_run, start_search_run, tracking_of
from hpo.trainable import ccnet_trainable
from hpo.trial_terms import METRIC, MODE, trial_name
from mnist.atomic import write_json_atomic
from mnist.checkpoint import package_version, run_metadata
from mnist.data import MnistData, load_mnist, split_train_val
from mnist.errors import UserError
from mnist.layout import ENDED_JSON, EXPERIMENT_JSON, MLFLOW_JSON, TENSORBOARD
from mnist.webserver import reserve_port



def search_space(experiment: dict[str, Any]) -> dict[str, Any]:
    """Tune domains for the searched keys; every other key is the trial's fixed mnist config."""
    domains = {key: dimension.domain() for key, dimension in dimensions(experiment["search_space"]).items()}
    return {**trial_config(experiment, {}), **domains}


def training_data(experiment: dict[str, Any]) -> MnistData:
    """The data every trial trains on, read and split once before anything starts: bad data, or a split
    with no validation images to select on, is refused before Ray starts or a file is written."""
    config = trial_config(experiment, {})
    if config["val_fraction"] == 0:
        raise UserError("train.val_fraction is 0: a search selects on validation accuracy, so it needs a "
                        "validation split (0 is for retraining a winner: hpo/best.py --full)")
    data = load_mnist(config["data"])
    split_train_val(data, config["val_fraction"], config["limit"])
    return data


def make_tuner(experiment: dict[str, Any], store: ExperimentStore, resume: bool, resources: dict[str, float],
               concurrent: int, data: MnistData, tracking: dict[str, str] | None = None) -> tune.Tuner:
    print(f"each trial: {resources['cpu']:g} CPU, {resources['gpu']:g} GPU; up to {concurrent} at once", flush=True)
    # with_parameters puts the 60 MB of uint8 images in the object store once; trials read it zero-copy.
    trainable = tune.with_resources(tune.with_parameters(ccnet_trainable, data=data, fake_gpus=fake_gpus()), resources)
    if resume:
        # The searcher (its Optuna study and sampler state), the scheduler and the callbacks (MlflowTrials
        # with its parent run among them) come back from the saved state.
        return tune.Tuner.restore(store.tune_path, trainable=trainable, resume_errored=True)
    tune_config = tune.TuneConfig(metric=METRIC, mode=MODE, search_alg=make_searcher(experiment, store.local, store.name),
                                  scheduler=make_scheduler(experiment), num_samples=experiment["num_samples"],
                                  max_concurrent_trials=concurrent, time_budget_s=experiment["time_budget_s"],
                                  trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                  # One worker process serves trial after trial: no torch import and start-up each time.
                                  reuse_actors=True)
    callbacks = [TrialTensorBoard(store.local.resolve() / TENSORBOARD, experiment["search_space"]),
                 SearchProgress(experiment["num_samples"], experiment["max_epochs"],
                                time_budget_s=experiment["time_budget_s"])]
    if tracking:
        callbacks.append(MlflowTrials(tracking, experiment["search_space"], experiment["baseline"],
                                      experiment["max_epochs"]))
    run_config = tune.RunConfig(
        # Trials write results and checkpoints here from every node: a shared folder or a URI.
        name=store.name, storage_path=store.tune_storage_path,
        # TensorBoard's folder is absolute: a search resumed from another working directory still writes there.
        callbacks=callbacks,
        # Keep each trial's best checkpoint by val_acc and its latest (to resume from).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                checkpoint_score_order=MODE),
        # A crashed trial restarts from its last checkpoint, twice at most.
        failure_config=tune.FailureConfig(max_failures=2),
        # Tune's own tables stay out of the console: SearchProgress prints a compact line instead.
        verbose=0,
    )
    return tune.Tuner(trainable, param_space=search_space(experiment), tune_config=tune_config, run_config=run_config)


def saved_whereabouts(store: ExperimentStore) -> dict[str, str] | None:
    """Where the search in `store` was when it started (experiment.json), if it says."""
    try:
        return read_experiment_file(store.local).get("whereabouts")
    except UserError:
        return None


def check_resumable_version(store: ExperimentStore) -> None:
    """Refuse, in one line, to resume a search that another minor version of this project, or another Ray,
    started: Tune's saved state is Ray's own pickle of its trials and of our searcher, scheduler and callbacks,
    by module and field. Its results stay readable (best.py, TensorBoard, trials.csv) by any version."""
    saved = read_experiment_file(store.local)
    readable = f"its results can be read by any version: python hpo/best.py --search {store}"
    started, now = saved.get("version", "0.1"), package_version()  # 0.1 did not record it
    if started.split(".")[:2] != now.split(".")[:2] and "unknown" not in (started, now):
        raise UserError(f"{store}: started by ccnet-hpo {started}, this is {now}; a search resumes only with the "
                        f"minor version that started it ({readable})")
    # Tune's state is Ray's pickle, and the searcher's sampler Optuna's: each resumes on the version that saved it.
    for package, module, install in (("Ray", ray, "ray[tune]"), ("Optuna", optuna, "optuna")):
        started = saved.get(f"{module.__name__}_version", module.__version__)  # 0.1 recorded neither
        if started != module.__version__:
            raise UserError(f"{store}: started with {package} {started}, this is {package} {module.__version__}; "
                            f"the search resumes only with the {package} that saved it: pip install "
                            f"'{install}=={started}' ({readable})")


class SearchInterrupted(Exception):
    """The search was stopped (Ctrl-C, SIGTERM) with trials unfinished or its results unwritten; Tune saved its state
    to resume from. The message says what is left ("3 trial(s) unfinished")."""


def unfinished_trials(results: tune.ResultGrid) -> int:
    """Trials that neither ended (their last result says done) nor failed: an interrupted search has some."""
    return sum(1 for result in results if result.error is None and not result.metrics.get("done", False))


@contextmanager
def live_dashboard(store: ExperimentStore, port: int | None, reservation: socket.socket | None) -> Iterator[None]:
    """optuna-dashboard on `port` while the block runs (no dashboard when port is None); `reservation` held
    the port until now (mnist.webserver.reserve_port)."""
    if port is None:
        yield
        return
    if reservation is not None:
        reservation.close()
    with serve_dashboard(store.local, port) as url:
        print(f"dashboard: {url}  (live while the search runs; later: python hpo/dashboard.py {store.local})",
              flush=True)
        yield


# Seconds a search on a cluster it joined waits for what a trial asks (an autoscaler adding GPU workers).
JOINED_CLUSTER_WAIT_S = 600


def give_up_after_sigterm(store: ExperimentStore, resume_command: str) -> None:
    """The end of a search stopped by SIGTERM on its own cluster, which may be dying with it (timeout, docker
    stop, systemd and Slurm signal every process): what Tune saved last is what --resume continues. Said on
    stdout and in search.log (then hpo.cluster ends the cluster and the process)."""
    message = f"stopped by SIGTERM; Tune's last saved state is kept: continue with: {resume_command}\n"
    sys.stdout.write(message)
    sys.stdout.flush()
    os.write(2, message.encode())  # stderr is the search's log meanwhile (hpo.progress.search_log)
    keep_staged_log(store.local)
    store.ray_session_file.unlink(missing_ok=True)  # the cluster it names is ended next


def run_search(experiment: dict[str, Any], store: ExperimentStore, resume: bool, address: str | None,
               dashboard_port: int | None = None, wait_s: float | None = None,
               shared_storage: bool = False, mlflow_uri: str | None = None,
               resume_command: str = "python hpo/search.py --resume") -> tuple[tune.ResultGrid, dict[str, float]]:
    """Run (or resume) the search kept in `store`; returns Tune's ResultGrid and a trial's resources.

    With `dashboard_port`, optuna-dashboard serves the search's study on 127.0.0.1 while it runs. On a
    cluster it joined, it waits `wait_s` seconds (default JOINED_CLUSTER_WAIT_S; on its own cluster 0) for
    the resources of a trial; `shared_storage` says a local --storage-path is mounted on every node.
    With `mlflow_uri` a new search is tracked in that MLflow store (a resumed one keeps its own tracking).
    """
    exists = store.exists() and tune.Tuner.can_restore(store.tune_path)
    if exists and not resume:
        raise UserError(f"{store}: an experiment is already there; --resume to continue it, or choose another --name")
    if resume and not exists:
        raise UserError(f"{store}: no experiment to resume there")
    if resume and (store.local / ENDED_JSON).exists():
        ended = json.loads((store.local / ENDED_JSON).read_text())
        raise UserError(f"{store}: ended by its time budget ({ended['time_budget_s']:g} s) with "
                        f"{ended['unfinished']} trial(s) unstarted or unfinished; its results are final "
                        "(python hpo/best.py); for more trials start a new search")
    if resume:
        check_resumable_version(store)
        check_saved_state(store)
        check_study(store.local, store.name)
        store.check_not_moved(saved_whereabouts(store))
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its own boxes and a TensorBoard hint into Ray's temporary
    # folder even at verbose=0; the classic one stays quiet: the console is SearchProgress's.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = training_data(experiment)
    # Held from before Ray starts (its processes take free ports) until the dashboard binds it.
    reservation = reserve_port(dashboard_port, HOST) if dashboard_port is not None else None
    for record in [store.ray_session_file, *store.leftover_ray_sessions()]:  # killed drivers' clusters
        end_leftover_cluster(record)
    session = connect(address)
    sigterm = SigtermStop(session, lambda: give_up_after_sigterm(store, resume_command))
    if session:
        store.ray_session_file.parent.mkdir(parents=True, exist_ok=True)  # the storage root (benchmarks/schedulers.py's is new)
        store.ray_session_file.write_text(session)
    if wait_s is None:
        wait_s = 0 if check_address(address) == "local" else JOINED_CLUSTER_WAIT_S
    try:
        check_storage_shared(not store.remote, shared_storage, store.tune_storage_path)
        resources, concurrent = trial_resources(experiment, wait_s)
        check_gpus_usable(resources["gpu"])
        # Only once the cluster is there and can hold a trial: a refused start leaves no folder to resume.
        if not resume:
            # The MLflow run first: a store that refuses it (locked, gone) leaves no folder that --resume cannot use.
            tracking = mlflow_uri and start_search_run(mlflow_uri, store.name, experiment, run_metadata(),
                                                       store.location)
            store.local.mkdir(parents=True, exist_ok=True)
            write_json_atomic(store.local / EXPERIMENT_JSON, {"experiment": experiment, **run_metadata(),
                                                              "ray_version": ray.__version__,
                                                              "optuna_version": optuna.__version__,
                                                              "whereabouts": store.whereabouts()})
            store.push(EXPERIMENT_JSON)
            if tracking:
                write_json_atomic(store.local / MLFLOW_JSON, tracking)
                store.push(MLFLOW_JSON)
        else:
            tracking = tracking_of(store.local)
            if tracking:
                reopen_search_run(tracking)
        tuner = make_tuner(experiment, store, resume, resources, concurrent, data, tracking or None)
        started = time.monotonic()
        with live_dashboard(store, dashboard_port, reservation):
            results = tuner.fit()
        budget = experiment["time_budget_s"]
        budget_spent = budget is not None and time.monotonic() - started >= budget
    finally:
        if reservation is not None:
            reservation.close()
        if sigterm.ends_the_search():  # Tune has saved its state by now
            sigterm.end_search()
        sigterm.driver_ends_cluster.set()
        end_private_cluster(session)
        store.ray_session_file.unlink(missing_ok=True)
    unfinished = unfinished_trials(results)
    if unfinished and not budget_spent:  # Ctrl-C: the unfinished trials go on when the search is resumed
        raise SearchInterrupted(f"{unfinished} trial(s) unfinished")
    if budget_spent:  # an end, not an interruption: said in the folder, so that --resume says so too
        write_json_atomic(store.local / ENDED_JSON, {"ended_by": "time budget", "time_budget_s": budget,
                                                    "unfinished": unfinished + experiment["num_samples"] - len(results)})
    fail_orphaned_optuna_trials(store.local)
    return results, resources


