"""A private Ray cluster's processes, found and ended from outside Ray: what a killed driver left, or what is left
of a cluster after a SIGTERM. Imports nothing of Ray's, so that it also runs in place of a driver
(exit_ending_session)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import NoReturn

# What runs in the driver's place to end its cluster: this module, from the folder the driver imported it from; then
# the exit of an interrupted search (130, as after Ctrl-C: mnist.errors.run_cli).
ENDING_SCRIPT = ("import sys; sys.path.insert(0, sys.argv[1]); from hpo.ray_sessions import end_leftover_session; "
                 "end_leftover_session(sys.argv[2]); sys.exit(130)")


def end_leftover_session(session: str) -> None:
    """Kill what is left of a private cluster's processes and remove its session folder."""
    name = os.path.basename(session)
    if name.startswith("session_"):
        kill_processes_of(name)
        shutil.rmtree(session, ignore_errors=True)


def kill_processes_of(session_name: str) -> None:
    for pid in processes_of(session_name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


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


def exit_ending_session(session: str) -> NoReturn:
    """End the process with exit 130 after killing what is left of its private cluster, in a program that replaces
    it (exec): the driver's threads end at once, Ray's core worker among them, which would otherwise end the process
    with exit 1 (and nothing said) the moment the cluster's GCS or raylet is killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    package_root = str(Path(__file__).resolve().parents[1])
    os.execv(sys.executable, [sys.executable, "-c", ENDING_SCRIPT, package_root, session])
