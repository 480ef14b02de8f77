"""Helpers the tests share (plain functions and constants; shared data are fixtures in conftest.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
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
