"""hpo.tracking without Ray: the MLflow callback's children, a resume that logs nothing twice, the refusals."""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpo.search import main as search_main
from hpo.tracking import MlflowTrials, open_store, resolve_store, start_search_run
from tests.helpers import metric_steps, mlflow_store, refused, search_runs

SPACE = {"lr": {"loguniform": [1e-5, 1e-2]}}


def trial(number: int, lr: float, trial_id: str) -> SimpleNamespace:
    """What the callback reads of a Tune trial."""
    return SimpleNamespace(trial_id=trial_id, experiment_tag=f"{number}_lr={lr}", config={"lr": lr, "epochs": 3},
                           last_result={})


def result(epoch: int, val_acc: float) -> dict:
    return {"epoch": epoch, "val_acc": val_acc, "val_loss": 1.0, "train_loss": 1.0, "train_acc": 0.5,
            "lr": 1e-3, "images_per_s": 100.0, "diverged": False}


@pytest.fixture
def tracked(tmp_path: Path) -> tuple[str, MlflowTrials]:
    store = mlflow_store(tmp_path)
    tracking = start_search_run(store, "search", {"num_samples": 2, "search_space": SPACE},
                                {"git_commit": "abc", "argv": ["search.py"]}, str(tmp_path))
    return store, MlflowTrials(tracking, SPACE, {"lr": 2e-4}, max_epochs=3)


@pytest.mark.slow
def test_a_resumed_callback_continues_the_same_children_and_logs_each_epoch_once(tracked: tuple) -> None:
    store, callback = tracked
    tutorial, other = trial(1, 2e-4, "aaaa"), trial(2, 1e-3, "bbbb")
    for epoch in (1, 2):
        callback.on_trial_result(0, [], tutorial, result(epoch, 0.5 + epoch / 10))
    callback.on_trial_result(0, [], other, result(1, 0.3))
    # The driver is killed; Tune restores the callback from its pickle (taken before any of this).
    resumed = pickle.loads(pickle.dumps(callback))
    assert resumed.children == {} and resumed._client is None
    for epoch in (2, 3):  # epoch 2 reported again: the checkpoint it resumed from was epoch 1's
        resumed.on_trial_result(0, [], tutorial, result(epoch, 0.5 + epoch / 10))
    tutorial.last_result = result(3, 0.8)
    resumed.on_trial_complete(0, [], tutorial)
    other.last_result = result(1, 0.3)
    resumed.on_trial_error(0, [], other)

    (parent,), children = search_runs(store)
    runs = {run.data.tags["trial"]: run for run in children[parent.info.run_id]}
    assert set(runs) == {"1", "2"}
    assert metric_steps(store, runs["1"]) == [1, 2, 3] and metric_steps(store, runs["2"]) == [1]
    assert runs["1"].data.tags["tutorial_setting"] == "true" and runs["2"].data.tags["tutorial_setting"] == "false"
    assert (runs["1"].info.status, runs["1"].data.tags["end"]) == ("FINISHED", "completed")
    assert (runs["2"].info.status, runs["2"].data.tags["end"]) == ("FAILED", "error")
    assert runs["1"].data.tags["tune_trial_id"] == "aaaa" and runs["1"].info.run_name == "trial_001"


@pytest.mark.slow
def test_a_trial_stopped_early_is_tagged_so(tracked: tuple) -> None:
    store, callback = tracked
    stopped = trial(2, 1e-3, "cccc")
    callback.on_trial_result(0, [], stopped, result(1, 0.3))
    stopped.last_result = result(1, 0.3)
    callback.on_trial_complete(0, [], stopped)
    (parent,), children = search_runs(store)
    assert children[parent.info.run_id][0].data.tags["end"] == "stopped early"


def test_without_mlflow_the_flag_names_the_extra_and_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    real_import = importlib.import_module

    def without_mlflow(name: str, *args):
        if name.split(".")[0] == "mlflow":
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_mlflow)
    message = refused(search_main, ["--storage-path", str(tmp_path), "--name", "x", "--mlflow"], capsys)
    assert "--mlflow needs the Python package mlflow: pip install -e '.[mlflow]'" in message
    assert list(tmp_path.iterdir()) == []


def test_a_store_mlflow_cannot_use_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"not a database")
    message = refused(search_main, ["--storage-path", str(tmp_path), "--name", "x",
                                    "--mlflow", mlflow_store(tmp_path)], capsys)
    assert "is not a SQLite database" in message and str(tmp_path / "mlflow.db") in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


@pytest.mark.slow
def test_a_relative_store_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_store("sqlite:///results/mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'results' / 'mlflow.db'}"
    assert resolve_store("http://mlflow.example:5000") == "http://mlflow.example:5000"
    with pytest.raises(Exception, match="a SQLite store is sqlite:///PATH"):
        resolve_store("sqlite://")
    open_store(resolve_store("sqlite:///results/mlflow.db"))  # makes the folder the file goes in
    assert (tmp_path / "results" / "mlflow.db").is_file()
