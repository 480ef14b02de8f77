"""MLflow tracking: one parent run per search, one nested child run per trial, the winner in the registry.

    python hpo/search.py ... --mlflow                      # the store sqlite:///results/mlflow.db (no server)
    python hpo/search.py ... --mlflow http://mlflow:5000   # a tracking server
    python hpo/best.py --search results/NAME --mlflow      # the retraining, the comparison, the registered winner
    mlflow ui --backend-store-uri sqlite:///results/mlflow.db

Everything is written from the driver through MLflow's own client (MlflowClient), from the results
Tune sends there: trials on other nodes of a cluster are logged as well, where the driver reaches
the store. A child is found again by its Tune trial id under its parent, and an epoch already in
its history is not logged twice, so a resumed search (after Ctrl-C or a killed driver) continues the
same parent with the same children. The parent's id is kept in the search folder (mlflow.json).

MLflow is optional: pip install -e '.[mlflow]'.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
from ray.tune import Callback

from hpo.experiment import is_baseline
from hpo.trial_terms import BEST_METRIC, ERROR, METRIC, status_of, trial_number
from mnist.atomic import json_text, read_json
from mnist.checkpoint import load_checkpoint
from mnist.data import load_mnist
from mnist.errors import UserError, optional_module
from mnist.layout import BEST, MLFLOW_JSON, RESULTS, SUMMARY_FILES, served_model
from mnist.outputs import SCALARS
from mnist.reading.export import export_checkpoint

DEFAULT_STORE = f"sqlite:///{RESULTS}/mlflow.db"  # a file in the project: nothing to start, `mlflow ui` reads it
MLFLOW_EXPERIMENT = "ccnet-hpo"  # every search is one parent run in this MLflow experiment
REGISTERED_MODEL = "ccnet"  # best.py --mlflow registers each winner as a new version of this model
EPOCH_METRICS = tuple(SCALARS.values())  # the per-epoch numbers TensorBoard shows, under the trainable's names
TRIAL_ID_TAG, TRIAL_TAG, TUTORIAL_TAG, END_TAG = "tune_trial_id", "trial", "tutorial_setting", "end"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under the run it names


def mlflow_module(name: str = "mlflow") -> Any:
    return optional_module(name, "mlflow", "--mlflow")


def resolve_store(uri: str) -> str:
    """The tracking URI with a relative SQLite or file path made absolute: a resumed search, a later
    best.py or a search started from another folder write to the same store. An empty URI (an unset
    variable in a script) is refused: it would turn tracking off without a word."""
    if not uri.strip():
        raise UserError("--mlflow '': an empty store URI (an unset variable?); name a store, or leave --mlflow out")
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        database = sqlite_file(uri)
        if database is None or not uri.split(":///", 1)[1]:
            raise UserError(f"--mlflow {uri}: a SQLite store is sqlite:///PATH (a file; an absolute PATH starts with /)")
        if not database.is_absolute():
            print(f"note: --mlflow {uri} is relative to this folder: the store is {database.resolve()}", flush=True)
        return f"sqlite:///{database.resolve()}"
    if parts.scheme in ("", "file"):
        return Path(parts.path or uri).resolve().as_uri()
    return without_credentials(uri)


def without_credentials(uri: str) -> str:
    """A server URI with its user and password (http://USER:PASSWORD@host/) taken out and handed to MLflow the way
    its documentation says, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in this process's environment:
    MLflow's client then sends them with every request, and the URI that is printed and saved (mlflow.json, the
    runs' tags, Tune's pickled callbacks) holds no secret. A resume or best.py given the URI again gets them again."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password or "")
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def basic_auth() -> dict[str, str]:
    """The Authorization header MLflow's client would send (its credentials variables), for our own probe."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not user and not password:
        return {}
    token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# How long the check of a tracking server may take: MLflow's own client retries a dead server for minutes.
REACH_TIMEOUT_S = 10


def check_store(uri: str) -> None:
    """Whether the store can be used, known within REACH_TIMEOUT_S and in one line, creating nothing: MLflow
    installed; a SQLite store's file a SQLite database (or its folder one that can be made); a server answering
    MLflow's REST API. The store itself is made (open_store) only once every check of the command has passed."""
    mlflow_module()
    parts = urlsplit(uri)
    database = sqlite_file(uri)
    if database is not None:
        check_sqlite_file(uri, database)
    elif parts.scheme in ("http", "https"):
        check_server(uri)


def check_sqlite_file(uri: str, database: Path) -> None:
    if database.exists():
        if not database.is_file():
            raise UserError(f"--mlflow {uri}: {database} is not a file")
        with open(database, "rb") as handle:
            header = handle.read(16)
        if header and header != b"SQLite format 3\0":
            raise UserError(f"--mlflow {uri}: {database} is not a SQLite database")
        return
    folder = next((parent for parent in database.parents if parent.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UserError(f"--mlflow {uri}: cannot make the store's folder {database.parent}")


def check_server(uri: str) -> None:
    """A tracking server answers a search for one experiment within REACH_TIMEOUT_S, with MLflow's JSON."""
    probe = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        request = urllib.request.Request(probe, headers=basic_auth())
        with urllib.request.urlopen(request, timeout=REACH_TIMEOUT_S) as answer:
            body = answer.read(1 << 16)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):  # it is there and wants credentials: MLflow's client sends them
            return
        raise UserError(f"--mlflow {uri}: the server answers HTTP {error.code}, not as an MLflow tracking server"
                        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(f"--mlflow {uri}: cannot reach the tracking server within {REACH_TIMEOUT_S} s ({reason})"
                        ) from None
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"--mlflow {uri}: the server answers, but not as an MLflow tracking server") from None


def sqlite_file(uri: str) -> Path | None:
    """The database file of a SQLite store (sqlite:///PATH), else None."""
    return Path(uri.split(":///", 1)[1]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """Where a SQLite store's runs keep their files: beside the database (a server decides its own)."""
    database = sqlite_file(uri)
    return (database.parent / "mlartifacts").as_uri() if database else None


def open_store(uri: str) -> tuple[Any, str]:
    """(MlflowClient, the id of the MLflow experiment the searches go to), or one line saying why not."""
    mlflow_module()
    database = sqlite_file(uri)
    if database:  # SQLite makes the file, not its folder
        database.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a new SQLite store prints its schema migrations
    try:
        client = mlflow_module("mlflow.tracking").MlflowClient(uri)
        experiment = client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        if experiment is not None:
            return client, experiment.experiment_id
        # The kind makes `mlflow ui` open the experiment on its training runs (else on its GenAI traces page).
        return client, client.create_experiment(MLFLOW_EXPERIMENT, artifact_location=artifact_root(uri),
                                                tags={"mlflow.experimentKind": "custom_model_development"})
    except Exception as error:  # MlflowException, SQLAlchemy's or requests' errors: a store it cannot use
        raise UserError(f"--mlflow {uri}: cannot use this MLflow store ({str(error).splitlines()[0][:200]})") from None


def tracking_of(folder: Path) -> dict[str, str] | None:
    """The MLflow store and parent run of the search in `folder` (mlflow.json), if it is tracked."""
    path = folder / MLFLOW_JSON
    if not path.exists():
        return None
    return read_json(path)


def flat_params(values: dict[str, Any]) -> dict[str, str]:
    """MLflow params are strings: nested values (the search space) as JSON."""
    return {key: json_text(value) if isinstance(value, (dict, list)) else str(value) for key, value in values.items()}


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    entities = mlflow_module("mlflow.entities")
    client.log_batch(run_id, params=[entities.Param(key, value) for key, value in flat_params(params).items()])


def start_search_run(uri: str, name: str, experiment: dict[str, Any], metadata: dict[str, Any],
                     location: str) -> dict[str, str]:
    """The parent run of a new search: what the search folder's mlflow.json keeps."""
    client, experiment_id = open_store(uri)
    run = client.create_run(experiment_id, run_name=name, tags={
        "search_folder": location, "mlflow.source.git.commit": metadata["git_commit"],
        "argv": " ".join(metadata["argv"])[:5000]})
    log_params(client, run.info.run_id, experiment)
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": run.info.run_id}


def reopen_search_run(tracking: dict[str, str]) -> None:
    """A resumed search: its parent run is running again (it stays one run)."""
    client, _ = open_store(tracking["tracking_uri"])
    client.update_run(tracking["parent_run_id"], status="RUNNING")


def finish_search_run(tracking: dict[str, str], folder: Path, best: dict[str, Any] | None) -> None:
    """The finished search's settings, summary files and plots as the parent's artifacts, its winner as
    metrics (`best` None: it ended with nothing to summarize)."""
    client, _ = open_store(tracking["tracking_uri"])
    run_id = tracking["parent_run_id"]
    for path in [folder / name for name in SUMMARY_FILES]:
        if path.exists():
            client.log_artifact(run_id, str(path))
    if best is not None:
        client.log_batch(run_id, metrics=[metric(BEST_METRIC, best[METRIC]), metric("winner_trial", best["trial"])])
    client.set_terminated(run_id, "FINISHED")


def metric(key: str, value: float, step: int = 0) -> Any:
    return mlflow_module("mlflow.entities").Metric(key, float(value), int(time.time() * 1000), step)


class MlflowTrials(Callback):
    """A Tune callback in the driver: each trial one child run under the search's parent run."""

    def __init__(self, tracking: dict[str, str], space: dict[str, dict[str, list]], baseline: dict[str, Any],
                 max_epochs: int) -> None:
        self.tracking = tracking
        self.space = space
        self.baseline = baseline
        self.max_epochs = max_epochs
        self._forget()

    def _forget(self) -> None:
        self._client: Any = None
        self.children: dict[str, str] = {}  # Tune trial id -> child run id
        self.logged: dict[str, set[int]] = {}  # Tune trial id -> epochs already in the child's history

    # Tune pickles its callbacks with the search's state: the client and what it read stay out, and are
    # read back from the store after a resume (which may follow a driver killed after the last pickle).
    def __getstate__(self) -> dict[str, Any]:
        return {key: self.__dict__[key] for key in ("tracking", "space", "baseline", "max_epochs")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forget()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client, _ = open_store(self.tracking["tracking_uri"])
        return self._client

    def child(self, trial: Any) -> str:
        """The trial's child run: found under the parent by its Tune trial id, else created."""
        if trial.trial_id in self.children:
            return self.children[trial.trial_id]
        parent = self.tracking["parent_run_id"]
        found = self.client.search_runs(
            [self.tracking["experiment_id"]], max_results=1,
            filter_string=f"tags.`{PARENT_TAG}` = '{parent}' AND tags.{TRIAL_ID_TAG} = '{trial.trial_id}'")
        if found:
            run_id = found[0].info.run_id
            self.logged[trial.trial_id] = {m.step for m in self.client.get_metric_history(run_id, METRIC)}
        else:
            params = {key: trial.config[key] for key in self.space}
            number = trial_number(trial)
            run_id = self.client.create_run(self.tracking["experiment_id"], run_name=f"trial_{number:03d}",
                                            tags={PARENT_TAG: parent, TRIAL_ID_TAG: trial.trial_id,
                                                  TRIAL_TAG: str(number),
                                                  TUTORIAL_TAG: str(is_baseline(self.baseline, params)).lower()}).info.run_id
            log_params(self.client, run_id, {key: value for key, value in trial.config.items()
                                             if not isinstance(value, dict)})
            self.logged[trial.trial_id] = set()
        self.children[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.child(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        run_id, epoch = self.child(trial), int(result["epoch"])
        if epoch in self.logged[trial.trial_id]:  # logged before a crash or a resume: once is the history
            return
        self.client.log_batch(run_id, metrics=[metric(key, result[key], epoch) for key in EPOCH_METRICS
                                               if key in result and np.isfinite(result[key])])
        self.logged[trial.trial_id].add(epoch)

    def end(self, trial: Any, errored: bool) -> None:
        result = trial.last_result or {}
        status = status_of(errored, result.get("epoch"), bool(result.get("diverged")), self.max_epochs)
        run_id = self.child(trial)
        self.client.set_tag(run_id, END_TAG, status)
        self.client.set_terminated(run_id, "FAILED" if status == ERROR else "FINISHED")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, errored=True)


def winner_file(folder: Path) -> Path:
    """What best.py registers: the seeds' ensemble when there is one, else the first seed's model."""
    return served_model(folder / BEST)


def log_retraining(uri: str, folder: Path, search_name: str, summary: dict[str, Any]) -> str:
    """best.py's runs: one for the retraining (the comparison's gain, interval and p-value), under the
    search's parent run when the search was tracked in the same store, with a child each for the winner
    and the baseline (test accuracy per seed); the winner exported to ONNX beside it (checked on the test
    images) and registered as a new version of REGISTERED_MODEL. Returns the registered version."""
    checkpoint = winner_file(folder)
    test_images = load_mnist(load_checkpoint(checkpoint)["config"].get("data")).test_images
    onnx_file = checkpoint.with_suffix(".onnx")
    export_checkpoint(checkpoint, "onnx", onnx_file, test_images)
    client, experiment_id = open_store(uri)
    search = tracking_of(folder)
    tags = {PARENT_TAG: search["parent_run_id"]} if search and search["tracking_uri"] == uri else {}
    run_id = client.create_run(experiment_id, run_name=f"{search_name} best.py", tags=tags).info.run_id
    log_params(client, run_id, {"winner_trial": summary["trial"], "epochs": summary["epochs"],
                                "seeds": summary["seeds"], "trained_on": summary["trained_on"],
                                "selected_by": summary["selected_by"], "registered": checkpoint.name})
    comparison = summary.get("comparison")
    if comparison and comparison["gain_ci95_points"] is not None:
        low, high = comparison["gain_ci95_points"]
        client.log_batch(run_id, metrics=[metric("gain_points", comparison["gain_points"]),
                                          metric("gain_ci95_low_points", low), metric("gain_ci95_high_points", high),
                                          metric("p_value", comparison["p_value"])])
    if "ensemble" in summary:
        client.log_batch(run_id, metrics=[metric("ensemble_test_accuracy", summary["ensemble"]["test_accuracy"])])
    for arm in ("winner", "baseline"):
        if arm in summary:
            arm_run = client.create_run(experiment_id, run_name=f"{search_name} {arm} retrained",
                                        tags={PARENT_TAG: run_id, "arm": arm}).info.run_id
            log_params(client, arm_run, summary["params"] if arm == "winner" else summary["baseline"]["params"])
            client.log_batch(arm_run, metrics=[metric("test_accuracy", acc, seed) for seed, acc in
                                               zip(summary["seeds"], summary[arm]["test_accuracies"])]
                             + [metric("test_accuracy_mean", summary[arm]["mean"])])
            client.set_terminated(arm_run, "FINISHED")
    for path in sorted((folder / BEST).glob("*.json")) + sorted((folder / BEST).glob("*.png")):
        client.log_artifact(run_id, str(path))
    version = register_onnx(client, run_id, onnx_file, test_images[:1, None].astype(np.float32) / 255)
    client.set_terminated(run_id, "FINISHED")
    return version


def register_onnx(client: Any, run_id: str, onnx_file: Path, example: np.ndarray) -> str:
    """The exported winner as an MLflow model (ONNX flavour: loads with onnxruntime, no code of ours),
    with its input signature and an example, logged to the run and registered; returns its version."""
    onnx = optional_module("onnx", "mlflow", "--mlflow")
    mlflow_onnx, models = mlflow_module("mlflow.onnx"), mlflow_module("mlflow.models")
    model = onnx.load(str(onnx_file))
    logits = optional_module("onnxruntime", "mlflow", "--mlflow").InferenceSession(
        str(onnx_file), providers=["CPUExecutionProvider"]).run(["logits"], {"image": example})[0]
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "model"
        mlflow_onnx.save_model(model, str(saved), signature=models.infer_signature(example, logits),
                               input_example=example, metadata={prop.key: prop.value for prop in model.metadata_props},
                               pip_requirements=["onnxruntime", "numpy"])
        client.log_artifacts(run_id, str(saved), "model")
    try:
        client.create_registered_model(REGISTERED_MODEL, description="CCNet digit classifiers: each hpo/best.py "
                                                                    "--mlflow winner is one version (ONNX)")
    except mlflow_module("mlflow.exceptions").MlflowException as error:
        if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    return client.create_model_version(REGISTERED_MODEL, source, run_id=run_id).version
