"""Hard cases a user hits: each reproduced as written in the issue, each one line and a non-zero
exit, nothing lost or left behind."""
from __future__ import annotations

import json
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest
import ray
import torch
from PIL import Image

from hpo.experiment import resolve_experiment
from hpo.ray_versions import TOKEN_AUTH_DEFAULT_SINCE, minor
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.errors import UserError, run_cli
from mnist.reading.predict import main as predict_main
from mnist.train import main as train_main
from tests.helpers import refused, refused_process, run_script


@pytest.mark.parametrize("flags, key", [
    (["--limit", "3000"], "limit"), (["--head", "tutorial"], "head"), (["-b", "64"], "batch_size"),
    (["--dropout", "0.1"], "dropout"), (["--rotate", "10"], "rotate"),
])
def test_resume_refuses_flags_that_change_what_was_trained(tmp_path: Path, tiny_run: Path, flags: list[str],
                                                           key: str, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "last.pt").read_bytes()
    err = refused(train_main, ["--resume", str(run / "last.pt"), "-e", "3", *flags], capsys)
    assert f"was trained with {key}=" in err and "start a new run" in err
    assert (run / "last.pt").read_bytes() == before  # nothing trained, nothing overwritten


@pytest.mark.slow
def test_resume_may_change_the_thread_count(tmp_path: Path, tiny_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    train_main(["--resume", str(run / "last.pt"), "-e", "3", "--threads", "2"])
    assert load_checkpoint(run / "last.pt", for_resume=True)["epoch"] == 3


def test_a_run_refused_for_bad_data_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist_train.csv").write_text("not,a,digit\n")
    err = refused(train_main, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")], capsys)
    assert "mnist" in err and not (tmp_path / "run").exists()


def test_a_full_disk_is_one_line_and_the_old_checkpoint_stays_whole(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, path)
    before = path.read_bytes()

    def full_disk(state: object, file: str) -> None:
        Path(file).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 7808 vs 7696")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match=f"no space left on the device \\(writing last.pt in {tmp_path}\\)"):
        save_checkpoint({"model": {}, "config": {}}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with one tiny (wrong) data chunk: enough for Image.open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_one_line_and_the_next_files_are_read(
        tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    bomb, good = tmp_path / "a_bomb.png", tmp_path / "b_seven.png"
    bomb.write_bytes(png_claiming(20000, 20000))  # 400 megapixels
    image = Image.new("L", (200, 200), 255)
    image.paste(0, (60, 40, 140, 60))
    image.paste(0, (120, 40, 140, 170))
    image.save(good)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(predict_main, [str(bomb), str(good), "--checkpoint", str(tiny_run / "best.pt")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert f"{bomb}: too large to read safely" in captured.err and "Traceback" not in captured.err
    assert f"{good}: " in captured.out


def test_a_huge_image_is_scaled_down_on_opening(tmp_path: Path) -> None:
    from mnist.reading.predict import MAX_SIDE, load_image

    path = tmp_path / "huge.png"
    image = Image.new("L", (8000, 8000), 255)
    image.paste(0, (3800, 2000, 4200, 6000))  # a vertical bar: a 1
    image.save(path)
    started = time.perf_counter()
    original, digit = load_image(path)
    assert max(original.size) == MAX_SIDE and digit.shape == (28, 28)
    assert time.perf_counter() - started < 20  # a bound, not a benchmark: unbounded work took minutes


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line_within_30_s_and_leaves_nothing(
        tmp_path: Path, smoke_flags: list[str]) -> None:
    started = time.monotonic()
    result = run_script("search.py", [*smoke_flags, "--address", "127.0.0.1:1", "--storage-path", str(tmp_path),
                                      "--name", "nowhere"], timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\0" + b"\0" * 90, b"not a database at all"])
def test_a_broken_optuna_db_on_resume_is_one_line(tmp_path: Path, content: bytes) -> None:
    from hpo.searcher import check_study

    (tmp_path / "optuna.db").write_bytes(content)
    with pytest.raises(UserError, match="optuna.db: "):
        check_study(tmp_path, "search")


@pytest.mark.parametrize("trials_csv", ["", "trial,status\n1,completed\n", "\0\1\2garbage"])
@pytest.mark.slow
def test_a_broken_trials_csv_is_one_line_for_best_py(tmp_path: Path, trials_csv: str) -> None:
    folder = tmp_path / "search"
    folder.mkdir()
    experiment = resolve_experiment({"search_space": {"lr": {"loguniform": [1e-5, 0.01]}}}, {}, "test")
    (folder / "experiment.json").write_text(json.dumps({"experiment": experiment}))
    (folder / "trials.csv").write_text(trials_csv)
    result = run_script("best.py", ["--search", str(folder)], timeout=120)
    refused_process(result)
    assert "trials.csv" in result.stderr and "Traceback" not in result.stderr


PRIVATE_CLUSTER = """
import sys, time
from hpo.cluster import connect
import ray
connect(None)
print(ray.get_runtime_context().gcs_address, flush=True)
time.sleep(120)
"""
CLIENT = """
import sys, ray
try:
    ray.init(address=sys.argv[1], include_dashboard=False, logging_level="ERROR")
except Exception as error:
    print("refused:", type(error).__name__)
    sys.exit(3)
print("joined", ray.cluster_resources())
"""


@pytest.mark.slow
@pytest.mark.skipif(minor(ray.__version__) < TOKEN_AUTH_DEFAULT_SINCE, reason="token auth on by default since 2.59")
def test_a_client_without_the_token_cannot_join_a_private_search_cluster(tmp_path: Path) -> None:
    """The private cluster a search starts (RAY_AUTH_MODE unset: Ray's token authentication) refuses a client
    that has no token."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT, stop_ray_start

    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_MODE"}
    server = subprocess.Popen([sys.executable, "-c", PRIVATE_CLUSTER], env={**env, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        address = server.stdout.readline().strip()
        assert ":" in address, "the private cluster did not start"
        stranger = subprocess.run([sys.executable, "-c", CLIENT, address], env={**env, "RAY_AUTH_MODE": "disabled"},
                                  capture_output=True, text=True, timeout=120)
        assert stranger.returncode == 3 and "refused" in stranger.stdout, stranger.stdout + stranger.stderr[-2000:]
    finally:
        stop_ray_start(server)  # the driver and every Ray process it started: one session


@pytest.mark.slow
def test_a_search_that_would_start_an_open_private_cluster_is_refused_before_anything(tmp_path: Path) -> None:
    result = run_script("search.py", ["--num-samples", "1", "--max-epochs", "1", "--limit", "500",
                                      "--storage-path", str(tmp_path), "--name", "open"],
                        env={"RAY_AUTH_MODE": "disabled"}, timeout=120)
    assert "without authentication" in refused_process(result) or "has no authentication" in result.stderr
    assert not (tmp_path / "open").exists()


def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def save_until_full(state: object, file: str) -> None:
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 wrote last.pt and best.pt; epoch 2 finds the disk full
            Path(file).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 7808 vs 7696")
        real_save(state, file)

    monkeypatch.setattr(torch, "save", save_until_full)
    run = tmp_path / "run"
    err = refused(train_main, ["-e", "2", "--limit", "600", "-b", "64", "--threads", "1", "--out", str(run)], capsys)
    assert "no space left on the device (writing " in err and str(run) in err
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(run / "last.pt", for_resume=True)["epoch"] == 1  # whole, and resumable


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--experiment", "experiments/cpu-quick.yaml", "--grace-period", "1"]])
def test_a_one_epoch_search_runs_with_the_default_space(tmp_path: Path, extra: list[str]) -> None:
    from tests.helpers import ROOT

    extra = [str(ROOT / flag) if flag.endswith(".yaml") else flag for flag in extra]
    result = run_script("search.py", ["--max-epochs", "1", "--num-samples", "2", "--limit", "1000",
                                      "--storage-path", str(tmp_path), "--name", "short", *extra])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trials 2/2 done" in result.stdout


def test_best_py_still_takes_its_old_experiment_flag_and_says_its_new_name(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    from hpo.best import main as best_main
    from mnist.errors import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(best_main, ["--experiment", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "best.py's --experiment is now --search" in err
    assert f"{tmp_path / 'none'}: no such experiment folder" in err  # the old flag still names the folder read


def test_an_interruption_while_the_results_are_written_says_how_to_continue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """Ctrl-C or a SIGTERM after Tune has finished, while trials.csv, best.json and the report are written: Tune's
    state is whole, so the search says how to continue (--resume writes them), exit 130, no traceback."""
    import argparse

    import hpo.search as search_module
    from hpo.storage import ExperimentStore

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(search_module, "run_search", lambda *args, **kwargs: (None, {"cpu": 1.0, "gpu": 0.0}))
    monkeypatch.setattr(search_module, "summarize_search", interrupted)
    store = ExperimentStore(str(tmp_path), "written")
    flags = argparse.Namespace(resume=False, address=None, dashboard=None, wait_for_resources=None,
                               shared_storage=False, storage_path=str(tmp_path))
    assert search_module.search(store, flags, {"num_samples": 3, "max_epochs": 2}, None) == 130
    said = capfd.readouterr().err.strip().splitlines()
    assert said[-1] == ("interrupted, while its results were written; continue with: python hpo/search.py --resume "
                        f"--name written --storage-path {tmp_path}")


def test_a_sigterm_while_ray_init_runs_its_own_handler_is_an_interruption(monkeypatch: pytest.MonkeyPatch) -> None:
    """ray.init puts its own SIGTERM handler in place while it starts (sys.exit(15): the driver ended with exit 15 and
    nothing said); connect turns that into the interruption every other SIGTERM is, and leaves the caller's
    handler in place after it, not Ray's."""
    import os
    import signal
    import sys

    import hpo.cluster as cluster

    def init_as_ray_does(**kwargs: object) -> None:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
        if terminated:
            os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("a cluster of another Ray version")  # the next step, had no signal come

    def callers_handler(signum: int, frame: object) -> None:
        raise AssertionError("not reached")

    monkeypatch.setattr(cluster.ray, "init", init_as_ray_does)
    monkeypatch.setattr(cluster, "check_private_cluster_closed", lambda: None)
    previous = signal.signal(signal.SIGTERM, callers_handler)
    try:
        for terminated in (True, False):
            with pytest.raises(KeyboardInterrupt if terminated else (RuntimeError, UserError)):
                cluster.connect(None)
            assert signal.getsignal(signal.SIGTERM) is callers_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
