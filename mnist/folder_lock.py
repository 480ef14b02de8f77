"""One writer per output folder: a training run, a search or a retraining holds its folder for its whole life.

An exclusive flock on a file beside the folder (not in it: taking the lock creates nothing inside, so a refused
run leaves no folder). The kernel drops the lock when the process ends, however it ends (SIGKILL included): no
stale lock is ever left. The lock is keyed by the folder's real path, so a second command that reaches the same
folder through a symlink or another spelling of the path is refused too. One machine's processes only: flock
does not reach across the nodes of a cluster.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mnist.errors import UserError


def real_folder(folder: str | Path) -> Path:
    """`folder` with symlinks and `..` resolved (it need not exist yet)."""
    return Path(os.path.realpath(folder))


def lock_file_of(folder: str | Path) -> Path:
    real = real_folder(folder)
    return real.parent / f".{real.name}.lock"


def is_held(lock_file: Path) -> bool:
    """Whether a live process holds `lock_file` (taken and dropped again at once when no one does)."""
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


@contextmanager
def hold_folder(folder: str | Path, what: str, shown_as: str | None = None,
                other: str = "another folder") -> Iterator[None]:
    """Hold `folder` for `what` (a command: "search.py", "mnist.train") for the whole block, or refuse in one
    line naming the process that holds it (`shown_as`: how that line names the folder; `other`: the flag that
    chooses another one)."""
    lock_file = lock_file_of(folder)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{shown_as or folder}: in use by {holder}; wait for it to end (or stop it), or choose "
                        f"{other}") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()})")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
