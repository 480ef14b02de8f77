"""The real sets, where they are and how they are read: what the field report and the calibration share.

    scans     scikit-learn's digits (43 writers) as photographed paper (mnist.reading.handwriting)
    notebook  notebook photos drawn from our own stroke paths (mnist.reading.notebook)
    drawings  drawings on a pad from our own stroke paths, pens 4-40 px, slants, sizes (mnist.reading.drawings)
    canvas    digits drawn on the draw page by a real browser's pointer (committed, tools/canvas_set.py)
    mnist-png MNIST's own digits saved as PNG files of 28-112 px, half black on white (mnist.reading.corruptions)
    corrupt-* MNIST's digits corrupted, a set per kind: noise, blur, fog, bars, rules, scribbles, hollow strokes, ...
All but the canvas are written under the sets folder when missing or made by an older version of their makers
(seeded: the same files every time).
"""
from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist.atomic import write_text_atomic
from mnist.errors import run_cli
from mnist.layout import HANDWRITING_SETS
from mnist.data import load_mnist
from mnist.reading.corruptions import set_writers
from mnist.reading.drawings import write_drawings_set
from mnist.reading.handwriting import CANVAS_SET, LABELS_FILE, SPLITS, read_labels, write_scan_set
from mnist.reading.notebook import write_notebook_set
from mnist.reading.predict import ImageError, load_image
from mnist.reading.preprocess import Steps


@dataclass
class ReadSet:
    """A labelled set as the model sees it: its digits, their truth, and which images were refused."""
    truth: np.ndarray
    digits: list[np.ndarray]  # one 28x28 per image read
    read: np.ndarray  # bool per image: False where preprocessing refused it


# The version of the generated sets; raise it when their makers change (DIGIT_STYLES, a photo's effects), so that
# sets written before are written again rather than measured as if they were today's. 2: 6s with a big loop or
# a hooked top, 9s with a curled tail, 1s with a flat lead-in joined the stroke paths (issue #30).
SETS_VERSION = 2
VERSION_FILE = "version.txt"
MADE_NAME = re.compile(r"(scan|notebook|drawing|corrupt|mnist)_\d{4}\.(jpg|png)")


def set_folders(sets: Path) -> dict[str, Path]:
    """The sets: the scans, the notebook photos, the drawings, MNIST as PNG files and the corruptions (written
    under `sets` when missing, or written again when an older version of their maker wrote them), the canvas."""
    written = {"scans": write_scan_set, "notebook": write_notebook_set, "drawings": write_drawings_set,
               **set_writers()}
    for name, write in written.items():
        folder = sets / name
        stamp = folder / VERSION_FILE
        if stamp.exists() and stamp.read_text().strip() == str(SETS_VERSION):
            continue
        if (folder / "report" / LABELS_FILE).exists():
            if not written_by_a_maker(folder):
                continue  # a set of the user's own under the same name: theirs, read as it is
            print(f"{folder}: written by an older version of its maker: writing it again", flush=True)
            for half in SPLITS:
                shutil.rmtree(folder / half, ignore_errors=True)
        write(folder)
        write_text_atomic(stamp, f"{SETS_VERSION}\n")
    return {**{name: sets / name for name in written}, "canvas": CANVAS_SET}


def written_by_a_maker(folder: Path) -> bool:
    """Whether every file of the set's halves is one that a maker here writes (labels.csv, scan_0000.jpg,
    notebook_0000.jpg, drawing_0000.png, ...), so that writing it again loses nothing of anyone's."""
    return all(path.name == LABELS_FILE or MADE_NAME.fullmatch(path.name)
               for half in SPLITS if (folder / half).is_dir() for path in (folder / half).iterdir())


def read_set(folder: Path, steps: Steps) -> ReadSet:
    """Every labelled image of `folder` preprocessed once (the same digits go to every model)."""
    labels = read_labels(folder / LABELS_FILE)
    digits, read = [], []
    for file in labels:
        try:
            digits.append(load_image(folder / file, steps=steps)[1])
            read.append(True)
        except ImageError:
            read.append(False)
    return ReadSet(np.array(list(labels.values()), dtype=np.int64), digits, np.array(read, dtype=bool))


def mnist_test_set() -> ReadSet:
    data = load_mnist()
    return ReadSet(data.test_labels.astype(np.int64), list(data.test_images), np.ones(len(data.test_labels), bool))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the generated sets where they are missing (seeded).")
    parser.add_argument("--sets", default=HANDWRITING_SETS, help=f"where the sets go (default {HANDWRITING_SETS})")
    args = parser.parse_args(argv)
    folders = set_folders(Path(args.sets))
    print(f"{len(folders)} sets: " + ", ".join(f"{name} ({folder})" for name, folder in folders.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
