"""Helpers the tests share (plain functions and constants; shared data are fixtures in conftest.py)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from mlflow.tracking import MlflowClient  # the tests read what hpo.tracking wrote as a user would

from hpo.experiment import resolve_experiment
from mnist.errors import run_cli
from mnist.reading.corruptions import set_writers
from mnist.reading.drawings import drawing
from mnist.reading.handwriting import scan_photo, write_labels
from mnist.reading.notebook import notebook_photo
from mnist.reading.sets import SETS_VERSION, VERSION_FILE

ROOT = Path(__file__).resolve().parent.parent
# pytest-xdist groups (pyproject runs the suite on 2 workers, --dist loadgroup): the tests of a group run on one
# worker, so the expensive fixture they share is built once. Every test that uses the smoke search carries
# SMOKE_GROUP (conftest.py refuses one that does not); the browser tests share a browser, a model and a server.
SMOKE_GROUP = pytest.mark.xdist_group("smoke_search")
BROWSER_GROUP = pytest.mark.xdist_group("browser")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray, header: bool) -> None:
    rows = np.column_stack([labels.astype(np.int64), images.reshape(len(images), -1).astype(np.int64)])
    with open(path, "w") as file:
        if header:
            file.write("label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29)) + "\n")
        np.savetxt(file, rows, fmt="%d", delimiter=",")


def run_script(script: str, args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run hpo/<script> as a user would, in a fresh process."""
    return subprocess.run([sys.executable, str(ROOT / "hpo" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def run_module(module: str, args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module>` from the repository root as a user would (benchmarks, tools), in a fresh process."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})


def mlflow_store(folder: Path) -> str:
    """A test's own MLflow store: a SQLite file in `folder` (sqlite:/// + an absolute path)."""
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


def search_runs(store: str) -> tuple[list, dict[str, list]]:
    """The runs of an MLflow store read back with MlflowClient: (top-level runs, {parent run id: its children})."""
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    children: dict[str, list] = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            children.setdefault(run.data.tags["mlflow.parentRunId"], []).append(run)
    return [run for run in runs if "mlflow.parentRunId" not in run.data.tags], children


def metric_steps(store: str, run: object, key: str = "val_acc") -> list[int]:
    return sorted(m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, key))


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Until `condition()` holds, checked every half second; a TimeoutError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds} s for {what}")
        time.sleep(0.5)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, seconds: float = 90) -> None:
    """Until something listens on 127.0.0.1:`port` (a `ray start --head` or a server coming up)."""
    wait_until(lambda: port_open(port), seconds, f"something to listen on port {port}")


def stop_ray_start(process: subprocess.Popen) -> None:
    """End a `ray start --block` started in its own session, and every Ray process it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:  # `ray start --block` takes over 10 s on SIGTERM; its processes are all in
        # this group: end them
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def vertical_bar(length: float = 180, steps: int = 12) -> list[tuple[float, float]]:
    return [(0, -length / 2 + length * i / steps) for i in range(steps + 1)]


def ring(width: float = 120, height: float = 180, steps: int = 36) -> list[tuple[float, float]]:
    angles = np.linspace(0, 2 * np.pi, steps + 1) + 0.3  # a little past the start: the ring closes
    return [(width / 2 * np.sin(a), -height / 2 * np.cos(a)) for a in np.append(angles, angles[1:3])]


def refused(main, argv: list[str], capsys) -> str:
    """The one line a CLI printed when it refused `argv` with exit code 2 (run in this process)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    return err


def refused_process(result: subprocess.CompletedProcess) -> str:
    """The one line a CLI run as a process printed when it refused with exit code 2, without a traceback."""
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    return result.stderr


@contextlib.contextmanager
def read_only_folder(path: Path):
    """`path` (made if missing) made unwritable, for root too (chattr +i; chmod 555 for anyone else), and
    writable again after; skips the test where the file system allows neither."""
    path.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root and shutil.which("chattr"):  # without chattr the probe below finds it writable: skipped
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    else:
        path.chmod(0o555)
    try:
        probe = path / ".probe"
        try:
            probe.touch()
        except OSError:
            yield path
        else:
            probe.unlink()
            pytest.skip(f"cannot make {path} read-only here (chattr/chmod had no effect)")
    finally:
        if as_root and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        else:
            path.chmod(0o755)


def overlapping_trials(history: pd.DataFrame) -> list[tuple[int, int]]:
    """Pairs of trials of a search's history.csv that surely trained at the same time (each trial's span: from
    the start of its first epoch to the end of its last). Tune's timestamps are whole seconds, cut down: a span
    is known to a second, so only pairs overlapping by more than one count. Which trials overlap depends on how
    fast workers start on a busy machine; what holds for every such pair (its own GPU, its own node) is
    checkable."""
    spans = {trial: ((rows["timestamp"] - rows["epoch_time_s"]).min(), rows["timestamp"].max())
             for trial, rows in history.groupby("trial")}
    trials = sorted(spans)
    return [(a, b) for i, a in enumerate(trials) for b in trials[i + 1:]
            if spans[a][0] + 1 < spans[b][1] and spans[b][0] + 1 < spans[a][1]]


def small_sets(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """Scans, notebook and drawings sets of a few images in each half, MNIST as PNG files and the corruptions of ten
    (the canvas set is the committed one): the sets folder, the scans' report half (20 scans and a blank page, labelled 3) and those 20 scans' labels."""
    sets, digits, rng = tmp_path / "sets", load_digits(), np.random.default_rng(0)
    for offset, split in ((0, "tune"), (20, "report")):
        scans, notebook = sets / "scans" / split, sets / "notebook" / split
        scans.mkdir(parents=True)
        notebook.mkdir(parents=True)
        write_labels(scans, {**{f"s{i}.jpg": int(digits.target[offset + i]) for i in range(20)}, "blank.png": 3})
        for i in range(20):
            scan_photo(digits.images[offset + i], rng).save(scans / f"s{i}.jpg", quality=95)
        Image.new("L", (100, 100), 255).save(scans / "blank.png")  # no digit: refused, a miss
        write_labels(notebook, {f"n{i}.jpg": i for i in range(10)})
        for i in range(10):
            notebook_photo(i, rng)[0].save(notebook / f"n{i}.jpg")
        drawings = sets / "drawings" / split
        drawings.mkdir(parents=True)
        write_labels(drawings, {f"d{i}.png": i for i in range(10)})
        for i in range(10):
            drawing(i, rng).save(drawings / f"d{i}.png")
    for name, write in set_writers(per_digit=1).items():  # MNIST as PNG files and the corruptions: one of each digit
        write(sets / name)
        (sets / name / VERSION_FILE).write_text(f"{SETS_VERSION}\n")
    return sets, sets / "scans" / "report", digits.target[20:40]


def search_tables(scores: list[float]) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """An experiment with the default space and a search's tables in which trial k scored scores[k]."""
    experiment = resolve_experiment({"max_epochs": 2}, {}, "test")
    rng = np.random.default_rng(0)
    points = [experiment["baseline"]] + [
        {**experiment["baseline"], "lr": float(rng.uniform(1e-4, 1e-2)), "dropout": float(rng.uniform(0, 0.7))}
        for _ in scores[1:]]
    trials = pd.DataFrame([{
        "trial": k + 1, "trial_id": f"id{k}", **point, "status": "completed", "epochs": 2, "best_val_acc": score,
        "best_epoch": 2, "last_val_acc": score, "time_s": 3.0, "device": "cpu", "gpu_ids": "", "node": "",
        "node_ip": "", "node_id": "", "baseline": k == 0, "checkpoint": "", "path": "", "config": point}
        for k, (point, score) in enumerate(zip(points, scores))])
    history = pd.DataFrame([{"trial": k + 1, "epoch": epoch, "train_loss": 2.3, "train_acc": 0.1, "val_loss": 2.3,
                             "val_acc": score, "lr": 1e-3, "epoch_time_s": 1.5, "timestamp": 100 * k + epoch}
                            for k, score in enumerate(scores) for epoch in (1, 2)])
    return experiment, trials, history
