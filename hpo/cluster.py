"""The Ray cluster a search runs on: joining one (or starting a private one), and what a trial may ask of it."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import ray
from ray._raylet import AuthenticationTokenLoader, Config  # private: see tests/test_ray_internals.py

from mnist.errors import UserError

# Concurrency beyond this makes TPE propose mostly blind (constant liar helps, but only so much).
MAX_DEFAULT_CONCURRENCY = 8


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS); else start a private one on this machine.

    A plain ray.init() would silently join any cluster left running by `ray start`.
    """
    address = check_address(address)
    check_reachable(address)
    private = {}
    if address == "local":
        # The private cluster's GCS, raylet and workers listen on every interface (Ray 2.60 does
        # so even when told 127.0.0.1): what keeps other users and hosts out is Ray's token
        # authentication. Keep it on whatever the environment says (a stray RAY_AUTH_MODE=disabled
        # would let any client join); the processes Ray starts read it from here.
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")  # this process read RAY_AUTH_MODE when ray was imported: read it again
        AuthenticationTokenLoader.instance().reset_cache()
        private = {"_node_ip_address": "127.0.0.1"}  # loopback where Ray honours it (its ports still bind *)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True, **private)
    except ConnectionError as error:
        raise UserError(f"cannot reach the Ray cluster at {address} ({str(error).splitlines()[0]})") from None
    # Ray takes SIGTERM and kills the driver without a final save; as SIGINT, Tune stops cleanly and resumably.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


def private_session_dir() -> str | None:
    """The session folder of the Ray cluster this process started (Ray's private bookkeeping), or None."""
    node = getattr(ray._private.worker, "_global_node", None)
    return node.get_session_dir_path() if node is not None else None


def end_private_cluster(session: str | None) -> None:
    """Shut Ray down and remove the private cluster's session folder (0.5 MB a search, never removed by Ray)."""
    ray.shutdown()
    if session:
        shutil.rmtree(session, ignore_errors=True)


def end_leftover_cluster(record: Path) -> None:
    """End what a killed driver's private cluster left running (its processes live on for up to a minute,
    one listening on the machine's address) and remove its session folder; `record` names the session."""
    if not record.exists():
        return
    session = record.read_text().strip()
    name = os.path.basename(session)
    if name.startswith("session_"):
        for pid in processes_of(name):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(session, ignore_errors=True)
    record.unlink(missing_ok=True)


def processes_of(session_name: str) -> list[int]:
    """The processes whose command line names the Ray session (gcs, raylet, Ray's helpers) and their
    children (the workers), read from /proc; none where there is no /proc."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    parents, found = {}, set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if session_name.encode() in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    grew = True
    while grew:  # the workers are children of the raylet
        children = {pid for pid, parent in parents.items() if parent in found} - found
        grew = bool(children)
        found |= children
    found.discard(os.getpid())
    return sorted(found)


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


def trial_resources(experiment: dict[str, Any]) -> tuple[dict[str, float], int]:
    """({"cpu": c, "gpu": g} of one trial, trials at once), checked against what the cluster has.

    Ray would leave a trial asking for GPUs that do not exist PENDING forever: fail now instead.
    """
    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0), cluster.get("GPU", 0)
    cpus_per_trial = experiment["cpus_per_trial"]
    gpus_per_trial = experiment["gpus_per_trial"]
    if gpus_per_trial is None:
        gpus_per_trial = 1 if gpus >= 1 else 0
    if gpus_per_trial > 0 and gpus == 0:
        raise UserError(f"gpus_per_trial is {gpus_per_trial}, but the Ray cluster has no GPUs "
                        f"({cpus:g} CPUs): use --gpus-per-trial 0 to run on CPUs")
    if gpus_per_trial > gpus:
        raise UserError(f"gpus_per_trial is {gpus_per_trial}, but the Ray cluster has only {gpus:g} GPUs")
    if cpus_per_trial > cpus:
        raise UserError(f"cpus_per_trial is {cpus_per_trial}, but the Ray cluster has only {cpus:g} CPUs")
    slots = int(gpus // gpus_per_trial) if gpus_per_trial else int(cpus // cpus_per_trial)
    concurrent = experiment["max_concurrent"] or max(1, min(slots, MAX_DEFAULT_CONCURRENCY))
    return {"cpu": cpus_per_trial, "gpu": gpus_per_trial}, concurrent
