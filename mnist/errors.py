"""One error type for bad user input, and the CLI wrapper that prints it."""
from __future__ import annotations

import importlib
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable


class UserError(Exception):
    """Bad input from the user (a file, a flag, a config value).

    The message names what is wrong in one line; CLIs print it without a traceback.
    """


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a CLI `main`, turning a UserError into a one-line message and exit code 2, and a SIGTERM (what
    timeout, docker stop, systemd and Slurm send) into what Ctrl-C does: "interrupted", exit 130, with every
    `finally` run and every file written whole (the search and the servers install their own on top)."""
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        code = main(argv)
    except UserError as error:
        print(f"error: {mask_credentials(one_line(str(error)))}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.filename is None:  # not about a file the user named: a real fault, with its traceback
            raise
        # A file or folder the user named that cannot be read or written (read-only, a file where a
        # folder is wanted, ...): the one error path, one line naming it.
        print(f"error: {mask_credentials(one_line(f'{error.filename}: {error.strerror or error}'))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code or 0)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def one_line(message: str) -> str:
    """`message` on one line whatever it quotes (a key or a file name with a line break in it): breaks as \\n."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def optional_module(name: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UserError(f"{purpose} needs the Python package {name}: pip install -e '.[{extra}]'") from None


def run_moved(old: str, new: str) -> None:
    """A command that moved: one line naming the new one, then the new one runs with the same arguments (in this
    process's place, so exit code and output are its own)."""
    print(f"note: python -m {old} is now python -m {new} (the old name goes in ccnet-hpo 0.3.0)", file=sys.stderr,
          flush=True)
    os.execv(sys.executable, [sys.executable, "-m", new, *sys.argv[1:]])


def shell_path(path: str | Path) -> str:
    """`path` as a user can paste it into a shell in the folder they are in: relative to that folder where it lies
    below it, else absolute; quoted where it holds spaces or other characters a shell would take apart. A URI
    (s3://...) is only quoted."""
    if "://" in str(path):
        return shlex.quote(str(path))
    absolute = Path(os.path.abspath(path))
    try:
        shown = absolute.relative_to(Path.cwd())
    except ValueError:
        shown = absolute
    return shlex.quote(str(shown))


# The user-information part of a URI: scheme://USER:PASSWORD@host or scheme://TOKEN@host.
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]*)(?P<secret>:[^/\s@]*)?@")


def mask_credentials(text: str) -> str:
    """`text` with the secrets of every URI in it masked: a password as ***, a bare token (user part alone)
    as ***. Whatever the project prints or saves (errors, argv, reports, MLflow tags) goes through this."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@" if m["secret"] else f"{m['scheme']}***@", text)
