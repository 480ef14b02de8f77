"""Digits drawn from pen strokes: the geometry people's digits are made of, and synthetic training digits.

Two users, kept apart on purpose:
- the reading sets (mnist.reading: drawings, notebook photos, the canvas set) draw fixed stroke paths,
  `DIGIT_STYLES` in mnist.reading.handwriting, to measure how the model reads people's digits;
- training (the `synthetic` knob) draws the *random* styles below, written separately: a 9 whose tail curls
  back left, a 6 hooked at the top or with its loop up high, a 1 with a lead-in and a base, a crossed 7, ...
  the ways of writing that MNIST's 500 writers (American census staff and students) rarely used, and that
  read as 8, 0 or 7 (issue #30). Each style draws its sizes and curls from a range, so a model trained on
  them has not seen the measuring sets' paths.

`synthetic_digits(count, seed)` renders them as MNIST is made: the digit scaled into a 20x20 box (aspect
kept), anti-aliased, pasted into 28x28 with its centre of mass at the centre; pens of 1.5-3.5 px at that scale.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

Stroke = list[tuple[float, float]]
Strokes = list[Stroke]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 14) -> Stroke:
    """Points of an elliptic arc, angles in degrees, 0 = up, clockwise (as a pen goes on paper)."""
    angles = np.radians(np.linspace(start, end, steps))
    return [(cx + rx * np.sin(a), cy - ry * np.cos(a)) for a in angles]


def polyline(*points: tuple[float, float], steps: int = 6) -> Stroke:
    """Points along straight segments through `points` (`steps` per segment)."""
    out = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        out += [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0, 1, steps)[:-1]]
    return out + [points[-1]]


def placed(strokes: Strokes, centre: tuple[float, float], height: float, width: float,
           slant: float, wobble: float, rng: np.random.Generator) -> Strokes:
    """A style's strokes (unit box, x right, y down) in pixels: scaled to `height` x `width` about `centre`,
    slanted (a right slant leans the top to the right), every point moved by a little wobble."""
    drawn = []
    for stroke in strokes:
        points = []
        for x, y in stroke:
            y_pixels = (y - 0.5) * height
            x_pixels = (x - 0.5) * width - slant * y_pixels
            points.append((centre[0] + x_pixels + rng.normal(0, wobble), centre[1] + y_pixels + rng.normal(0, wobble)))
        drawn.append(points)
    return drawn


# ---------------------------------------------------------------- training styles (random)
# Each takes the generator and returns strokes in the unit box. u(a, b) is one uniform draw.

Style = Callable[[np.random.Generator], Strokes]


def _zero(rng: np.random.Generator) -> Strokes:
    start = rng.uniform(-20, 20)
    return [arc(0.5, 0.5, rng.uniform(0.28, 0.45), 0.48, start, start + 360 + rng.uniform(0, 40), 28)]


def _one(rng: np.random.Generator) -> Strokes:
    top, x = (rng.uniform(0.45, 0.65), 0.0), rng.uniform(0.45, 0.6)
    lead = rng.integers(3)  # none, a straight flag, a curled lead-in
    stem = polyline(top, (x, 1.0))
    if lead == 1:
        stem = polyline((top[0] - rng.uniform(0.25, 0.6), rng.uniform(0.15, 0.4)), top) + stem
    elif lead == 2:
        stem = arc(top[0] - 0.12, 0.14, 0.12, 0.12, rng.uniform(200, 250), 360, 7) + stem
    strokes = [stem]
    if rng.random() < 0.35:  # a base serif
        half = rng.uniform(0.2, 0.45)
        strokes.append(polyline((x - half, 1.0), (x + half, 1.0)))
    return strokes


def _two(rng: np.random.Generator) -> Strokes:
    top = arc(0.5, 0.3, rng.uniform(0.28, 0.38), 0.28, rng.uniform(-90, -50), rng.uniform(90, 130), 12)
    if rng.random() < 0.5:  # a loop where the diagonal meets the base
        return [top + polyline(top[-1], (0.2, 0.9)) + arc(0.3, 0.88, 0.1, 0.09, 200, 380, 6)
                + polyline((0.3, 0.8), (0.92, 0.98))]
    return [top + polyline(top[-1], (0.1, 1.0), (0.92, rng.uniform(0.95, 1.0)))]


def _three(rng: np.random.Generator) -> Strokes:
    if rng.random() < 0.3:  # a flat top
        return [polyline((0.15, 0.02), (0.85, 0.02), (0.42, 0.42)) + arc(0.48, 0.7, 0.36, 0.3, -20, 230, 12)]
    return [arc(0.48, 0.26, rng.uniform(0.25, 0.33), 0.25, rng.uniform(-90, -60), 180, 12)
            + arc(0.48, 0.74, rng.uniform(0.3, 0.38), 0.26, 0, rng.uniform(220, 250), 12)]


def _four(rng: np.random.Generator) -> Strokes:
    bar, stem_x = rng.uniform(0.55, 0.72), rng.uniform(0.6, 0.72)
    if rng.random() < 0.5:  # open top: two strokes
        return [polyline((0.15, 0.0), (0.1, bar), (0.92, bar)), polyline((stem_x, 0.0), (stem_x, 1.0))]
    return [polyline((stem_x, 0.0), (0.08, bar), (0.95, bar)), polyline((stem_x, 0.3), (stem_x, 1.0))]


def _five(rng: np.random.Generator) -> Strokes:
    bowl = arc(0.48, 0.67, rng.uniform(0.3, 0.38), 0.32, -60, rng.uniform(200, 235), 14)
    return [polyline((0.25, 0.02), (0.2, 0.42)) + bowl, polyline((0.24, 0.02), (rng.uniform(0.7, 0.95), 0.02))]


def _six(rng: np.random.Generator) -> Strokes:
    radius = rng.uniform(0.2, 0.45)  # small loops low, big loops above the middle, under a short stem
    centre_y = 1.0 - rng.uniform(0.95, 1.05) * radius
    stem = polyline((rng.uniform(0.6, 0.85), 0.0), (0.3, 0.3), (0.5 - radius, centre_y))
    if rng.random() < 0.35:  # the top hooked back
        stem = arc(0.65, 0.12, 0.15, 0.1, 90, -40, 6) + stem
    loop = arc(0.5, centre_y, radius + rng.uniform(-0.03, 0.05), radius, 270, 630 + rng.uniform(-20, 60), 20)
    return [stem + loop]


def _seven(rng: np.random.Generator) -> Strokes:
    foot = (rng.uniform(0.3, 0.5), 1.0)
    stroke = polyline((0.08, 0.02), (0.92, 0.02), foot)
    if rng.random() < 0.3:  # a hook down at the left of the bar
        stroke = polyline((0.08, rng.uniform(0.12, 0.25)), (0.08, 0.02)) + stroke
    strokes = [stroke]
    if rng.random() < 0.4:  # crossed
        strokes.append(polyline((0.35, 0.52), (0.85, 0.52)))
    return strokes


def _eight(rng: np.random.Generator) -> Strokes:
    if rng.random() < 0.5:  # one stroke, crossing in the middle
        return [arc(0.5, 0.26, 0.28, 0.25, 160, -160, 16) + arc(0.5, 0.74, rng.uniform(0.3, 0.38), 0.26, 20, 380, 18)]
    return [arc(0.5, 0.25, rng.uniform(0.25, 0.32), 0.24, 0, 360, 16), arc(0.5, 0.74, rng.uniform(0.3, 0.38), 0.26, 0, 360, 18)]


def _nine(rng: np.random.Generator) -> Strokes:
    radius = rng.uniform(0.2, 0.34)
    centre_y = rng.uniform(0.95, 1.1) * radius
    head = arc(0.5, centre_y, radius + rng.uniform(0, 0.06), radius, 90, 450 + rng.uniform(-10, 50), 18)
    right = 0.5 + radius
    tail = rng.integers(3)  # straight down, slanting under the head, curled back left
    if tail == 0:
        stem = polyline((right, centre_y), (right - rng.uniform(0, 0.08), 1.0))
    elif tail == 1:
        stem = polyline((right, centre_y), (rng.uniform(0.4, 0.6), 1.0))
    else:
        stem = polyline((right, centre_y), (right, 0.8)) + arc(right - 0.25, 0.8, 0.25, 0.2, 90, rng.uniform(170, 260), 8)
    return [head + stem]


TRAINING_STYLES: dict[int, Style] = {0: _zero, 1: _one, 2: _two, 3: _three, 4: _four, 5: _five, 6: _six,
                                     7: _seven, 8: _eight, 9: _nine}

# ---------------------------------------------------------------- rendering as MNIST is made

BOX, CANVAS = 20, 28  # MNIST: each digit scaled into 20x20, in 28x28 centred by its centre of mass
SUPER = 4  # drawn at 4x and scaled down: anti-aliased, as MNIST's digits are
PEN_PX = (1.5, 3.5)  # stroke widths at the 28x28 scale (MNIST's strokes are mostly 2-3 px wide)
SLANT_DEGREES = 20


def render(strokes: Strokes, pen: float) -> np.ndarray:
    """(28, 28) uint8, white ink on black: `strokes` (any units) scaled so their larger side fills the 20x20
    box, drawn with a round `pen` px wide, centred by mass."""
    points = np.array([point for stroke in strokes for point in stroke])
    low, extent = points.min(axis=0), np.ptp(points, axis=0)
    scale = (BOX - pen) / max(extent.max(), 1e-6) * SUPER
    offset = (CANVAS * SUPER - extent * scale) / 2
    image = Image.new("L", (CANVAS * SUPER, CANVAS * SUPER), 0)
    draw = ImageDraw.Draw(image)
    radius = pen * SUPER / 2
    for stroke in strokes:
        xy = [tuple((np.array(point) - low) * scale + offset) for point in stroke]
        draw.line(xy, fill=255, width=max(1, round(pen * SUPER)))
        for x, y in xy:  # round joints and ends
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    digit = np.asarray(image.reduce(SUPER), dtype=np.float32)  # the mean of each 4x4: anti-aliased, no ringing
    row, column = ndimage.center_of_mass(digit)
    centred = ndimage.shift(digit, (round(CANVAS / 2 - row), round(CANVAS / 2 - column)), order=0, cval=0)
    return np.clip(centred, 0, 255).astype(np.uint8)


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` digits (balanced over 0-9) drawn from TRAINING_STYLES: images (count, 28, 28) uint8 and labels
    (count,) int64, the same for the same (count, seed)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % 10
    images = np.empty((count, CANVAS, CANVAS), dtype=np.uint8)
    for index, digit in enumerate(labels):
        strokes = TRAINING_STYLES[int(digit)](rng)
        width = rng.uniform(0.45, 0.95) * (0.4 if digit == 1 else 1.0)
        slant = np.tan(np.radians(rng.uniform(-SLANT_DEGREES, SLANT_DEGREES)))
        shaped = placed(strokes, (0.0, 0.0), 1.0, width, slant, 0.01, rng)
        images[index] = render(shaped, rng.uniform(*PEN_PX))
    return images, labels


def with_synthetic_digits(images: np.ndarray, labels: np.ndarray, share: float,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels with `share` x as many digits drawn from pen strokes (mnist.strokes) after
    them, the same for the same seed; unchanged for 0. Validation stays MNIST's alone: it selects on MNIST."""
    count = round(share * len(images))
    if count == 0:
        return images, labels
    drawn_images, drawn_labels = synthetic_digits(count, seed)
    return np.concatenate([images, drawn_images]), np.concatenate([labels, drawn_labels.astype(labels.dtype)])
