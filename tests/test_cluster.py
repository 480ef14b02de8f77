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

from tests.helpers import ROOT, metric_steps, mlflow_store, overlapping_trials, search_runs, stop_ray_start
from tools.browser import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two_nodes")]  # one worker: the file shares its two-node cluster

ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # the test cluster and its driver agree on no auth


def _alive_nodes(address: str) -> list[str]:
    """Ids (12 characters, as trials record them) of the cluster's live nodes."""
    probe = ("import ray; ray.init(address='%s', logging_level='ERROR'); "
             "print(' '.join(n['NodeID'][:12] for n in ray.nodes() if n['Alive']))" % address)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    return result.stdout.strip().splitlines()[-1].split() if result.returncode == 0 and result.stdout.strip() else []


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["ray", "start", "--block", "--num-cpus=1", *args], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def two_nodes() -> tuple[str, subprocess.Popen, subprocess.Popen, str]:
    """(address, head, worker, head node id): two raylets with one CPU each, shared by this file's tests
    (about 20 s to start and stop); the dead-node test, last, kills the worker."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = _start(["--head", f"--port={port}", "--include-dashboard=false"])
    worker = None
    try:
        deadline = time.monotonic() + 120
        while len(_alive_nodes(address)) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        (head_id,) = _alive_nodes(address)
        worker = _start([f"--address={address}"])
        while len(_alive_nodes(address)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(_alive_nodes(address)) == 2, "the two-node cluster did not come up"
        yield address, head, worker, head_id
    finally:
        for process in (worker, head):
            if process is not None:
                stop_ray_start(process)


def _search(smoke_flags: list[str], address: str, storage: Path, name: str, extra: list[str],
            shared: bool = True) -> subprocess.Popen:
    """A search on the two nodes; their storage is shared (both are this machine) and says so unless told not to."""
    return subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), *smoke_flags, "--address", address,
                             "--storage-path", str(storage), "--name", name, *extra,
                             *(["--shared-storage"] if shared else [])],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_local_storage_on_a_multi_node_cluster_is_refused_unless_said_shared(tmp_path: Path, two_nodes: tuple,
                                                                              smoke_flags: list[str]) -> None:
    address, _, _, _ = two_nodes
    search = _search(smoke_flags, address, tmp_path, "local", ["--num-samples", "2"], shared=False)
    _, err = search.communicate(timeout=300)
    assert search.returncode == 2 and err.count("\n") == 1, err[-3000:]
    assert f"the Ray cluster has 2 nodes and --storage-path {tmp_path.resolve()} is a folder on this machine" in err
    assert "--shared-storage" in err and not (tmp_path / "local").exists()


def test_trials_spread_over_both_nodes(tmp_path: Path, two_nodes: tuple, smoke_flags: list[str]) -> None:
    address, _, _, _ = two_nodes
    store = mlflow_store(tmp_path)
    search = _search(smoke_flags, address, tmp_path, "spread", ["--num-samples", "2", "--mlflow", store])
    out, err = search.communicate(timeout=300)
    assert search.returncode == 0, err[-3000:]
    trials = pd.read_csv(tmp_path / "spread" / "trials.csv", dtype={"node_id": str}).set_index("trial")
    history = pd.read_csv(tmp_path / "spread" / "history.csv")
    assert set(trials["node_id"]) <= set(_alive_nodes(address))
    for a, b in overlapping_trials(history):  # one CPU per node: two trials at once are on the two nodes
        assert trials.loc[a, "node_id"] != trials.loc[b, "node_id"]
    # Every trial is in MLflow, nested and complete, whichever node ran it: the driver logs what Tune sends it.
    (parent,), children = search_runs(store)
    assert sorted(int(run.data.tags["trial"]) for run in children[parent.info.run_id]) == [1, 2]
    for run in children[parent.info.run_id]:
        epochs = history.loc[history["trial"] == int(run.data.tags["trial"]), "epoch"]
        assert metric_steps(store, run) == sorted(epochs)


def _latest_results(folder: Path) -> dict[int, dict]:
    """trial number -> its latest reported result."""
    latest = {}
    for result_file in folder.glob("trial_*/result.json"):
        lines = result_file.read_text().splitlines()
        if lines:
            latest[int(result_file.parent.name.split("_")[1])] = json.loads(lines[-1])
    return latest


def test_a_dead_node_costs_only_progress_since_the_last_checkpoint(tmp_path: Path, two_nodes: tuple,
                                                                   smoke_flags: list[str]) -> None:
    address, _, worker, head_id = two_nodes
    folder = tmp_path / "nodekill"
    # No early stopping (grace = budget): both trials run 6 epochs, one on each node.
    search = _search(smoke_flags, address, tmp_path, "nodekill", ["--num-samples", "2", "--max-epochs", "6", "--grace-period", "6",
                                                     "--limit", "8000"])
    deadline = time.monotonic() + 180
    latest: dict[int, dict] = {}
    while len({r["node_id"] for r in latest.values()}) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        latest = _latest_results(folder)
    assert len({r["node_id"] for r in latest.values()}) == 2, latest  # both trials have reported an epoch
    os.killpg(worker.pid, signal.SIGKILL)  # the worker node dies with its raylet and its trial
    out, err = search.communicate(timeout=420)
    assert search.returncode == 0, err[-3000:]
    trials = pd.read_csv(folder / "trials.csv", dtype={"node_id": str})
    assert list(trials["status"]) == ["completed", "completed"]
    killed = [number for number, r in latest.items() if r["node_id"] != head_id and not r.get("done")]
    assert killed, "the worker's trial finished before its node was killed"
    assert (trials.set_index("trial").loc[killed, "node_id"] == head_id).all()  # it ended on the surviving head
    for trial in trials.itertuples():
        (trial_folder,) = folder.glob(f"trial_{trial.trial:03d}_*")
        epochs = pd.read_csv(trial_folder / "progress.csv")["epoch"].tolist()
        # resumed from its last checkpoint: no epoch trained twice, none skipped
        assert sorted(set(epochs)) == list(range(1, trial.epochs + 1)), epochs
