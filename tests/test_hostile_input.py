"""Hard cases, round 3: values that would make answers silently wrong, tracking that hangs, silent changes to
what the user said, files that common tools write. Each is one line and exit 2 (or the right result), with
nothing written before the checks pass."""
from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import json

import numpy as np
import pytest
from PIL import Image

from hpo import tracking
from hpo.experiment import load_experiment_file, resolve_experiment
from hpo.search import main as search_main
from mnist.atomic import write_json_atomic
from mnist.checkpoint import check_calibration, load_checkpoint, save_checkpoint
from mnist.errors import UserError
from mnist.evaluate import main as evaluate_main
from mnist.reading.export import main as export_main
from mnist.reading.handwriting import read_labels
from mnist.reading.predict import main as predict_main
from mnist.reading.serve import main as serve_main
from tests.helpers import SMOKE_GROUP, refused


# ---------------------------------------------------------------- tracking that hangs or leaves things behind

def test_a_tracking_server_nobody_listens_on_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = refused(search_main, ["--mlflow", f"http://127.0.0.1:{port}", "--storage-path", str(tmp_path),
                                "--name", "s"], capsys)
    assert "cannot reach the tracking server within 10 s" in err
    assert list(tmp_path.iterdir()) == [] or all(path.name.startswith(".") for path in tmp_path.iterdir())
    assert not (tmp_path / "s").exists()


def test_a_server_that_never_answers_is_given_up_on_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "REACH_TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with pytest.raises(UserError, match=r"cannot reach the tracking server within 0.5 s"):
            tracking.check_store(f"http://127.0.0.1:{silent.getsockname()[1]}")


def test_a_server_that_is_not_mlflow_is_refused() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotMlflow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a wiki</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(UserError, match="answers, but not as an MLflow tracking server"):
            tracking.check_store(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def test_an_empty_store_uri_is_refused_not_read_as_no_tracking(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = refused(search_main, ["--mlflow", "", "--storage-path", str(tmp_path), "--name", "s"], capsys)
    assert "--mlflow '': an empty store URI" in err


def test_a_relative_sqlite_store_says_where_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_store("sqlite:///x/y.db") == f"sqlite:///{tmp_path.resolve() / 'x' / 'y.db'}"
    assert f"the store is {tmp_path.resolve() / 'x' / 'y.db'}" in capsys.readouterr().out


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("my notes")
    with pytest.raises(UserError, match="is not a SQLite database"):
        tracking.check_store(f"sqlite:///{notes}")
    assert notes.read_text() == "my notes"


@SMOKE_GROUP
@pytest.mark.slow
def test_a_search_refused_for_a_taken_name_creates_no_store(smoke_search: tuple[Path, object], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    taken = tmp_path / "results" / "smoke"
    shutil.copytree(smoke_search[0], taken)
    store = tmp_path / "tracking" / "new.db"
    err = refused(search_main, ["--storage-path", str(taken.parent), "--name", "smoke", "--mlflow", f"sqlite:///{store}"],
                  capsys)
    assert "an experiment is already there" in err
    assert not store.exists() and not store.parent.exists()


# ---------------------------------------------------------------- values that make answers silently wrong

@pytest.fixture
def calibrated(tmp_path: Path, tiny_run: Path) -> Path:
    path = tmp_path / "best.pt"
    shutil.copy(tiny_run / "best.pt", path)
    return path


@pytest.mark.parametrize("change, key", [
    ({"temperature": -1.0}, "temperature"), ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"temperature": "1.5"}, "temperature"), ({"unsure_below": float("nan")}, "unsure_below"),
    ({"unsure_below": 1.5}, "unsure_below"), ({"unsure_below": -0.1}, "unsure_below"),
    ({"temperature": True}, "temperature"),
])
def test_a_checkpoint_with_impossible_calibration_is_refused_naming_file_and_key(
        calibrated: Path, change: dict, key: str, capsys: pytest.CaptureFixture, mnist_data: object) -> None:
    state = load_checkpoint(calibrated)
    assert state["calibration"]["temperature"] > 0  # a sound one to start from
    save_checkpoint({**state, "calibration": {**state["calibration"], **change}}, calibrated)
    digit = calibrated.parent / "digit.png"
    Image.fromarray(mnist_data.test_images[0]).save(digit)
    err = refused(predict_main, ["--checkpoint", str(calibrated), str(digit)], capsys)
    assert f"{calibrated}: calibration.{key} must be" in err


def test_a_calibration_that_is_not_a_mapping_is_one_line(calibrated: Path, capsys: pytest.CaptureFixture) -> None:
    save_checkpoint({**load_checkpoint(calibrated), "calibration": "garbage"}, calibrated)
    err = refused(evaluate_main, [str(calibrated)], capsys)
    assert f"{calibrated}: calibration is not a mapping (got str)" in err


@pytest.mark.parametrize("metadata, message", [
    ({"temperature": "nan", "unsure_below": "0.5"}, "metadata.temperature must be a finite number"),
    ({"temperature": "-2", "unsure_below": "0.5"}, "metadata.temperature must be a finite number > 0"),
    ({"temperature": "1.2", "unsure_below": "abc"}, "metadata.unsure_below must be a finite number"),
    ({"temperature": "1.2"}, "metadata has no unsure_below"),
])
def test_an_export_with_impossible_calibration_is_refused(metadata: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        check_calibration(metadata, "model.onnx: metadata", as_text=True)


def test_every_json_written_is_valid_json(tmp_path: Path) -> None:
    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    write_json_atomic(tmp_path / "m.json", {"loss": float("nan"), "history": [{"loss": float("inf")}],
                                            "val": np.float32("nan"), "acc": np.float64(0.5), "n": np.int64(3)})
    value = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse_constant)
    assert value == {"loss": None, "history": [{"loss": None}], "val": None, "acc": 0.5, "n": 3}


# ---------------------------------------------------------------- servers: flags before the model

def test_serve_checks_its_flags_before_loading_the_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no_model.pt"  # were the model loaded first, this would be the complaint
    assert "--port 99999: not a TCP port" in refused(serve_main, ["--checkpoint", str(missing), "--port", "99999"], capsys)
    err = refused(serve_main, ["--checkpoint", str(missing), "--host", "no-such-host.invalid"], capsys)
    assert "--host no-such-host.invalid: not an address or a name this machine knows" in err
    assert "choose another" not in err
    err = refused(serve_main, ["--checkpoint", str(missing), "--host", "192.0.2.1"], capsys)  # TEST-NET: not ours
    assert "--host must be an address of this machine" in err


# ---------------------------------------------------------------- silent changes to what the user said

@pytest.mark.parametrize("flags", [["--num-samples", "40"], ["--max-epochs", "9"], ["--limit", "5000"],
                                   ["--experiment", "experiments/cpu-quick.yaml"], ["--scheduler", "fifo"]])
def test_resume_refuses_settings_it_would_not_apply(tmp_path: Path, flags: list[str],
                                                    capsys: pytest.CaptureFixture) -> None:
    err = refused(search_main, ["--resume", "--name", "x", "--storage-path", str(tmp_path), *flags], capsys)
    assert f"{flags[0]} would change them" in err and "start a new search" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spec, message", [
    ({"randint": [0, 2.5]}, "randint takes whole-number bounds"), ({"randint": [False, True]}, "False is not a number"),
    ({"uniform": [True, 2]}, "True is not a number"), ({"randint": [0.5, 3]}, "randint takes whole-number bounds"),
])
def test_search_space_bounds_are_taken_as_written_or_refused(spec: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_experiment({"search_space": {"shift": spec}}, {}, "e.yaml")


def test_a_switch_set_to_a_value_it_does_not_take_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HPO_FAKE_GPUS", "abc")
    err = refused(search_main, ["--storage-path", str(tmp_path), "--name", "s"], capsys)
    assert "HPO_FAKE_GPUS='abc': must be 1 (on) or 0 (off), or unset" in err and list(tmp_path.iterdir()) == []


def digits_folder(folder: Path, mnist_data: object, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(255 - mnist_data.test_images[index]).save(folder / f"d{index}.png")
    return folder


def test_a_labels_file_that_labels_a_file_twice_is_refused(tmp_path: Path, mnist_data: object,
                                                           capsys: pytest.CaptureFixture) -> None:
    folder = digits_folder(tmp_path / "digits", mnist_data)
    (folder / "labels.csv").write_text("file,label\nd0.png,7\nd1.png,2\nd0.png,1\n")
    err = refused(predict_main, [str(folder), "--labels", str(folder / "labels.csv")], capsys)
    assert "line 4: 'd0.png' is labelled a second time" in err


def test_an_empty_folder_among_the_images_is_refused(tmp_path: Path, mnist_data: object,
                                                     capsys: pytest.CaptureFixture) -> None:
    folder = digits_folder(tmp_path / "digits", mnist_data)
    (tmp_path / "empty").mkdir()
    err = refused(predict_main, [str(folder), str(tmp_path / "empty")], capsys)
    assert f"{tmp_path / 'empty'}: a folder with no image files in it" in err


# ---------------------------------------------------------------- files that common tools write

def test_a_labels_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path: Path, mnist_data: object) -> None:
    folder = digits_folder(tmp_path / "digits", mnist_data)
    truth = [int(label) for label in mnist_data.test_labels[:3]]
    (folder / "labels.csv").write_bytes("\ufefffile,label\r\n".encode("utf-8") + "".join(
        f"d{index},{label}\r\n".replace(f"d{index}", f"d{index}.png") for index, label in enumerate(truth)).encode())
    assert read_labels(folder / "labels.csv") == {f"d{index}.png": label for index, label in enumerate(truth)}


def test_yaml_merge_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("train: &quick\n  limit: 3000\n  rotate: 5.0\nsearch_space:\n  lr: {loguniform: [1.0e-4, 1.0e-2]}\n"
                    "  dropout: &drop {uniform: [0.0, 0.6]}\n"
                    "max_epochs: 4\nnum_samples: 3\n")
    merged = tmp_path / "m.yaml"
    merged.write_text("base: &base\n  limit: 3000\n  rotate: 5.0\ntrain:\n  <<: *base\n  rotate: 2.0\n")
    values = load_experiment_file(merged)
    assert values["train"] == {"limit": 3000, "rotate": 2.0}  # merged, and the key written here wins
    doubled = tmp_path / "d.yaml"
    doubled.write_text("train:\n  rotate: 1.0\n  rotate: 2.0\n")
    with pytest.raises(UserError, match="key 'rotate' given twice"):
        load_experiment_file(doubled)


def test_export_onto_a_folder_is_refused_before_the_work(tiny_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "out").mkdir()
    err = refused(export_main, [str(tiny_run / "best.pt"), "--format", "onnx", "--out", str(tmp_path / "out")], capsys)
    assert f"{tmp_path / 'out'}: a folder; --out names the file to write" in err and ".checking" not in err


# ---------------------------------------------------------------- values read back from a search's own files

def test_an_experiment_json_edited_by_hand_is_checked_as_a_new_one(tmp_path: Path) -> None:
    from hpo.experiment import saved_experiment

    experiment = resolve_experiment({}, {}, "default")
    for key, value, message in (("max_epochs", "abc", "max_epochs must be an integer >= 1"),
                                ("search_space", {"lr": {"loguniform": [0, 1]}}, "search_space.lr.loguniform")):
        (tmp_path / "experiment.json").write_text(json.dumps({"experiment": {**experiment, key: value}}))
        with pytest.raises(UserError, match=message) as error:
            saved_experiment(tmp_path)
        assert str(tmp_path / "experiment.json") in str(error.value)


def test_a_trials_table_edited_by_hand_names_the_file_and_the_trial() -> None:
    import pandas as pd

    from hpo.retrain import winner_config

    experiment = resolve_experiment({"search_space": {"lr": {"loguniform": [1e-4, 1e-2]}}}, {}, "e")
    trials = pd.DataFrame({"trial": [1, 2], "lr": [2e-4, -5.0], "best_val_acc": [0.9, 0.95], "last_val_acc": [0.9, 0.95],
                           "status": ["completed", "completed"], "best_epoch": [1, 1]})
    with pytest.raises(UserError, match=r"trials.csv, trial 2: lr must be > 0, got -5.0"):
        winner_config(experiment, trials, "best")


@pytest.mark.parametrize("change, message", [
    ({"history": "lots"}, "its history is not a list"), ({"epoch": 7}, "its epoch 7 does not match its history"),
    ({"optimizer": [1, 2]}, "its optimizer state is not a mapping"),
    ({"rng": {"torch": "seed"}}, "its rng state is not torch's"),
])
def test_a_checkpoint_to_resume_from_is_checked_beyond_its_weights(tiny_run: Path, tmp_path: Path, change: dict,
                                                                   message: str, capsys: pytest.CaptureFixture) -> None:
    from mnist.train import main as train_main

    path = tmp_path / "last.pt"
    save_checkpoint({**load_checkpoint(tiny_run / "last.pt", for_resume=True), **change}, path)
    err = refused(train_main, ["--resume", str(path), "-e", "5"], capsys)
    assert f"{path}: {message}" in err
