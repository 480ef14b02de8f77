"""A real two-node Ray cluster on this machine (a head and a worker, `ray start`): trials spread
over both nodes, and a node that dies mid-trial costs only that trial's progress since its
last checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, SMOKE_FLAGS, free_port

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # the test cluster and its driver agree on no auth


def _alive_nodes(address: str) -> int:
    probe = ("import ray; ray.init(address='%s', logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    return int(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else 0


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["ray", "start", "--block", "--num-cpus=1", *args], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def two_nodes() -> tuple[str, subprocess.Popen, subprocess.Popen]:
    """(address, head, worker): two raylets with one CPU each."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _start(["--head", f"--port={port}", "--include-dashboard=false"])
    worker = None
    try:
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        worker = _start([f"--address={address}"])
        while _alive_nodes(address) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert _alive_nodes(address) == 2, "the two-node cluster did not come up"
        yield address, head, worker
    finally:
        for process in (worker, head):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)


def _search(address: str, storage: Path, name: str, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), *SMOKE_FLAGS, "--address", address,
                             "--storage-path", str(storage), "--name", name, *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_trials_spread_over_both_nodes(tmp_path: Path, two_nodes: tuple) -> None:
    address, _, _ = two_nodes
    search = _search(address, tmp_path, "spread", ["--num-samples", "2"])
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err[-3000:]
    trials = pd.read_csv(tmp_path / "spread" / "trials.csv")
    assert trials["node_id"].nunique() == 2  # two trials at once, one CPU per node: one on each


def _node_of_running_trials(folder: Path) -> dict[str, str]:
    """trial folder -> node_id of its latest reported epoch."""
    nodes = {}
    for result_file in folder.glob("trial_*/result.json"):
        lines = result_file.read_text().splitlines()
        if lines:
            nodes[result_file.parent.name] = json.loads(lines[-1])["node_id"]
    return nodes


def test_a_dead_node_costs_only_progress_since_the_last_checkpoint(tmp_path: Path, two_nodes: tuple) -> None:
    address, head, worker = two_nodes
    folder = tmp_path / "nodekill"
    search = _search(address, tmp_path, "nodekill", ["--num-samples", "2", "--max-epochs", "4", "--limit", "4000"])
    deadline = time.monotonic() + 180
    nodes = {}
    while len(set(nodes.values())) < 2 and time.monotonic() < deadline:  # both trials have reported an epoch
        time.sleep(0.5)
        nodes = _node_of_running_trials(folder)
    assert len(set(nodes.values())) == 2, nodes
    os.killpg(worker.pid, signal.SIGKILL)  # the worker node dies with its raylet and its trial
    out, err = search.communicate(timeout=420)
    assert search.returncode == 0, err[-3000:]
    trials = pd.read_csv(folder / "trials.csv")
    assert set(trials["status"]) <= {"completed", "stopped early"}
    assert trials["node_id"].nunique() == 1  # every trial ended on the surviving head node
    for trial in trials.itertuples():
        (trial_folder,) = folder.glob(f"trial_{trial.trial:03d}_*")
        epochs = pd.read_csv(trial_folder / "progress.csv")["epoch"].tolist()
        # resumed from its last checkpoint: no epoch trained twice, none skipped
        assert sorted(set(epochs)) == list(range(1, trial.epochs + 1)), epochs
