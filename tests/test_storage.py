"""Experiments on a storage URI: trials checkpoint straight to it, the driver mirrors its files there.

The S3 test runs the whole search against a real S3 API (moto's server on localhost), as a
user with a bucket would: `--storage-path s3://bucket/dir`.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest

from hpo.storage import ExperimentStore, join_uri, split_experiment
from tests.helpers import run_script
from tools.browser import free_port


def test_uri_joins_and_splits_keep_the_query() -> None:
    assert join_uri("s3://bucket/dir?region=eu-west-1", "exp") == "s3://bucket/dir/exp?region=eu-west-1"
    assert split_experiment("s3://bucket/dir/exp?region=eu-west-1") == ("s3://bucket/dir?region=eu-west-1", "exp")
    assert split_experiment("results/exp") == ("results", "exp")


def test_file_uri_store_pushes_the_mirror_and_pulls_it_back(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    store = ExperimentStore(f"file://{remote}", "exp", local_root=tmp_path / "mirror")
    assert store.remote and store.local == tmp_path / "mirror" / "exp" and not store.exists()
    (store.local / "tensorboard").mkdir(parents=True)
    (store.local / "trials.csv").write_text("trial\n1\n")
    (store.local / "tensorboard" / "events").write_bytes(b"x" * 10)
    store.push()
    assert (remote / "exp" / "trials.csv").read_text() == "trial\n1\n"
    assert (remote / "exp" / "tensorboard" / "events").stat().st_size == 10
    assert store.disk_usage() == 2 * (8 + 10)  # the storage and the mirror
    elsewhere = ExperimentStore(f"file://{remote}", "exp", local_root=tmp_path / "other")
    elsewhere.pull()
    assert (elsewhere.local / "trials.csv").read_text() == "trial\n1\n"
    assert not (elsewhere.local / "optuna.db").exists()  # not on the storage: nothing pulled, no error


@pytest.fixture
def s3_bucket(tmp_path: Path):
    """A local S3 server (moto) with an empty bucket; yields the environment that points AWS clients at it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    s3 = pyarrow.fs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test",
                                 region="us-east-1", allow_bucket_creation=True)
    for _ in range(100):
        try:
            s3.create_dir("searches")
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("moto's S3 server did not start")
    yield s3, env
    server.kill()
    server.wait()


def bucket_files(s3: pyarrow.fs.S3FileSystem, prefix: str) -> list[str]:
    infos = s3.get_file_info(pyarrow.fs.FileSelector(prefix, recursive=True))
    return sorted(info.path[len(prefix) + 1:] for info in infos if info.type == pyarrow.fs.FileType.File)


@pytest.mark.slow
def test_search_resume_and_best_on_an_s3_storage(tmp_path: Path, s3_bucket: tuple, smoke_flags: list[str]) -> None:
    s3, env = s3_bucket
    storage, mirror = "s3://searches/mnist", tmp_path / "mirror"
    flags = ["--storage-path", storage, "--local-dir", str(mirror), "--name", "s3smoke"]
    result = run_script("search.py", [*smoke_flags, *flags], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    files = bucket_files(s3, "searches/mnist/s3smoke")
    for name in ("experiment.json", "optuna.db", "trials.csv", "best.json", "report.md", "importance.png"):
        assert name in files
    assert any(name.startswith("tensorboard/") for name in files)
    trials = pd.read_csv(mirror / "s3smoke" / "trials.csv")
    with s3.open_input_stream("searches/mnist/s3smoke/trials.csv") as stream:
        assert pd.read_csv(stream).equals(trials)
    # Checkpoints went to the bucket from the trials, not to the driver's mirror; stopped trials keep their best.
    for trial in trials.itertuples():
        checkpoints = {name.rsplit("/", 1)[0] for name in files if name.startswith(f"trial_{trial.trial:03d}_")
                       and "/checkpoint_" in name}
        assert f"{trial.checkpoint}" in checkpoints
        assert f"{trial.checkpoint}/checkpoint.pt" in files
        if trial.status == "stopped early":
            assert checkpoints == {trial.checkpoint}
    assert not list(mirror.glob("s3smoke/trial_*"))

    resumed = run_script("search.py", ["--resume", *flags], env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pd.read_csv(mirror / "s3smoke" / "trials.csv")[["trial", "epochs"]].equals(trials[["trial", "epochs"]])

    # best.py from the URI alone, with a mirror that does not exist yet: it pulls what it needs. On 2
    # data-parallel workers, so rank 0 writes its Ray Train checkpoints to the bucket too.
    best = run_script("best.py", ["--search", f"{storage}/s3smoke", "--epochs", "1", "--no-baseline", "--seeds", "1",
                                  "--calibration", "validation", "--workers", "2", "--local-dir", str(tmp_path / "elsewhere")], env=env)
    assert best.returncode == 0, best.stderr[-3000:]
    files = bucket_files(s3, "searches/mnist/s3smoke")
    assert "best/model.pt" in files and "best/metrics.json" in files
    assert any(name.startswith("best/ray_train_seed0/") and name.endswith("/checkpoint.pt") for name in files)


@pytest.mark.slow
def test_unreachable_storage_is_one_clear_line(tmp_path: Path, smoke_flags: list[str]) -> None:
    result = run_script("search.py", [*smoke_flags, "--storage-path", "nosuchscheme://x/y", "--name", "n",
                                      "--local-dir", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: nosuchscheme://x/y") and "Traceback" not in result.stderr
