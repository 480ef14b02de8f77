"""Real handwriting to measure on, beyond MNIST: labelled image folders, how they are made, how they are read.

A set is a folder of images with `labels.csv` (columns file,label), split into `tune/` (look at
it, choose thresholds and steps on it) and `report/` (only ever reported):

- scans: scikit-learn's 1,797 digits (43 writers, shipped with scikit-learn, none from MNIST)
  rendered as photographed paper: upscaled, dark on light, off centre, uneven light, blur,
  sensor noise, JPEG. `python -m mnist.reading.handwriting scans` writes it (seeded, a few seconds).
- canvas: digits drawn on the draw page's canvas in a real browser by pointer strokes
  (`python -m tools.canvas_set`, Chromium + Selenium), from the stroke paths of `digit_strokes`
  at several sizes, slants and pen widths; committed under examples/handwriting/canvas.

`read_labels` and `reading_report` are what `python -m mnist.reading.predict DIR --labels FILE` uses.
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter
from scipy import stats
from sklearn.metrics import accuracy_score, confusion_matrix

from mnist.atomic import write_text_atomic
from mnist.errors import UserError, run_cli
from mnist.layout import HANDWRITING_SETS
from mnist.strokes import arc, placed, polyline

SPLITS = ("tune", "report")
LABELS_FILE = "labels.csv"
CANVAS_SET = Path(__file__).resolve().parents[2] / "examples" / "handwriting" / "canvas"


# ---------------------------------------------------------------- labels

def read_labels(path: Path) -> dict[str, int]:
    """file name -> digit from a CSV with columns file,label; UserError naming the file and the row."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except FileNotFoundError:
        raise UserError(f"{path}: no such labels file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise UserError(f"{path}: needs a header row with the columns file,label")
    labels = {}
    for number, row in enumerate(rows, 2):
        label = (row["label"] or "").strip()
        if label not in {str(d) for d in range(10)}:
            raise UserError(f"{path}: line {number}: label must be a digit 0-9, got {row['label']!r}")
        name = (row["file"] or "").strip()
        if name in labels:  # two labels for one file: which one is right is the user's to say
            raise UserError(f"{path}: line {number}: {name!r} is labelled a second time")
        labels[name] = int(label)
    return labels


def write_labels(folder: Path, labels: dict[str, int]) -> None:
    write_text_atomic(folder / LABELS_FILE, "file,label\n" + "".join(f"{f},{d}\n" for f, d in labels.items()))


def write_drawn_set(out: Path, draw: Callable[[int, np.random.Generator], Image.Image], prefix: str, image_format: str,
                    per_digit: int, seed: int) -> dict[str, int]:
    """`per_digit` images of each digit, made by `draw(digit, rng)` from one seeded generator, written as
    out/tune and out/report halves (seeded) with their labels; returns the counts. The notebook and drawings sets."""
    rng = np.random.default_rng(seed)
    digits = np.repeat(np.arange(10), per_digit)
    split = split_names(len(digits), seed)
    labels: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    extension = {"JPEG": "jpg", "PNG": "png"}[image_format]
    for index, digit in enumerate(digits):
        name = SPLITS[split[index]]
        file = f"{prefix}_{index:04d}.{extension}"
        (out / name).mkdir(parents=True, exist_ok=True)
        draw(int(digit), rng).save(out / name / file, format=image_format, **({"quality": 95} if extension == "jpg" else {}))
        labels[name][file] = int(digit)
    for name in SPLITS:
        write_labels(out / name, labels[name])
    return {name: len(labels[name]) for name in SPLITS}


def drawn_set_main(argv: list[str] | None, description: str, name: str,
                   write: Callable[[Path, int, int], dict[str, int]]) -> int:
    """The command line of a drawn set's maker: --out (default under HANDWRITING_SETS), --per-digit, --seed."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=f"{HANDWRITING_SETS}/{name}", help=f"folder (default {HANDWRITING_SETS}/{name})")
    parser.add_argument("--per-digit", type=int, default=100, help="images of each digit (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of everything drawn (default 0)")
    args = parser.parse_args(argv)
    if args.per_digit < 2:
        raise UserError(f"--per-digit must be >= 2 (a tune and a report half), got {args.per_digit}")
    counts = write(Path(args.out), args.per_digit, args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{half} {count}" for half, count in counts.items()))
    return 0


def split_names(count: int, seed: int) -> np.ndarray:
    """A seeded half/half split of `count` items: 0 = tune, 1 = report."""
    order = np.random.default_rng(seed).permutation(count)
    split = np.zeros(count, dtype=int)
    split[order[count // 2:]] = 1
    return split


# ---------------------------------------------------------------- reading a labelled set

REFUSED = -1  # the label of an image read as "no digit" or "more than one digit": a miss on a labelled set


def reading_report(truth: np.ndarray, predicted: np.ndarray, unsure: np.ndarray | None = None) -> dict:
    """Accuracy, per-digit accuracy and the most common confusions of `predicted` against `truth` (an image
    refused is REFUSED: it counts as a miss, not as a confusion); with `unsure`, how the "not sure" flag
    splits the answers: the share flagged, the accuracy when sure and the share of sure answers that are wrong."""
    refused = predicted == REFUSED
    matrix = confusion_matrix(truth, predicted, labels=list(range(10)))  # refused images fall outside it
    per_digit = {str(d): (float((predicted[truth == d] == d).mean()) if (truth == d).any() else None)
                 for d in range(10)}
    confusions = [(int(t), int(p), int(matrix[t, p])) for t in range(10) for p in range(10) if t != p and matrix[t, p]]
    confusions.sort(key=lambda item: -item[2])
    right = int((truth == predicted).sum())
    interval = stats.binomtest(right, len(truth)).proportion_ci(0.95, method="wilson") if len(truth) else None
    report = {"count": int(len(truth)), "accuracy": float(accuracy_score(truth, predicted)), "per_digit": per_digit,
              # Wilson's 95% interval of the accuracy: how far another draw of as many such images may land.
              "accuracy_interval": None if interval is None else [float(interval.low), float(interval.high)],
              "confusions": [{"true": t, "read": p, "count": n} for t, p, n in confusions[:5]],
              "confusion_matrix": matrix.tolist(),  # rows: the true digit; columns: the digit read
              "refused_share": float(refused.mean())}
    if unsure is not None:
        sure = ~unsure & ~refused
        right_when_sure = float((truth[sure] == predicted[sure]).mean()) if sure.any() else None
        report.update(unsure_share=float((unsure & ~refused).mean()), accuracy_when_sure=right_when_sure,
                      sure_wrong_share=None if right_when_sure is None else 1 - right_when_sure)
    return report


def format_report(report: dict) -> list[str]:
    lines = [f"accuracy {report['accuracy']:.4f} ({round(report['accuracy'] * report['count'])}/{report['count']})"]
    if report.get("accuracy_interval"):
        low, high = report["accuracy_interval"]
        lines[0] += f", 95% interval [{low:.4f}, {high:.4f}]"
    if report["refused_share"]:
        lines[0] += f"; {report['refused_share']:.1%} refused (no digit, or more than one), counted as misses"
    lines.append("per digit: " + "  ".join(f"{d}: {'-' if a is None else f'{a:.2f}'}"
                                           for d, a in report["per_digit"].items()))
    if report["confusions"]:
        lines.append("most common misreadings: " + ", ".join(f"{c['true']} read as {c['read']} ({c['count']})"
                                                             for c in report["confusions"]))
    if "unsure_share" in report:
        sure = report["accuracy_when_sure"]
        lines.append(f"not sure on {report['unsure_share']:.1%}; accuracy of the rest "
                     f"{'-' if sure is None else f'{sure:.4f}'}")
    return lines


# ---------------------------------------------------------------- scans: scikit-learn's digits as photographed paper

def scan_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 8x8 scikit-learn digit (0..16) as a phone photo of ink on paper."""
    height = int(rng.integers(60, 200))  # the digit's height on the photo
    width_share = rng.uniform(0.9, 1.1)  # the 8x8 cells are square: the aspect kept, give or take a camera's angle
    ink = Image.fromarray((digit / 16 * 255).astype(np.uint8)).resize(
        (max(8, round(height * width_share)), height), Image.BICUBIC)
    page_w, page_h = int(rng.integers(height + 40, 3 * height + 120)), int(rng.integers(height + 30, 2 * height + 120))
    left, top = int(rng.integers(5, page_w - ink.width - 5)), int(rng.integers(5, page_h - ink.height - 5))
    darkness = np.zeros((page_h, page_w), dtype=np.float32)
    darkness[top:top + ink.height, left:left + ink.width] = np.asarray(ink, dtype=np.float32) / 255
    paper, pen = rng.uniform(190, 240), rng.uniform(20, 90)
    pixels = paper - (paper - pen) * darkness
    light = (np.linspace(rng.uniform(0.65, 1.0), 1.0, page_w)[None, :]
             * np.linspace(1.0, rng.uniform(0.75, 1.0), page_h)[:, None])
    if rng.random() < 0.5:
        light = light[:, ::-1]
    image = Image.fromarray(np.clip(pixels * light, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(2, 8), (page_h, page_w))
    gray = np.clip(noisy, 0, 255)
    tint = rng.uniform([0.95, 0.92, 0.82], [1.0, 1.0, 1.0])  # warm indoor light
    photo = Image.fromarray(np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=int(rng.integers(55, 92)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def write_scan_set(out: Path, seed: int = 0) -> dict[str, int]:
    """scikit-learn's 1,797 digits as photos in out/tune and out/report (seeded); returns the counts."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    split = split_names(len(digits.target), seed)
    labels: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    for index, (image, target) in enumerate(zip(digits.images, digits.target)):
        name = SPLITS[split[index]]
        file = f"scan_{index:04d}.jpg"
        (out / name).mkdir(parents=True, exist_ok=True)
        photo = scan_photo(image, rng)
        photo.save(out / name / file, format="JPEG", quality=95)
        labels[name][file] = int(target)
    for name in SPLITS:
        write_labels(out / name, labels[name])
    return {name: len(labels[name]) for name in SPLITS}


# ---------------------------------------------------------------- canvas: stroke paths of digits as people write them

# Each digit's ways of being written: lists of strokes, points in a unit box (x right, y down).
DIGIT_STYLES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [[arc(0.5, 0.5, 0.38, 0.47, -10, 365, 28)], [arc(0.5, 0.5, 0.3, 0.47, 10, 380, 28)]],
    1: [[polyline((0.5, 0.0), (0.5, 1.0))],
        [polyline((0.25, 0.22), (0.55, 0.0), (0.55, 1.0))],  # with a flag
        [polyline((0.28, 0.2), (0.55, 0.0), (0.55, 1.0)), polyline((0.3, 1.0), (0.8, 1.0))],  # flag and base
        [polyline((0.1, 0.38), (0.6, 0.0), (0.6, 1.0))],  # a long lead-in (European)
        [arc(0.47, 0.12, 0.08, 0.1, 240, 360, 6) + polyline((0.55, 0.02), (0.52, 1.0))],  # a short curled lead-in
        [polyline((0.0, 0.3), (0.7, 0.0), (0.6, 1.0))]],  # a long, flat lead-in (read as 7 when it runs level)
    2: [[arc(0.5, 0.3, 0.33, 0.3, -80, 120, 12) + polyline((0.72, 0.5), (0.12, 1.0), (0.9, 1.0))],
        [arc(0.48, 0.28, 0.32, 0.28, -70, 100, 12) + polyline((0.78, 0.35), (0.15, 0.95))
         + arc(0.3, 0.9, 0.12, 0.1, 200, 360, 6) + polyline((0.3, 0.8), (0.92, 0.98))]],
    3: [[arc(0.48, 0.26, 0.3, 0.25, -70, 180, 12) + arc(0.48, 0.74, 0.34, 0.26, 0, 240, 12)],
        [polyline((0.15, 0.02), (0.85, 0.02), (0.42, 0.42)) + arc(0.48, 0.7, 0.36, 0.3, -20, 230, 12)]],
    4: [[polyline((0.62, 0.0), (0.1, 0.68), (0.92, 0.68)), polyline((0.66, 0.3), (0.66, 1.0))],
        [polyline((0.15, 0.0), (0.1, 0.55), (0.88, 0.55)), polyline((0.68, 0.05), (0.68, 1.0))]],  # open top
    5: [[polyline((0.25, 0.02), (0.2, 0.42)) + arc(0.48, 0.67, 0.36, 0.32, -60, 220, 14),
         polyline((0.24, 0.02), (0.85, 0.02))],
        [polyline((0.85, 0.0), (0.28, 0.0), (0.22, 0.45)) + arc(0.5, 0.68, 0.34, 0.3, -55, 225, 14)]],
    6: [[polyline((0.78, 0.02), (0.35, 0.3), (0.14, 0.65)) + arc(0.5, 0.7, 0.36, 0.28, 250, 610, 20)],
        [polyline((0.7, 0.0), (0.3, 0.45), (0.16, 0.72)) + arc(0.48, 0.72, 0.32, 0.27, 240, 600, 20)],
        # a curled top, and a small loop low on a long stem
        [arc(0.62, 0.14, 0.16, 0.12, 60, -60, 6) + polyline((0.5, 0.03), (0.25, 0.35), (0.15, 0.7))
         + arc(0.47, 0.72, 0.33, 0.26, 250, 610, 20)],
        [polyline((0.68, 0.0), (0.4, 0.3), (0.22, 0.72)) + arc(0.45, 0.8, 0.24, 0.19, 250, 610, 18)],
        # a big loop up to the middle on a short stem, and a top hooked back over the loop (read as 0 and 8
        # by a model trained on MNIST alone: issue #30)
        [polyline((0.6, 0.0), (0.25, 0.4), (0.15, 0.6)) + arc(0.5, 0.62, 0.36, 0.36, 250, 610, 20)],
        [arc(0.6, 0.16, 0.2, 0.14, 90, -80, 8) + polyline((0.45, 0.03), (0.2, 0.4), (0.14, 0.68))
         + arc(0.5, 0.68, 0.36, 0.3, 250, 610, 20)]],
    7: [[polyline((0.08, 0.02), (0.92, 0.02), (0.4, 1.0))],
        [polyline((0.08, 0.02), (0.92, 0.02), (0.42, 1.0)), polyline((0.3, 0.52), (0.8, 0.52))],  # crossbar
        [polyline((0.1, 0.18), (0.1, 0.02), (0.9, 0.02), (0.45, 1.0))]],
    8: [[arc(0.5, 0.26, 0.28, 0.25, 160, -160, 16) + arc(0.5, 0.74, 0.34, 0.26, 20, 380, 18)],
        [arc(0.5, 0.25, 0.3, 0.24, 0, 360, 16), arc(0.5, 0.74, 0.36, 0.26, 0, 360, 18)]],
    9: [[arc(0.45, 0.3, 0.33, 0.28, 90, 455, 18) + polyline((0.78, 0.3), (0.72, 1.0))],
        [arc(0.5, 0.3, 0.32, 0.27, 70, 440, 18) + polyline((0.82, 0.32), (0.8, 0.8)) + arc(0.55, 0.8, 0.25, 0.2, 90, 200, 6)],
        # a straight stem from a round head, and a small head on a long, bent stem
        [arc(0.48, 0.28, 0.34, 0.26, 90, 450, 18) + polyline((0.82, 0.28), (0.82, 1.0))],
        [arc(0.52, 0.22, 0.28, 0.2, 90, 450, 16) + polyline((0.8, 0.22), (0.7, 0.75), (0.45, 1.0))],
        # the tail curled back to the left under the head (read as 8 by a model trained on MNIST alone)
        [arc(0.5, 0.28, 0.32, 0.26, 90, 455, 18) + polyline((0.82, 0.3), (0.8, 0.8))
         + arc(0.55, 0.8, 0.26, 0.2, 90, 240, 8)]],
}


def digit_strokes(digit: int, rng: np.random.Generator, canvas: int = 280) -> tuple[list[list[tuple[float, float]]], int]:
    """(strokes in canvas pixels from its centre, pen width) of one `digit` as a person might draw it.

    A style of the digit, then its height (30-85% of the canvas), width, slant (-25..+25 degrees),
    position, a little wobble of every point, and a pen of 6 to 36 px (at most 14% of the height).
    """
    styles = DIGIT_STYLES[digit]
    strokes = styles[int(rng.integers(len(styles)))]
    height = canvas * rng.uniform(0.3, 0.85)
    width = height * rng.uniform(0.5, 0.85) * (0.4 if digit == 1 else 1.0)
    slant = np.tan(np.radians(rng.uniform(-25, 25)))
    room_x, room_y = (canvas - width) / 2 - 15, (canvas - height) / 2 - 15
    centre = (rng.uniform(-1, 1) * max(room_x, 0) * 0.8, rng.uniform(-1, 1) * max(room_y, 0) * 0.8)
    drawn = [[(float(np.clip(x, -canvas / 2 + 2, canvas / 2 - 2)), float(np.clip(y, -canvas / 2 + 2, canvas / 2 - 2)))
              for x, y in stroke] for stroke in placed(strokes, centre, height, width, slant, height * 0.015, rng)]
    # A pen of 6 to 36 px, but not so wide for a small digit that its loops fill up (no one could read it).
    return drawn, int(rng.integers(6, max(7, min(37, round(height * 0.14)))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the photographed-scans set (scikit-learn's digits).")
    parser.add_argument("set", choices=("scans",), help="which set to write")
    parser.add_argument("--out", default=f"{HANDWRITING_SETS}/scans", help=f"folder (default {HANDWRITING_SETS}/scans)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of placement, light, blur, noise, JPEG")
    args = parser.parse_args(argv)
    counts = write_scan_set(Path(args.out), args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
