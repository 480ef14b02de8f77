"""The shipped reader: the ensemble the package carries, read when no --checkpoint is given.

A fresh install reads digits at once (predict, the draw page, export): no search, no training first. Its
weights lie in this folder (`reader-v1.pt`), made by `python -m mnist.reading.train_reader` (docs/reader.md: its
data, recipe, figures and the confusions it still makes), with their SHA-256 beside them (`reader-v1.sha256`).
The checksum is verified every time the file is loaded: a damaged or replaced file is refused in one line
saying how to get the right one back, never read as if it were the reader.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mnist.atomic import write_text_atomic
from mnist.checkpoint import save_checkpoint
from mnist.errors import UserError

SHIPPED_FOLDER = Path(__file__).resolve().parent / "shipped"
VERSION = "v1"
WEIGHTS = f"reader-{VERSION}.pt"
CHECKSUM = f"reader-{VERSION}.sha256"
MAKER = "python -m mnist.reading.train_reader"  # its checkpoint's "made_by"
NAME = f"the shipped reader {VERSION}"  # what every command and the page say reads, when it is this one
REINSTALL = "reinstall the package (pip install --force-reinstall ccnet-hpo, or git checkout mnist/reading/shipped)"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_path(folder: Path | None = None) -> Path:
    """The shipped weights (in `folder`, default the package's), their checksum verified; UserError naming the
    file and how to reinstall."""
    folder = SHIPPED_FOLDER if folder is None else folder
    weights, checksum = folder / WEIGHTS, folder / CHECKSUM
    if not weights.is_file() or not checksum.is_file():
        missing = weights if not weights.is_file() else checksum
        raise UserError(f"{missing}: the shipped reader's file is missing; {REINSTALL}, or pass --checkpoint")
    expected = (checksum.read_text(errors="replace").split() or [""])[0]
    if sha256_of(weights) != expected:
        raise UserError(f"{weights}: does not match its checksum ({checksum.name}): the file is damaged or was "
                        f"replaced; {REINSTALL}")
    return weights


def is_shipped(path: Path) -> bool:
    """Whether `path` is the package's shipped reader (what the commands then call it by name)."""
    return Path(path).resolve() == (SHIPPED_FOLDER / WEIGHTS).resolve()


def write_shipped(state: dict[str, Any], folder: Path) -> None:
    """The weights, then their checksum (each atomically): a reader killed between finds a mismatch, refused."""
    save_checkpoint(state, folder / WEIGHTS)
    write_text_atomic(folder / CHECKSUM, f"{sha256_of(folder / WEIGHTS)}  {WEIGHTS}\n")

