"""Hard cases round 4 (issue #42), a hostile environment: a RAY_TMPDIR too long for Ray's sockets, Ray failing to
start, a file-size limit, file names a font cannot draw or that are not UTF-8, and hints that work when pasted."""
from __future__ import annotations

import os
import resource
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpo.cluster import connect
from hpo.private_cluster import MAX_SOCKET_PATH, failed_start
from hpo.search import resume_command
from hpo.storage import ExperimentStore
from mnist.data import MnistData
from mnist.errors import UserError, shell_path
from mnist.reading.predict import main as predict_main
from tests.helpers import ROOT


def test_a_ray_tmpdir_too_long_for_rays_sockets_is_one_line_before_ray_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long = tmp_path / ("d" * max(1, MAX_SOCKET_PATH - len(str(tmp_path))))
    monkeypatch.setenv("RAY_TMPDIR", str(long))
    with pytest.raises(UserError, match=rf"RAY_TMPDIR={long}: too long for Ray's sockets .* at most {MAX_SOCKET_PATH} "
                                        r"bytes.*set RAY_TMPDIR to a shorter folder"):
        connect("local")
    assert not long.exists()


def test_a_failed_start_ends_its_cluster_and_keeps_only_rays_log(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    session = tmp_path / "ray" / f"session_2026-12-07_18-06-01_834502_{os.getpid()}"
    for folder in ("logs", "sockets", "runtime_resources"):
        (session / folder).mkdir(parents=True)
    (session / "logs" / "gcs_server.err").write_text("File too large\n")
    (tmp_path / "ray" / "session_latest").symlink_to(session)
    error = failed_start(RuntimeError("Failed to start the GCS server\nmore lines of Ray's"))
    message = str(error)
    assert "Ray could not start a private cluster" in message and "Failed to start the GCS server" in message
    assert str(session / "logs") in message and "\n" not in message
    assert sorted(p.name for p in session.iterdir()) == ["logs"]
    assert not (tmp_path / "ray" / "session_latest").exists()


def limited(bytes_: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (bytes_, bytes_))


@pytest.mark.slow
def test_a_file_size_limit_is_named_as_such_not_as_a_full_disk(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "mnist.train", "-e", "1", "--limit", "600", "-b", "64",
                             "--threads", "1", "--out", str(run)], capture_output=True, text=True, cwd=ROOT,
                            preexec_fn=limited(200_000), timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "file-size limit of this process (200000 bytes, ulimit -f)" in result.stderr
    assert "no space left" not in result.stderr and str(run) in result.stderr
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_the_sheet_draws_names_that_are_not_utf8_or_that_the_font_lacks(
        tmp_path: Path, tiny_run: Path, mnist_data: MnistData) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    names = [b"caf\xe9_\xff.png", "数字_७.png".encode()]
    for name, image in zip(names, mnist_data.test_images[:2]):
        Image.fromarray(255 - np.asarray(image, dtype=np.uint8)).resize((84, 84)).save(os.fsdecode(bytes(folder) + b"/" + name))
    sheet = tmp_path / "sheet.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as `python -W error`: a glyph the font lacks would be an error
        code = predict_main([str(folder), "--checkpoint", str(tiny_run / "best.pt"), "--sheet", str(sheet)])
    assert code == 0 and sheet.stat().st_size > 0


def test_hints_printed_for_pasting_quote_spaces_and_work_from_this_folder(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "my results"
    (storage / "a search").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    words = shlex.split(resume_command(ExperimentStore(str(storage), "a search"), str(storage)))
    assert words[:2] == ["python", str(ROOT / "hpo" / "search.py")] and Path(words[1]).exists()
    assert words[words.index("--name") + 1] == "a search"
    assert Path(words[words.index("--storage-path") + 1]).resolve() == storage
    monkeypatch.chdir(tmp_path)
    assert shell_path(storage / "a search") == "'my results/a search'"
