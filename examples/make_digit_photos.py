"""Make examples/digits/: ten phone-photo-like PNGs of digits drawn with a pen, none from MNIST.

Each digit is a few pen strokes, jittered, on off-white paper with a shadow, sensor noise,
a slight blur and tilt, as a quick phone photo of a note would look.

    python examples/make_digit_photos.py [--out examples/digits] [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Pen strokes of each digit in a unit box (x right, y down): lists of points.
STROKES = {
    0: [[(0.5, 0.05), (0.2, 0.2), (0.12, 0.5), (0.2, 0.8), (0.5, 0.95), (0.8, 0.8), (0.88, 0.5), (0.8, 0.2), (0.5, 0.05)]],
    1: [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)]],
    2: [[(0.15, 0.25), (0.35, 0.07), (0.65, 0.07), (0.82, 0.28), (0.7, 0.5), (0.15, 0.93), (0.88, 0.93)]],
    3: [[(0.15, 0.12), (0.5, 0.05), (0.8, 0.2), (0.7, 0.42), (0.4, 0.5), (0.75, 0.58), (0.85, 0.8), (0.5, 0.95), (0.12, 0.86)]],
    4: [[(0.65, 0.95), (0.65, 0.05), (0.1, 0.65), (0.9, 0.65)]],
    5: [[(0.82, 0.07), (0.25, 0.07), (0.2, 0.45), (0.55, 0.4), (0.82, 0.6), (0.75, 0.88), (0.45, 0.95), (0.15, 0.85)]],
    6: [[(0.75, 0.07), (0.4, 0.25), (0.18, 0.6), (0.3, 0.9), (0.6, 0.93), (0.8, 0.72), (0.62, 0.5), (0.3, 0.55), (0.18, 0.65)]],
    7: [[(0.12, 0.08), (0.88, 0.08), (0.45, 0.95)], [(0.3, 0.5), (0.72, 0.5)]],
    8: [[(0.5, 0.5), (0.2, 0.3), (0.5, 0.05), (0.8, 0.3), (0.5, 0.5), (0.15, 0.72), (0.5, 0.95), (0.85, 0.72), (0.5, 0.5)]],
    9: [[(0.8, 0.35), (0.5, 0.5), (0.2, 0.32), (0.45, 0.07), (0.78, 0.22), (0.8, 0.35), (0.7, 0.95)]],
}


def photo_of(digit: int, rng: np.random.Generator, size: tuple[int, int] = (480, 360)) -> Image.Image:
    width, height = size
    page = Image.new("L", size, int(rng.integers(205, 235)))
    draw = ImageDraw.Draw(page)
    box = height * rng.uniform(0.45, 0.7)  # the digit's height on the page
    left, top = rng.uniform(0.15, 0.55) * width, rng.uniform(0.1, 0.9) * (height - box)
    for stroke in STROKES[digit]:
        points = [(left + (x * 0.7 + rng.normal(0, 0.02)) * box, top + (y + rng.normal(0, 0.02)) * box) for x, y in stroke]
        draw.line(points, fill=int(rng.integers(20, 70)), width=int(box / 14), joint="curve")
    page = page.rotate(rng.uniform(-8, 8), resample=Image.BICUBIC, fillcolor=220)
    light = np.linspace(rng.uniform(0.6, 0.8), 1.0, width)[None, :] * np.linspace(1.0, rng.uniform(0.8, 1.0), height)[:, None]
    pixels = np.asarray(page.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.float32) * light
    pixels += rng.normal(0, 6, pixels.shape)
    rgb = np.stack([pixels * 1.0, pixels * 0.97, pixels * 0.9], axis=-1)  # warm indoor light
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="examples/digits", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the jitter, light and noise")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        photo_of(digit, rng).save(out / f"photo_{digit}.png", optimize=True)
    print(f"wrote 10 photos to {out}")


if __name__ == "__main__":
    main()
