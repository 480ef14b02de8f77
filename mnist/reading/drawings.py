"""A drawings set of our own: digits drawn on a drawing pad as people draw them, wider in pen, slant and size
than the canvas set, made from our own stroke paths (mnist.reading.handwriting.DIGIT_STYLES, none from MNIST).

    python -m mnist.reading.drawings [--out results/handwriting/drawings] [--per-digit 100] [--seed 0]

Each drawing: the draw page's 280x280 pad (or a paint program's square of another size), white or transparent,
a round pen of 4 to 40 px at the pad's scale (the page's pen slider), black or coloured; the digit 20-95% of
the pad high, slanted -35..+35 degrees, narrow or wide, anywhere on the pad, drawn with a shaky hand. Written
as `tune/` and `report/` halves with labels.csv, like the other sets (mnist.reading.handwriting).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mnist.errors import run_cli
from mnist.reading.handwriting import DIGIT_STYLES, drawn_set_main, write_drawn_set
from mnist.reading.notebook import SUPER, draw_strokes
from mnist.strokes import placed

PAD = 280  # the draw page's canvas, px
PENS = {"black": (0, 0, 0), "blue": (20, 60, 200), "red": (200, 30, 30), "grey": (80, 80, 80)}


def drawing(digit: int, rng: np.random.Generator) -> Image.Image:
    """One `digit` drawn on a pad: RGB on white, or RGBA on transparent (as paint programs save)."""
    height = PAD * rng.uniform(0.2, 0.95)
    width = height * rng.uniform(0.4, 0.95) * (0.35 if digit == 1 else 1.0)
    slant = np.tan(np.radians(rng.uniform(-35, 35)))
    room_x, room_y = max((PAD - width) / 2 - 10, 0), max((PAD - height) / 2 - 10, 0)
    centre = (PAD / 2 + rng.uniform(-1, 1) * room_x, PAD / 2 + rng.uniform(-1, 1) * room_y)
    styles = DIGIT_STYLES[digit]
    strokes = placed(styles[int(rng.integers(len(styles)))], centre, height, width, slant, height * 0.012, rng)
    # The page's slider goes from 4 to 40 px; a person drawing small with a wide pen fills the loops and tries
    # again, so the pen stays under a fifth of the digit's height.
    pen = int(rng.integers(4, max(5, min(41, round(height * 0.2)))))
    ink = Image.new("L", (PAD * SUPER, PAD * SUPER), 0)
    draw_strokes(ImageDraw.Draw(ink), strokes, pen, 0.0, rng)
    ink = ink.resize((PAD, PAD), Image.LANCZOS)
    colour = list(PENS.values())[int(rng.choice(len(PENS), p=[0.7, 0.12, 0.1, 0.08]))]
    if rng.random() < 0.2:  # a paint program's transparent background: the ink is all there is
        image = Image.new("RGBA", (PAD, PAD), (*colour, 0))
        image.putalpha(ink)
    else:
        image = Image.composite(Image.new("RGB", (PAD, PAD), colour), Image.new("RGB", (PAD, PAD), (255, 255, 255)), ink)
    side = int(rng.choice([PAD, PAD, 200, 400, 512]))  # pads of other apps
    return image if side == PAD else image.resize((side, side), Image.LANCZOS)


def write_drawings_set(out: Path, per_digit: int = 100, seed: int = 0) -> dict[str, int]:
    """`per_digit` drawings of each digit in out/tune and out/report (seeded, half each); returns the counts."""
    return write_drawn_set(out, drawing, "drawing", "PNG", per_digit, seed)


if __name__ == "__main__":
    run_cli(lambda argv: drawn_set_main(argv, __doc__, "drawings", write_drawings_set))
