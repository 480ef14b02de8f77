"""The drawings set of our own: as varied in pen, size and place as it says (seeded and split: test_notebook.py)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mnist.reading.drawings import PAD, drawing
from mnist.reading.preprocess import to_grayscale


def ink_box(image: Image.Image) -> tuple[float, float, float]:
    """(height of the ink's box, its centre's distance from the pad's centre, ink share) in shares of the pad."""
    ink = to_grayscale(image) < 128
    rows, columns = np.nonzero(ink)
    side = image.size[0]
    centre = np.hypot(rows.mean() / side - 0.5, columns.mean() / side - 0.5)
    return np.ptp(rows) / side, centre, ink.mean()


def test_the_drawings_vary_in_size_place_pen_and_format() -> None:
    rng = np.random.default_rng(0)
    images = [drawing(index % 10, rng) for index in range(200)]
    heights, centres, shares = np.array([ink_box(image) for image in images]).T
    assert heights.min() < 0.3 and heights.max() > 0.85  # small and large
    assert centres.max() > 0.2  # some far from the centre
    assert shares.max() / shares.min() > 10  # thin and thick pens
    assert {image.mode for image in images} == {"RGB", "RGBA"}  # paint programs' transparent pads too
    assert PAD in {image.size[0] for image in images} and len({image.size for image in images}) > 2
