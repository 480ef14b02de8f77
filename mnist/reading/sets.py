"""The real sets, where they are and how they are read: what the field report and the calibration share.

    scans     scikit-learn's digits (43 writers) as photographed paper (mnist.reading.handwriting)
    notebook  notebook photos drawn from our own stroke paths (mnist.reading.notebook)
    drawings  drawings on a pad from our own stroke paths, pens 4-40 px, slants, sizes (mnist.reading.drawings)
    canvas    digits drawn on the draw page by a real browser's pointer (committed, tools/canvas_set.py)
The first three are written under the sets folder when missing (seeded: the same files every time).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist.data import load_mnist
from mnist.reading.drawings import write_drawings_set
from mnist.reading.handwriting import CANVAS_SET, LABELS_FILE, read_labels, write_scan_set
from mnist.reading.notebook import write_notebook_set
from mnist.reading.predict import ImageError, load_image
from mnist.reading.preprocess import Steps


@dataclass
class ReadSet:
    """A labelled set as the model sees it: its digits, their truth, and which images were refused."""
    truth: np.ndarray
    digits: list[np.ndarray]  # one 28x28 per image read
    read: np.ndarray  # bool per image: False where preprocessing refused it


def set_folders(sets: Path) -> dict[str, Path]:
    """The real sets: the scans, the notebook photos and the drawings (written under `sets` when missing), the
    canvas."""
    written = {"scans": write_scan_set, "notebook": write_notebook_set, "drawings": write_drawings_set}
    for name, write in written.items():
        if not (sets / name / "report" / LABELS_FILE).exists():
            write(sets / name)
    return {**{name: sets / name for name in written}, "canvas": CANVAS_SET}


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
