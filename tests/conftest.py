"""Shared fixtures: the bundled data loaded once, small folders of user data, a tiny trained run."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mnist.data import BUNDLED_DIR, MnistData, load_mnist
from tests.helpers import ROOT, mlflow_store, run_script, small_sets, write_csv

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share the two cores: one thread each, not four
    torch.set_num_threads(1)

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first (so that no long one is left alone at the end on two workers), and every test that uses
    the smoke search in its xdist group (else a second worker would build it again: minutes)."""
    for item in items:
        groups = [mark.args[0] for mark in item.iter_markers("xdist_group")]
        if "smoke_search" in item.fixturenames and groups != ["smoke_search"]:
            raise pytest.UsageError(f"{item.nodeid}: uses smoke_search; mark it @SMOKE_GROUP (tests/helpers.py)")
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: each file's order kept


@pytest.fixture(scope="session")
def smoke_flags() -> list[str]:
    """A search as small as it can be and still real: 3 trials, 2 epochs, 2,000 images."""
    return ["--experiment", str(ROOT / "experiments" / "cpu-quick.yaml"), "--num-samples", "3",
            "--max-epochs", "2", "--limit", "2000", "--max-concurrent", "2"]


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """Small, fast, still real: the first images of the bundled MNIST."""
    return {"limit": 1000, "epochs": 1, "batch_size": 64, "lr": 1e-3, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="session")
def mnist_data() -> MnistData:
    return load_mnist()


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


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory: pytest.TempPathFactory,
                 smoke_flags: list[str]) -> tuple[Path, subprocess.CompletedProcess]:
    """The smoke search, tracked in MLflow (the store beside it: mlflow_store(storage))."""
    storage = tmp_path_factory.mktemp("results")
    # One trial at a time: which trials ASHA stops does not depend on which reports first (test_search).
    result = run_script("search.py", [*smoke_flags, "--max-concurrent", "1", "--storage-path", str(storage), "--name", "smoke",
                                      "--mlflow", mlflow_store(storage)])
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "smoke", result


@pytest.fixture(scope="session")
def smoke_best(smoke_search: tuple[Path, subprocess.CompletedProcess],
               tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess:
    """best.py on the smoke search, logged to the search's MLflow store (the winner registered), each model
    calibrated on small real sets too (tests.helpers.small_sets)."""
    folder, _ = smoke_search
    sets, _, _ = small_sets(tmp_path_factory.mktemp("real_sets"))
    result = run_script("best.py", ["--search", str(folder), "--epochs", "1", "--seeds", "2", "--mlflow",
                                    "--sets", str(sets)])
    assert result.returncode == 0, result.stderr[-3000:]
    return result
