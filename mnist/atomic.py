"""Files and folders replaced whole: a reader (or a run killed at any moment) finds the old or the new, never half.

Every result, checkpoint and summary of the project is written through these.
"""
from __future__ import annotations

import errno
import json
import math
import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mnist.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then rename over `path`: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        Path(tmp).unlink(missing_ok=True)
        cause = _write_failure(error, written)
        if cause:  # what was there before stays whole: only the temporary file is gone
            raise UserError(f"{cause} (writing {path.name} in {path.parent})") from None
        raise


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished `staging` folder in `target`'s place: a reader finds the whole old folder, the whole
    new one, or (for an instant, or after a kill at that instant) none; never a mix of the two."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: Path) -> None:
    """Undo a `replace_folder` killed between its two renames: the old folder comes back."""
    old = target.with_name(f".{target.name}.old")
    if old.exists() and not target.exists():
        os.replace(old, target)


def _write_failure(error: BaseException, written: int) -> str | None:
    """Why a write failed, where it is the machine's and not a fault (None): the disk full (ENOSPC), or the
    process's file-size limit (EFBIG: `ulimit -f`). torch.save wraps both in a RuntimeError without an errno
    ("file write failed", "unexpected pos ..."): then a file that reached the limit tells the limit."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    size_limit = (f"the file-size limit of this process ({limit} bytes, ulimit -f) is reached"
                  if limit != resource.RLIM_INFINITY else "the file-size limit is reached")
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.EFBIG:
            return size_limit
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return "no space left on the device"
        if isinstance(error, RuntimeError) and ("file write failed" in str(error) or "unexpected pos" in str(error)):
            at_limit = limit != resource.RLIM_INFINITY and written >= limit - 4096
            return size_limit if at_limit else "no space left on the device"
        error = error.__cause__ or error.__context__
    return None


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json_text(value, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file written by the project, or UserError naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def json_text(value: Any, indent: int | None = None) -> str:
    """`value` as valid JSON: NaN and infinities (a diverged run's loss), which JSON has no words for, as null;
    numpy scalars as plain numbers; anything else JSON lacks as its str."""
    return json.dumps(finite(value), indent=indent, default=str, allow_nan=False)


def finite(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value
