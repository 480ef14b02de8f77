"""The tools people would pick instead of this project's search, each driven through its own public API as its
documentation shows, on the task every arm of benchmarks/peers.py shares (PeerTask): the default search space,
the same data, the same epoch budget of a trial, the same seed, two trials at once and the same wall clock.

A tool's fidelity is epochs of one trial's max_epochs run: our training function is called per epoch, and a
trial asked for 3 epochs trains the first 3 epochs of its 9-epoch schedule, as ASHA sees a trial it stops. Every
epoch any process trains is appended to one JSON-lines log (when it ended, the trial, its val_acc, its training
seconds): the log, not the tool's own summary, is what benchmarks/peers.py measures, the same way for every tool.

DEHB, SMAC3 and ConfigSpace are an optional extra (`pip install -e '.[peers]'`); their imports are inside the
functions that drive them so that this module (and plain Optuna's arm) works without them.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna

from hpo.driver import training_data
from hpo.experiment import plain, trial_config
from hpo.space import Dimension, dimensions
from mnist.data import MnistData
from mnist.train import train

PEERS_EXTRA = "pip install -e '.[peers]'"
# DEHB's one release pins numpy<2 and runs on numpy 2: installed without its pins (pyproject.toml's peers extra).
DEHB_INSTALL = "pip install --no-deps dehb"
# The modules each peer needs, and the command that installs each: an arm missing one is refused with it.
PEER_MODULES = {"dehb": {"dehb": DEHB_INSTALL, "ConfigSpace": PEERS_EXTRA, "loguru": PEERS_EXTRA,
                         "distributed": PEERS_EXTRA},
                "smac": {"smac": PEERS_EXTRA, "ConfigSpace": PEERS_EXTRA}}


@dataclass(frozen=True)
class PeerTask:
    """What every arm shares: the resolved experiment (space, max_epochs, train settings, seed), the wall clock
    of the arm, the trials at once, the epochs' log and when the arm started (time.time())."""
    experiment: dict[str, Any]
    budget_s: float
    workers: int
    log: Path
    started: float

    @property
    def deadline(self) -> float:
        return self.started + self.budget_s

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.time())


class OutOfTime(Exception):
    """The arm's wall clock ran out during a trial: the epochs it trained are in the log."""


class EnoughEpochs(Exception):
    """The trial trained the epochs its tool asked for (its fidelity)."""


@functools.lru_cache(maxsize=1)
def _data(experiment_json: str) -> MnistData:
    """The training data, read once per process (a DEHB or SMAC worker trains many trials)."""
    return training_data(json.loads(experiment_json))


def _log_epoch(log: Path, line: dict[str, Any]) -> None:
    # One short write in append mode: whole lines from several processes, none torn.
    with open(log, "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


def train_trial(task: PeerTask, point: dict[str, Any], epochs: int, trial: str,
                on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train `point` (a sample of the search space) for the first `epochs` epochs of its max_epochs run, logging
    every epoch; each epoch's val_acc. `on_epoch(epoch, val_acc)` is the tool's hook (Optuna's report and
    prune). OutOfTime once the arm's wall clock has run out."""
    if time.time() >= task.deadline:  # a tool's queued job after the budget: nothing trains (or burns a core)
        raise OutOfTime
    config = trial_config(task.experiment, {key: plain(value) for key, value in point.items()})
    values: list[float] = []

    def after_epoch(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        _log_epoch(task.log, {"time": time.time(), "trial": trial, "epoch": metrics["epoch"],
                              "val_acc": metrics["val_acc"], "epoch_time_s": metrics["epoch_time_s"]})
        values.append(metrics["val_acc"])
        if on_epoch is not None:
            on_epoch(metrics["epoch"], metrics["val_acc"])
        if time.time() >= task.deadline:
            raise OutOfTime
        if metrics["epoch"] >= epochs:
            raise EnoughEpochs

    try:
        train(config, data=_data(json.dumps(task.experiment)), on_epoch=after_epoch)
    except EnoughEpochs:
        pass
    return values


# Plain Optuna, no Ray: TPE with Optuna's Hyperband pruner, the tutorial's setting enqueued first, two
# processes on one study in a journal file (Optuna's documented way to share a study between processes).

def suggest(trial: optuna.Trial, key: str, dimension: Dimension) -> Any:
    """One dimension of the space through Optuna's public suggest API (every kind maps one to one)."""
    if dimension.kind == "choice":
        return trial.suggest_categorical(key, list(dimension.values))
    if dimension.kind == "randint":
        return trial.suggest_int(key, *dimension.values)
    return trial.suggest_float(key, *dimension.values, log=dimension.log_scale)


def journal_storage(path: Path) -> optuna.storages.JournalStorage:
    try:
        backend = optuna.storages.journal.JournalFileBackend(str(path))
    except AttributeError:  # Optuna 3.x, the project's floor
        backend = optuna.storages.JournalFileStorage(str(path))
    return optuna.storages.JournalStorage(backend)


def _optuna_worker(task: PeerTask, storage_path: Path, worker: int) -> None:
    max_epochs = task.experiment["max_epochs"]
    # Each worker its own sampler seed (two equal seeds would propose the same random start-up points).
    sampler = optuna.samplers.TPESampler(seed=task.experiment["seed"] * task.workers + worker)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    study = optuna.load_study(study_name="peers", storage=journal_storage(storage_path), sampler=sampler,
                              pruner=pruner)
    space = dimensions(task.experiment["search_space"])

    def objective(trial: optuna.Trial) -> float:
        point = {key: suggest(trial, key, dimension) for key, dimension in space.items()}

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            return train_trial(task, point, max_epochs, f"optuna-{trial.number}", report)[-1]
        except OutOfTime:
            study.stop()
            raise optuna.TrialPruned() from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, timeout=task.seconds_left())


def run_optuna(task: PeerTask, folder: Path) -> None:
    storage_path = folder / "optuna-journal.log"
    study = optuna.create_study(study_name="peers", storage=journal_storage(storage_path), direction="maximize")
    study.enqueue_trial(task.experiment["baseline"])
    # Spawned, not forked: each worker starts its own torch (a forked one inherits this one's threads' state).
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_optuna_worker, args=(task, storage_path, worker))
               for worker in range(task.workers)]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join()
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()
                process.join()


# DEHB and SMAC3 read a ConfigSpace; the default space's four kinds map one to one.

def config_space(space: dict[str, dict[str, list]], seed: int) -> Any:
    from ConfigSpace import Categorical, ConfigurationSpace, Constant, Float, Integer
    hyperparameters = []
    for key, dimension in dimensions(space).items():
        if dimension.kind == "choice":
            values = list(dimension.values)
            hyperparameters.append(Constant(key, values[0]) if len(values) == 1 else Categorical(key, values))
        elif dimension.kind == "randint":
            hyperparameters.append(Integer(key, tuple(dimension.values)))
        else:
            hyperparameters.append(Float(key, tuple(dimension.values), log=dimension.log_scale))
    space_of_configs = ConfigurationSpace(seed=seed)
    space_of_configs.add(hyperparameters)
    return space_of_configs


@dataclass(frozen=True)
class Evaluation:
    """A trial as DEHB and SMAC3 call it (a picklable object: their workers are dask processes)."""
    task: PeerTask
    tool: str

    def error(self, config: Any, fidelity: float) -> float:
        """1 - the val_acc of the trial's last epoch: what both tools minimise (1 for a trial the budget cut)."""
        try:
            values = train_trial(self.task, dict(config), int(round(fidelity)), f"{self.tool}-{uuid.uuid4().hex[:8]}")
        except OutOfTime:
            return 1.0
        return 1.0 - values[-1] if values else 1.0

    def dehb(self, config: Any, fidelity: float, **kwargs: Any) -> dict[str, float]:
        started = time.time()
        return {"fitness": self.error(config, fidelity), "cost": time.time() - started}

    def smac(self, config: Any, seed: int = 0, budget: float = 1.0) -> float:
        return self.error(config, budget)


@contextlib.contextmanager
def dask_workers(task: PeerTask) -> Iterator[Any]:
    """A dask client on a local cluster of task.workers one-thread processes, ended (workers killed) when the arm
    ends: a tool that returns at its budget leaves its jobs running on a cluster it made, which would train on
    beside the next arm."""
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=task.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client


def run_dehb(task: PeerTask, folder: Path) -> None:
    from dehb import DEHB
    experiment = task.experiment
    with dask_workers(task) as client:
        # DEHB's run has no way to start from a given configuration: the tutorial's setting is not tried first.
        optimizer = DEHB(f=Evaluation(task, "dehb").dehb, cs=config_space(experiment["search_space"], experiment["seed"]),
                         min_fidelity=1, max_fidelity=experiment["max_epochs"], client=client,
                         output_path=str(folder / "dehb"), seed=experiment["seed"], log_level="WARNING")
        optimizer.run(total_cost=task.seconds_left())


def run_smac(task: PeerTask, folder: Path) -> None:
    from ConfigSpace import Configuration
    from smac import MultiFidelityFacade, Scenario
    experiment = task.experiment
    space = config_space(experiment["search_space"], experiment["seed"])
    scenario = Scenario(space, name="peers", output_directory=folder / "smac", deterministic=True,
                        walltime_limit=task.seconds_left(), n_trials=1_000_000, min_budget=1,
                        max_budget=experiment["max_epochs"], n_workers=task.workers, seed=experiment["seed"])
    initial = MultiFidelityFacade.get_initial_design(
        scenario, additional_configs=[Configuration(space, values=experiment["baseline"])])
    with dask_workers(task) as client:
        optimizer = MultiFidelityFacade(scenario, Evaluation(task, "smac").smac, initial_design=initial,
                                        overwrite=True, logging_level=40, dask_client=client)
        optimizer.optimize()


PEER_RUNNERS = {"optuna": run_optuna, "dehb": run_dehb, "smac": run_smac}


def not_installed(arm: str) -> str | None:
    """Why `arm` cannot run here ("no module dehb; pip install --no-deps dehb"), or None when it can."""
    for module, command in PEER_MODULES.get(arm, {}).items():
        if importlib.util.find_spec(module) is None:
            return f"no module {module}; {command}"
    return None


def read_epoch_log(log: Path) -> list[dict[str, Any]]:
    """Every whole line of the epochs' log (a line cut by a killed worker is skipped)."""
    if not log.exists():
        return []
    lines = []
    for text in log.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines

