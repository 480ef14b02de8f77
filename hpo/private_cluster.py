"""What a private Ray cluster needs from the machine it starts on, checked before Ray starts and made safe after.

- Room for its sockets: Ray puts them under RAY_TMPDIR (else TMPDIR, else /tmp), in ray/session_<time>_<pid>/sockets/,
  and a Unix socket's path is at most 107 bytes: a longer folder fails deep inside Ray with a traceback.
- Its secrets kept: Ray >= 2.59 writes the cluster's token to ~/.ray/auth_token with the process's umask (0644 in a
  0755 folder: readable by every local user, while the cluster's processes listen on every interface: Ray 2.60
  binds them to all interfaces whatever node address it is given, measured). The token and its folder are made
  this user's alone, whoever made them.
- Its session folder kept: Ray makes it world-writable (0777, no sticky bit) so that users can share /tmp/ray; a
  private cluster's folder is made 0700, and the shared ray/ folder, where it is ours, gets the sticky bit (as /tmp).
- A start that fails (a file-size limit, no memory, a broken install) is one line naming Ray's log, with its
  processes ended and its session folder emptied but for that log.
"""
from __future__ import annotations

import os
import resource
import shutil
import stat
from pathlib import Path

from hpo.ray_sessions import kill_processes_of
from mnist.errors import UserError, one_line

# sockaddr_un's sun_path holds 108 bytes with the closing NUL.
MAX_SOCKET_PATH = 107
# The longest name Ray gives a socket of the session (the object store's; the raylet's is "raylet").
LONGEST_SOCKET = "plasma_store"
# Ray's session folder: session_<YYYY-MM-DD_HH-MM-SS_ffffff>_<pid of the process that starts the cluster>.
SESSION_NAME_LENGTH = len("session_2026-12-07_18-06-01_834502_")


def ray_temp_root() -> tuple[Path, str]:
    """The folder Ray makes its ray/ folder in and the variable that chose it, by Ray's own rule
    (RAY_TMPDIR, else TMPDIR on Linux, else /tmp)."""
    for variable in ("RAY_TMPDIR", "TMPDIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable]), variable
    return Path("/tmp"), "the default /tmp"


def check_socket_room() -> None:
    """Refuse, before Ray starts, a temporary folder too long for the private cluster's socket paths."""
    root, variable = ray_temp_root()
    socket = (Path(os.path.abspath(root)) / "ray" / ("x" * (SESSION_NAME_LENGTH + len(str(os.getpid()))))
              / "sockets" / LONGEST_SOCKET)
    length = len(os.fsencode(str(socket)))
    if length > MAX_SOCKET_PATH:
        room = MAX_SOCKET_PATH - (length - len(os.fsencode(str(root))))
        raise UserError(f"{variable}={root}: too long for Ray's sockets ({len(os.fsencode(str(root)))} bytes; Ray "
                        f"adds its session folder and a Unix socket's path is at most {MAX_SOCKET_PATH} bytes, so "
                        f"at most {room} bytes here); set {variable} to a shorter folder")


def keep_token_private() -> None:
    """~/.ray 0700 and its auth_token 0600 where they are this user's (Ray writes them with the umask)."""
    folder = Path.home() / ".ray"
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    for path, mode in ((folder, 0o700), (folder / "auth_token", 0o600)):
        _restrict(path, mode)


def keep_session_private(session: str | None) -> None:
    """The private cluster's session folder 0700; the shared ray/ folder above it sticky where it is ours."""
    if not session:
        return
    _restrict(Path(session), 0o700)
    shared = Path(session).parent
    try:
        info = shared.stat()
        if info.st_uid == os.getuid() and info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            shared.chmod(stat.S_IMODE(info.st_mode) | stat.S_ISVTX)
    except OSError:
        pass


def _restrict(path: Path, mode: int) -> None:
    try:
        info = path.lstat()
        if info.st_uid == os.getuid() and not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass


def failed_start(error: BaseException) -> UserError:
    """A private cluster that did not start: its processes ended, its session folder emptied but for Ray's logs,
    and one line saying so with the first line of Ray's error and where the logs are."""
    root, _ = ray_temp_root()
    suffix = f"_{os.getpid()}"
    sessions = sorted(path for path in (root / "ray").glob(f"session_*{suffix}") if path.is_dir())
    said = one_line((str(error).strip().splitlines() or [type(error).__name__])[0])[:300]
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:  # Ray's object store and logs are files: the likeliest cause, said
        said += f"; this process may write files of at most {limit} bytes (ulimit -f), too little for Ray"
    if not sessions:
        return UserError(f"Ray could not start a private cluster on this machine ({said}); nothing was left running")
    session = sessions[-1]
    kill_processes_of(session.name)
    for entry in session.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    _restrict(session, 0o700)
    latest = session.parent / "session_latest"
    if latest.is_symlink() and os.readlink(latest) == str(session):
        latest.unlink(missing_ok=True)
    return UserError(f"Ray could not start a private cluster on this machine ({said}); its processes are ended and "
                     f"its logs kept in {session / 'logs'}")
