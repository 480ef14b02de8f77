"""Shared fixtures: the bundled data loaded once, small folders of user data, a tiny trained run."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist.data import BUNDLED_DIR, MnistData, load_mnist

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A search as small as it can be and still real: 3 trials, 2 epochs, 2,000 images.
SMOKE_FLAGS = ["--experiment", str(ROOT / "experiments" / "cpu-quick.yaml"), "--num-samples", "3",
               "--max-epochs", "2", "--limit", "2000", "--max-concurrent", "2"]
# Small, fast, still real: the first images of the bundled MNIST.
TINY_CONFIG = {"limit": 1000, "epochs": 1, "batch_size": 64, "lr": 1e-3, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="session")
def mnist_data() -> MnistData:
    return load_mnist()


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray, header: bool) -> None:
    rows = np.column_stack([labels.astype(np.int64), images.reshape(len(images), -1).astype(np.int64)])
    with open(path, "w") as file:
        if header:
            file.write("label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)) + "\n")
        np.savetxt(file, rows, fmt="%d", delimiter=",")


@pytest.fixture
def csv_folder(tmp_path: Path, mnist_data: MnistData) -> Path:
    """The tutorial's Kaggle layout, headerless like the tutorial's file: 120 train and 30 test rows."""
    write_csv(tmp_path / "mnist_train.csv", mnist_data.train_images[:120], mnist_data.train_labels[:120], header=False)
    write_csv(tmp_path / "mnist_test.csv", mnist_data.test_images[:30], mnist_data.test_labels[:30], header=False)
    return tmp_path


@pytest.fixture
def idx_copy(tmp_path: Path) -> Path:
    """A user's copy of the four gzipped IDX files with their MD5SUMS, to break one by one."""
    folder = tmp_path / "idx"
    folder.mkdir()
    for path in BUNDLED_DIR.iterdir():
        if path.name != "README.md":
            shutil.copy(path, folder / path.name)
            (folder / path.name).chmod(0o644)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch CLI run on 2,000 images: its folder holds best.pt, last.pt, metrics.csv, ..."""
    from mnist.train import main

    folder = tmp_path_factory.mktemp("tiny_run")
    main(["-e", "2", "--limit", "2000", "-b", "32", "-l", "1e-3", "--threads", "1", "--out", str(folder)])
    return folder


def run_script(script: str, args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run hpo/<script> as a user would, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "hpo" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    storage = tmp_path_factory.mktemp("results")
    result = run_script("search.py", [*SMOKE_FLAGS, "--storage-path", str(storage), "--name", "smoke"])
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "smoke", result




def free_port() -> int:
    """A TCP port nobody listens on now, for a test's own Ray cluster."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_ray_start(process: subprocess.Popen) -> None:
    """End a `ray start --block` started in its own session, and every Ray process it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # Ray's processes are all in this group: end them
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
