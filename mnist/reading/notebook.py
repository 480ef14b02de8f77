"""A notebook-photo set of our own: single digits written in a notebook and photographed, made from our own
stroke paths (mnist.reading.handwriting.DIGIT_STYLES, none from MNIST), so that a re-check on other people's
photos stays independent of what was tuned here.

    python -m mnist.reading.notebook [--out results/handwriting/notebook] [--per-digit 100] [--seed 0]

Each photo: ruled, squared or plain paper; a ballpoint (thin, with skips where the ball ran dry) or a felt
pen (wide); sometimes a box drawn around the digit, the edge of a neighbouring digit in the frame, an
underline; uneven and sometimes dim light, a shadow, perspective, blur, sensor noise and JPEG. Written as
`tune/` and `report/` halves with labels.csv, like the other sets (mnist.reading.handwriting).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnist.errors import run_cli
from mnist.reading.handwriting import DIGIT_STYLES, drawn_set_main, write_drawn_set
from mnist.strokes import Strokes, placed

SUPER = 3  # drawn at 3x and scaled down: anti-aliased strokes
PAPERS = ("plain", "ruled", "squared")
INKS = {"ballpoint blue": (30, 45, 120), "ballpoint black": (25, 25, 30), "felt black": (15, 15, 15),
        "felt blue": (20, 40, 140)}


def styled_strokes(digit: int, rng: np.random.Generator, height: float, width: float,
                   centre: tuple[float, float]) -> Strokes:
    """One of the digit's styles in page pixels: scaled, slanted, wobbling a little."""
    styles = DIGIT_STYLES[digit]
    strokes = styles[int(rng.integers(len(styles)))]
    return placed(strokes, centre, height, width, np.tan(np.radians(rng.uniform(-20, 20))), height * 0.012, rng)


def draw_strokes(draw: ImageDraw.ImageDraw, strokes: Strokes, width: int, skips: float,
                 rng: np.random.Generator) -> None:
    """Pen strokes as joined segments (round joints); `skips`: the chance that a segment is left out (a
    ballpoint running dry), never the first or last of a stroke."""
    for stroke in strokes:
        points = [(x * SUPER, y * SUPER) for x, y in stroke]
        dense = []
        for (x0, y0), (x1, y1) in zip(points, points[1:]):  # short segments, so that a skip is short
            steps = max(1, int(np.hypot(x1 - x0, y1 - y0) / (6 * SUPER)))
            dense += [(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t) for t in np.linspace(0, 1, steps + 1)[:-1]]
        dense.append(points[-1])
        for index, (start, end) in enumerate(zip(dense, dense[1:])):
            if 0 < index < len(dense) - 2 and rng.random() < skips:
                continue
            draw.line([start, end], fill=255, width=width * SUPER)
            radius = width * SUPER / 2
            draw.ellipse([end[0] - radius, end[1] - radius, end[0] + radius, end[1] + radius], fill=255)


def hand_box(left: float, top: float, right: float, bottom: float, rng: np.random.Generator) -> Strokes:
    """A box drawn by hand around a digit: four wobbly sides, corners overshooting or falling short."""
    def side(a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
        bow = rng.normal(0, 0.015) * np.hypot(b[0] - a[0], b[1] - a[1])
        points = []
        for t in np.linspace(0, 1, 12):
            x, y = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
            nx, ny = -(b[1] - a[1]), b[0] - a[0]
            norm = np.hypot(nx, ny) or 1
            offset = bow * np.sin(np.pi * t)
            points.append((x + nx / norm * offset, y + ny / norm * offset))
        return points

    jitter = (right - left) * 0.03
    corners = [(left + rng.normal(0, jitter), top + rng.normal(0, jitter)),
               (right + rng.normal(0, jitter), top + rng.normal(0, jitter)),
               (right + rng.normal(0, jitter), bottom + rng.normal(0, jitter)),
               (left + rng.normal(0, jitter), bottom + rng.normal(0, jitter))]
    if rng.random() < 0.5:  # in one go
        return [side(corners[0], corners[1]) + side(corners[1], corners[2]) + side(corners[2], corners[3])
                + side(corners[3], corners[0])]
    return [side(corners[index], corners[(index + 1) % 4]) for index in range(4)]


def paper_lines(size: tuple[int, int], paper: str, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """A mask (0..1) of the paper's printed lines: rules, squares, perhaps a margin."""
    width, height = size
    mask = Image.new("L", (width * SUPER, height * SUPER), 0)
    draw = ImageDraw.Draw(mask)
    line_width = max(1, round(rng.uniform(0.8, 1.6) * SUPER))
    offset_y, offset_x = rng.uniform(0, spacing), rng.uniform(0, spacing)
    if paper in ("ruled", "squared"):
        for y in np.arange(offset_y, height, spacing):
            draw.line([(0, y * SUPER), (width * SUPER, y * SUPER)], fill=255, width=line_width)
    if paper == "squared":
        for x in np.arange(offset_x, width, spacing):
            draw.line([(x * SUPER, 0), (x * SUPER, height * SUPER)], fill=255, width=line_width)
    if paper == "ruled" and rng.random() < 0.3:  # the margin
        x = rng.uniform(0.05, 0.2) * width
        draw.line([(x * SUPER, 0), (x * SUPER, height * SUPER)], fill=255, width=line_width * 2)
    return np.asarray(mask.resize(size, Image.LANCZOS), dtype=np.float32) / 255


def notebook_photo(digit: int, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """One `digit` written in a notebook and photographed; with what the photo shows (paper, pen, box, ...)."""
    paper = PAPERS[int(rng.integers(len(PAPERS)))]
    spacing = rng.uniform(22, 42)
    digit_height = spacing * rng.uniform(1.2, 2.6) if paper != "plain" else rng.uniform(40, 110)
    digit_width = digit_height * rng.uniform(0.5, 0.8) * (0.35 if digit == 1 else 1.0)
    page_w = int((digit_height * rng.uniform(1.8, 3.2) + 40) / 0.82)  # 82% of it stays in the photo
    page_h = int((digit_height * rng.uniform(1.6, 2.6) + 30) / 0.82)
    centre = (page_w / 2 + rng.uniform(-0.12, 0.12) * page_w, page_h / 2 + rng.uniform(-0.12, 0.12) * page_h)
    ink_name = list(INKS)[int(rng.integers(len(INKS)))]
    felt = ink_name.startswith("felt")
    pen = max(1, round(digit_height * (rng.uniform(0.07, 0.12) if felt else rng.uniform(0.025, 0.05))))
    skips = 0.0 if felt else rng.choice([0.0, 0.0, 0.04, 0.1])
    ink = Image.new("L", (page_w * SUPER, page_h * SUPER), 0)
    draw = ImageDraw.Draw(ink)
    draw_strokes(draw, styled_strokes(digit, rng, digit_height, digit_width, centre), pen, skips, rng)
    shows = {"paper": paper, "ink": ink_name, "box": False, "neighbour": False, "underline": False, "dim": False}
    if rng.random() < 0.3:
        margin = digit_height * rng.uniform(0.15, 0.35)
        half_w, half_h = max(digit_width, digit_height * 0.45) / 2 + margin, digit_height / 2 + margin
        draw_strokes(draw, hand_box(centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h,
                                    rng), pen, 0.0, rng)
        shows["box"] = True
    if rng.random() < 0.35:  # the edge of the digit written before or after it
        other = int(rng.integers(10))
        side = 1 if rng.random() < 0.5 else -1
        shift = side * (0.41 * page_w + digit_height * rng.uniform(0.15, 0.45))  # about the photo's edge
        draw_strokes(draw, styled_strokes(other, rng, digit_height, digit_height * 0.6,
                                          (centre[0] + shift, centre[1] + rng.normal(0, 3))), pen, skips, rng)
        shows["neighbour"] = True
    if rng.random() < 0.12:
        y = centre[1] + digit_height * rng.uniform(0.6, 0.8)
        draw_strokes(draw, [[(centre[0] - digit_height * 0.5, y), (centre[0] + digit_height * 0.5, y + rng.normal(0, 2))]],
                     pen, 0.0, rng)
        shows["underline"] = True
    darkness = np.asarray(ink.resize((page_w, page_h), Image.LANCZOS), dtype=np.float32) / 255
    lines = paper_lines((page_w, page_h), paper, spacing, rng)
    paper_rgb = np.array([rng.uniform(225, 250), rng.uniform(222, 248), rng.uniform(205, 240)])
    rule_rgb = np.array([rng.uniform(120, 190), rng.uniform(150, 200), rng.uniform(190, 235)])
    rule = lines[..., None] * rng.uniform(0.5, 0.9)  # printed lines are fainter than ink
    pixels = paper_rgb * (1 - rule) + rule_rgb * rule
    pixels = pixels * (1 - darkness[..., None]) + np.array(INKS[ink_name]) * darkness[..., None]
    light = (np.linspace(rng.uniform(0.6, 1.0), 1.0, page_w)[None, :]
             * np.linspace(1.0, rng.uniform(0.7, 1.0), page_h)[:, None])
    if rng.random() < 0.5:
        light = light[:, ::-1]
    if rng.random() < 0.3:  # the phone's (or the hand's) shadow over a part of the page
        shadow = Image.new("L", (page_w, page_h), 0)
        corner = (rng.uniform(0, page_w), rng.uniform(0, page_h))
        ImageDraw.Draw(shadow).ellipse([corner[0] - page_w * 0.6, corner[1] - page_h * 0.6,
                                        corner[0] + page_w * 0.6, corner[1] + page_h * 0.6], fill=255)
        shade = np.asarray(shadow.filter(ImageFilter.GaussianBlur(page_w / 10)), dtype=np.float32) / 255
        light = light * (1 - shade * rng.uniform(0.2, 0.45))
    if rng.random() < 0.2:  # dim light: a page around mid-grey
        light = light * rng.uniform(0.4, 0.6)
        shows["dim"] = True
    image = Image.fromarray(np.clip(pixels * light[..., None], 0, 255).astype(np.uint8))
    image = perspective(image, rng)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.4)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(2, 7), (image.height, image.width, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG",
                                                                  quality=int(rng.integers(50, 92)))
    return Image.open(io.BytesIO(buffer.getvalue())), shows


def perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The page seen a little from the side: each corner moved by up to 8% of the page, then the frame cropped
    by 9% a side so that no corner the transform left empty shows (the page goes on beyond the photo)."""
    width, height = image.size
    source = [(0, 0), (width, 0), (width, height), (0, height)]
    moved = [(x + rng.uniform(-0.08, 0.08) * width, y + rng.uniform(-0.08, 0.08) * height) for x, y in source]
    rows = []
    for (x, y), (u, v) in zip(moved, source):  # the map from output (x, y) to input (u, v)
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coefficients = np.linalg.solve(np.array(rows, float), np.array(source, float).ravel())
    fill = tuple(int(value) for value in np.median(np.asarray(image).reshape(-1, 3), axis=0))
    seen = image.transform(image.size, Image.PERSPECTIVE, tuple(coefficients), Image.BICUBIC, fillcolor=fill)
    return seen.crop((round(0.09 * width), round(0.09 * height), round(0.91 * width), round(0.91 * height)))


def write_notebook_set(out: Path, per_digit: int = 100, seed: int = 0) -> dict[str, int]:
    """`per_digit` photos of each digit in out/tune and out/report (seeded, half each); returns the counts."""
    return write_drawn_set(out, lambda digit, rng: notebook_photo(digit, rng)[0], "notebook", "JPEG", per_digit, seed)


if __name__ == "__main__":
    run_cli(lambda argv: drawn_set_main(argv, __doc__, "notebook", write_notebook_set))
