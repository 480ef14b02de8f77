"""Hard cases round 4 (issue #42), secrets and permissions, and two commands at once: Ray's token and session
folder this user's alone; credentials in a URI never printed or saved, and sent to the server; one writer per
folder, however the folder is named."""
from __future__ import annotations

import base64
import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from hpo.best import main as best_main
from hpo.private_cluster import keep_session_private, keep_token_private
from hpo.storage import ExperimentStore
from hpo.summary import write_summary
from hpo.tracking import check_store, resolve_store
from mnist.checkpoint import run_metadata
from mnist.errors import mask_credentials
from mnist.folder_lock import hold_folder
from mnist.train import main as train_main
from tests.helpers import refused, search_tables


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rays_token_and_its_folder_become_this_users_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".ray"
    folder.mkdir(mode=0o755)
    (folder / "auth_token").write_text("secret")
    (folder / "auth_token").chmod(0o644)
    folder.chmod(0o755)
    keep_token_private()
    assert mode(folder) == 0o700 and mode(folder / "auth_token") == 0o600


def test_a_missing_token_folder_is_made_this_users_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    keep_token_private()  # before ray.init: the folder Ray will write its token in
    assert mode(tmp_path / ".ray") == 0o700


def test_a_private_clusters_session_folder_is_made_this_users_and_the_shared_folder_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "ray"
    session = shared / "session_2026-12-07_18-06-01_834502_1"
    (session / "sockets").mkdir(parents=True)
    for folder in (shared, session):
        folder.chmod(0o777)  # as Ray leaves them
    keep_session_private(str(session))
    assert mode(session) == 0o700
    assert mode(shared) & stat.S_ISVTX and mode(shared) & 0o777 == 0o777  # still shared, entries kept by owner


@pytest.mark.parametrize("text, shown", [
    ("--mlflow http://alice:s3cretPW@127.0.0.1:8102/", "--mlflow http://alice:***@127.0.0.1:8102/"),
    ("s3://KEY:SECRET@bucket/dir and https://TOKEN@host/x", "s3://KEY:***@bucket/dir and https://***@host/x"),
    ("sqlite:////tmp/a@b/mlflow.db http://host:8080/p@x", "sqlite:////tmp/a@b/mlflow.db http://host:8080/p@x"),
])
def test_credentials_in_a_uri_are_masked(text: str, shown: str) -> None:
    assert mask_credentials(text) == shown


def test_argv_saved_with_a_run_holds_no_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["hpo/search.py", "--mlflow", "http://alice:s3cretPW@127.0.0.1:8102/"])
    assert "s3cretPW" not in json.dumps(run_metadata())
    experiment, trials, history = search_tables([0.9, 0.95])
    write_summary(tmp_path, trials, history, experiment, {"cpu": 1, "gpu": 0}, sys.argv)
    assert "s3cretPW" not in (tmp_path / "report.md").read_text()


class MlflowLike(BaseHTTPRequestHandler):
    """Answers MLflow's experiment search when given alice's credentials, 401 otherwise; remembers what it got."""
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        MlflowLike.seen.append(self.headers.get("Authorization"))
        good = "Basic " + base64.b64encode(b"alice:s3cretPW").decode()
        body, code = (b'{"experiments": []}', 200) if self.headers.get("Authorization") == good else (b"{}", 500)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mlflow_like() -> int:
    server = HTTPServer(("127.0.0.1", 0), MlflowLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    MlflowLike.seen = []
    yield server.server_address[1]
    server.shutdown()


def test_a_uri_with_credentials_reaches_its_server_and_the_saved_uri_has_none(
        mlflow_like: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    uri = resolve_store(f"http://alice:s3cretPW@127.0.0.1:{mlflow_like}/")
    assert uri == f"http://127.0.0.1:{mlflow_like}/"  # what mlflow.json, the runs and Tune's state keep
    check_store(uri)  # the server answered, given the credentials (else it answers 500: refused)
    assert MlflowLike.seen and MlflowLike.seen[-1].startswith("Basic ")
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"  # MLflow's client sends them from there


def test_a_refused_uri_with_credentials_is_one_line_without_the_password(
        tmp_path: Path, mlflow_like: int, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    err = refused(best_main, ["--search", str(tmp_path / "none"), "--mlflow",
                              f"http://alice:wrongPW@127.0.0.1:{mlflow_like}/"], capsys)
    assert "wrongPW" not in err


def test_two_trainings_into_one_folder_one_is_refused_naming_the_other(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    with hold_folder(out, "mnist.train"):  # the first run's claim (flock: another open file, even in this process)
        err = refused(train_main, ["-e", "1", "--limit", "600", "--threads", "1", "--out", str(out)], capsys)
    assert "in use by mnist.train" in err and not any(out.glob("*"))


def test_a_folder_reached_through_a_symlink_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "symbase").symlink_to(tmp_path / "base")
    with ExperimentStore(str(tmp_path), "base").lock("best.py"):
        with pytest.raises(Exception, match=r"in use by best.py \(pid"):
            with ExperimentStore(str(tmp_path), "symbase").lock("best.py"):
                pass
