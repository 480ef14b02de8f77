"""The Ray cluster a search runs on: joining one (or starting a private one), and what a trial may ask of it."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hpo.env_vars import switch
from hpo.private_cluster import check_socket_room, failed_start, keep_session_private, keep_token_private
from hpo.ray_sessions import end_leftover_session, exit_ending_session, processes_of
from hpo.ray_versions import check_private_cluster_closed, check_versions, version_mismatch
from mnist.errors import UserError

# Concurrency beyond this makes TPE propose mostly blind (constant liar helps, but only so much);
# with fractional GPUs the cap grows with the packing (0.25 GPU a trial: 32), as docs/cluster.md says.
MAX_DEFAULT_CONCURRENCY = 8
# For tests on machines without a GPU: "1" lets trials hold GPUs that torch cannot see (a Ray cluster
# started with `ray start --num-gpus 2` on a CPU machine); they then train on the CPU. Unset, such a
# trial is refused: it would hold the GPU and train on one CPU thread.
FAKE_GPUS = "HPO_FAKE_GPUS"
CUDA_HINT = ("install torch's CUDA build there (pip install torch --index-url https://download.pytorch.org/whl/cu126, "
             "or the command pytorch.org gives for its driver)")
# How long a GPU node may take to answer what its torch sees (it starts a worker and imports torch).
GPU_CHECK_TIMEOUT_S = 120


def connect(address: str | None) -> str | None:
    """Join the cluster at `address` (or RAY_ADDRESS); else start a private one on this machine. Returns the
    private cluster's session folder (None for a joined cluster): Ray never removes it, end_private_cluster does.

    A plain ray.init() would silently join any cluster left running by `ray start`. The private cluster's
    processes listen on every interface: it starts only where Ray's authentication keeps other hosts out
    (hpo.ray_versions says where that is, for each Ray version of the range).
    """
    check_versions()
    address = check_address(address)
    check_reachable(address)
    if address == "local":
        check_private_cluster_closed()
        check_socket_room()
    keep_token_private()
    stopped: list[int] = []

    def stopped_while_starting(signum: int, frame: Any) -> None:
        # A SIGTERM to the whole group while Ray starts ends its processes too: nothing to save or resume yet.
        stopped.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stopped_while_starting)
    try:
        context = ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    except SystemExit as exit_request:
        # ray.init puts its own SIGTERM handler in place while it starts: sys.exit(15), nothing said. The same stop.
        if exit_request.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt from None
    except Exception as error:
        if stopped:  # Ray's own error about the processes the signal ended: the signal is the story
            raise KeyboardInterrupt from None
        # A private cluster that fails to start is the machine's doing (a limit, memory, the install): one line.
        one_line = failed_start(error) if address == "local" else init_error(error, address)
        if one_line is None:
            raise
        raise one_line from None
    finally:
        signal.signal(signal.SIGTERM, previous)  # not Ray's, which it leaves in place
    keep_token_private()  # Ray may have just written it
    session = context.address_info.get("session_dir") if address == "local" else None
    keep_session_private(session)
    return session


def init_error(error: Exception, address: str) -> UserError | None:
    """ray.init's error in one line where it is the user's to fix (None: a fault, raised as it is)."""
    if isinstance(error, ConnectionError):  # it listens (check_reachable), but does not speak this driver's Ray
        said = (str(error).strip().splitlines() or ["no reason given"])[0]
        return UserError(f"cannot join the Ray cluster at {address} ({said}); is it running Ray {ray.__version__}, "
                         "this driver's version?")
    if isinstance(error, RuntimeError):  # a cluster of another Ray version: one line naming both
        return version_mismatch(error)
    return None


# How often the watcher started by a SIGTERM looks whether the private cluster still runs.
CLUSTER_WATCH_S = 0.2


class SigtermStop:
    """What a search does on SIGTERM: Tune stops as on Ctrl-C (cleanly, its state saved to resume from: Ray itself
    would kill the driver without a final save). When every process got the signal at once (timeout, docker stop,
    systemd and Slurm signal the whole group or cgroup), the private cluster dies under the driver: Tune would wait
    a minute for it, and once the raylet is gone Ray's core worker ends the driver with exit 1 and nothing said. So
    a watcher ends the search as soon as the cluster stops, and the driver ends it the same way when Tune returns
    first (`end_search`): `give_up` says how to resume, what is left of the cluster is killed, exit 130."""

    def __init__(self, session: str | None, give_up: Callable[[], None]) -> None:
        self.session, self.give_up = session, give_up
        self.received = threading.Event()
        # Set when the driver ends its cluster itself after a normal end (ray.shutdown sends the raylet a SIGTERM
        # too): a watcher started by a late SIGTERM then stands down.
        self.driver_ends_cluster = threading.Event()
        self.ending = threading.Lock()  # the watcher and the driver may both come to end the search: once
        signal.signal(signal.SIGTERM, self.on_sigterm)

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.received.set()
        if self.session:
            threading.Thread(target=self.watch_cluster, name="cluster-watch", daemon=True).start()
        os.kill(os.getpid(), signal.SIGINT)

    def watch_cluster(self) -> None:
        name = os.path.basename(self.session)
        while cluster_runs(name) and not raylet_stopping(self.session):
            if self.driver_ends_cluster.wait(CLUSTER_WATCH_S):
                return
        if not self.driver_ends_cluster.is_set():
            self.end_search()

    def ends_the_search(self) -> bool:
        """Whether the driver must end the search with `end_search` rather than shut Ray down: a SIGTERM came
        while it ran its own cluster (ray.shutdown would race Ray's core worker for the end of this process)."""
        return self.received.is_set() and bool(self.session)

    def end_search(self) -> None:
        """Say how to resume, kill what is left of the private cluster, end the process as after Ctrl-C: the killing
        done in this process's place (exit_ending_session), so that Ray's core worker cannot end it first. Never
        returns."""
        with self.ending:
            self.give_up()
            exit_ending_session(self.session)


def raylet_stopping(session: str) -> bool:
    """Whether the raylet has logged that it got SIGTERM: it then drains for about 10 s before it ends, and no
    trial runs meanwhile. (Where a Ray words it otherwise, its end is waited for instead.)"""
    log = Path(session) / "logs" / "raylet.out"
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, log.stat().st_size - 65536))
            return b"received SIGTERM" in handle.read()
    except OSError:
        return False


def cluster_runs(session_name: str) -> bool:
    """Whether the private cluster's raylet, which runs the trials, still runs (Ray's GCS outlives a SIGTERM)."""
    for pid in processes_of(session_name):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if command.split(b"\0", 1)[0].endswith(b"/raylet"):  # the program itself, not an argument naming it
            return True
    return False


def end_private_cluster(session: str | None) -> None:
    """Shut Ray down and remove the private cluster's session folder (0.5 MB a search, never removed by Ray)."""
    shutdown_ray()
    if session:
        shutil.rmtree(session, ignore_errors=True)


def shutdown_ray() -> None:
    """ray.shutdown, this process's SIGTERM handler kept: Ray's shutdown sets SIGTERM back to its default beneath
    Python (which still names its handler), so a SIGTERM after it, while the results are written, would kill the
    process with nothing said (exit -15) instead of interrupting it."""
    handler = signal.getsignal(signal.SIGTERM)
    ray.shutdown()
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def end_leftover_cluster(record: Path) -> None:
    """End what a killed driver's private cluster left running (its processes live on for up to a minute,
    one listening on the machine's address) and remove its session folder; `record` names the session."""
    if not record.exists():
        return
    end_leftover_session(record.read_text().strip())
    record.unlink(missing_ok=True)


def check_address(address: str | None) -> str:
    """The cluster address to use (the flag, else RAY_ADDRESS, else "local"), refused in one line when it is
    not one Ray takes: local, auto, HOST:PORT or ray://HOST:PORT."""
    where = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address in ("local", "auto"):
        return address
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{where} {address!r}: not a Ray cluster address (HOST:PORT, ray://HOST:PORT, auto or local)")
    return address


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, naming the address, where nothing listens (ray.init would retry for minutes)."""
    if address in ("local", "auto") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        raise UserError(f"cannot reach the Ray cluster at {address}: nothing answers there "
                        f"({getattr(error, 'strerror', None) or error})") from None


def shortfall(cluster: dict[str, float], cpus_per_trial: float, gpus_per_trial: float) -> str | None:
    """What the cluster lacks to place one trial, or None."""
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    if gpus_per_trial > 0 and gpus == 0:
        return f"gpus_per_trial is {gpus_per_trial:g}, but the Ray cluster has no GPUs ({cpus:g} CPUs)"
    if gpus_per_trial > gpus:
        return f"gpus_per_trial is {gpus_per_trial:g}, but the Ray cluster has only {gpus:g} GPUs"
    if cpus_per_trial > cpus:
        return f"cpus_per_trial is {cpus_per_trial:g}, but the Ray cluster has only {cpus:g} CPUs"
    return None


def wait_for_trial_resources(cpus_per_trial: float, gpus_per_trial: float, wait_s: float) -> dict[str, float]:
    """The cluster's resources once it can place one trial (an autoscaling cluster adds nodes as asked), waiting
    at most `wait_s` seconds and saying so; UserError naming what is missing after that."""
    cluster = ray.cluster_resources()
    missing = shortfall(cluster, cpus_per_trial, gpus_per_trial)
    if missing and wait_s > 0:
        print(f"waiting up to {wait_s:g} s for the cluster to offer a trial's {cpus_per_trial:g} CPU and "
              f"{gpus_per_trial:g} GPU ({missing})", flush=True)
        deadline = time.monotonic() + wait_s
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            cluster = ray.cluster_resources()
            missing = shortfall(cluster, cpus_per_trial, gpus_per_trial)
    if missing:
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        advice = "use --gpus-per-trial 0 to run on CPUs" if gpus_per_trial > 0 else "use fewer --cpus-per-trial"
        raise UserError(f"{missing}{waited}: {advice}")
    return cluster


def trial_resources(experiment: dict[str, Any], wait_s: float = 0) -> tuple[dict[str, float], int]:
    """({"cpu": c, "gpu": g} of one trial, trials at once), checked against what the cluster has.

    Ray would leave a trial asking for what no node has PENDING forever: wait `wait_s` seconds for it
    (an autoscaling cluster's workers joining), then fail in one line.
    """
    cpus_per_trial = experiment["cpus_per_trial"]
    gpus_per_trial = experiment["gpus_per_trial"]
    if gpus_per_trial is None:
        gpus_per_trial = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        if gpus_per_trial == 0 and wait_s > 0:  # a joined cluster: GPU workers may be yet to come
            print("the cluster has no GPUs now: trials run on CPUs (on an autoscaling cluster, --gpus-per-trial 1 "
                  "waits for GPU workers to join)", flush=True)
    cluster = wait_for_trial_resources(cpus_per_trial, gpus_per_trial, wait_s)
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    slots = int(gpus // gpus_per_trial) if gpus_per_trial else int(cpus // cpus_per_trial)
    cap = int(MAX_DEFAULT_CONCURRENCY / min(gpus_per_trial, 1)) if gpus_per_trial else MAX_DEFAULT_CONCURRENCY
    concurrent = experiment["max_concurrent"] or max(1, min(slots, cap))
    could_run = min(experiment["num_samples"], experiment["max_concurrent"] or MAX_DEFAULT_CONCURRENCY)
    if gpus_per_trial >= 1 and slots < could_run:
        print(f"{gpus:g} GPU(s) run {slots} trial(s) at once while the CPUs wait; CCNet uses about 1% of a GPU: "
              f"--gpus-per-trial 0.25 runs 4 trials on each GPU", flush=True)
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}, concurrent


def check_storage_shared(storage_is_local: bool, shared: bool, storage: str) -> None:
    """Refuse a folder on this machine as the storage of a multi-node cluster: a trial on another node
    fails at its first checkpoint ("Unable to set up cluster storage"), unless the user says every node
    mounts it at the same path."""
    nodes = [node for node in ray.nodes() if node["Alive"]]
    if storage_is_local and not shared and len(nodes) > 1:
        raise UserError(f"the Ray cluster has {len(nodes)} nodes and --storage-path {storage} is a folder on this "
                        "machine: trials on other nodes cannot write there; use a folder every node mounts at the "
                        "same path (and say so with --shared-storage) or a bucket (s3://..., gs://...)")


def fake_gpus() -> bool:
    return switch(FAKE_GPUS)


def torch_without_cuda(gpu_ids: list) -> str | None:
    """Why this process cannot use the GPUs Ray gave it (torch's build, the node), or None when it can."""
    if not gpu_ids or torch.cuda.is_available():
        return None
    build = ("built without CUDA" if torch.version.cuda is None
             else f"built for CUDA {torch.version.cuda} but finds no usable GPU (driver too old or missing?)")
    return (f"node {ray.util.get_node_ip_address()} gives trials GPUs, but its torch {torch.__version__} is {build}: "
            f"{CUDA_HINT}; or --gpus-per-trial 0 to train on CPUs")


@ray.remote(num_cpus=0)
def _torch_on_this_node() -> str | None:
    return torch_without_cuda(ray.get_gpu_ids())


def check_gpus_usable(gpus: float) -> None:
    """Refuse in one line, naming the node and its torch, when a node's torch cannot use the GPUs it offers:
    a trial placed there would hold a GPU and silently train on one CPU thread. One probe per GPU node,
    holding `gpus` (at most 1) of a GPU for the moment it takes; skipped when FAKE_GPUS says so."""
    if gpus <= 0 or fake_gpus():
        return
    for node in ray.nodes():
        if not node["Alive"] or node["Resources"].get("GPU", 0) <= 0:
            continue
        probe = _torch_on_this_node.options(num_gpus=min(gpus, 1), scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote()
        try:
            problem = ray.get(probe, timeout=GPU_CHECK_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:  # its GPUs are busy: the trial itself checks again
            ray.cancel(probe, force=True)
            continue
        if problem:
            raise UserError(problem)
