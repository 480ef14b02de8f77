"""Read a user's own handwritten digits: photos, scans, drawings -> MNIST-style 28x28 -> CCNet.

    python -m mnist.predict my_digits/ [--checkpoint FILE] [--json] [--sheet sheet.png]

Preprocessing follows how MNIST itself was made, so a user's image looks like the training
data: grayscale; dark ink on a light page inverted to light ink on black; the background
cut by an Otsu threshold while the ink keeps its gray levels; cropped to the ink; the
longer side scaled to 20 px (anti-aliased, aspect kept); pasted into 28x28 with the ink's
centre of mass at the centre.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFilter, UnidentifiedImageError

from mnist.checkpoint import load_checkpoint
from mnist.data import device_images
from mnist.errors import UserError, run_cli
from mnist.evaluate import model_from_checkpoint
from mnist.model import predict_logits

DIGIT_BOX = 20  # MNIST: the digit's longer side is 20 px...
CANVAS = 28  # ...inside a 28x28 image, centred by its centre of mass
MIN_SIDE = 8  # smaller images cannot hold a legible digit
MAX_SIDE = 2048  # larger images are scaled down on opening: the digit ends up 20 px anyway
WORKING_SIZE = 512  # larger photos are scaled down to this longer side first


class ImageError(UserError):
    """One input image cannot be read as a digit; the other images go on."""


def otsu_threshold(gray: np.ndarray) -> float:
    """The gray level that best separates two classes of pixels (Otsu, 1979)."""
    histogram = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(histogram * levels) / np.maximum(weight_low, 1)
    mean_high = (np.sum(histogram * levels) - np.cumsum(histogram * levels)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between[:-1]))


def to_grayscale(image: Image.Image) -> np.ndarray:
    """uint8 gray; transparent pixels (drawings saved from paint programs) become white paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def flatten_lighting(gray: np.ndarray) -> np.ndarray:
    """Divide a light page by its own smooth brightness, so shadows and uneven light do not pass for ink."""
    size = max(3, min(gray.shape) // 8) | 1  # wider than a pen stroke, odd for the filter
    page = Image.fromarray(gray).filter(ImageFilter.MaxFilter(size)).filter(ImageFilter.GaussianBlur(size))
    return np.clip(gray / np.maximum(np.asarray(page, dtype=np.float32), 1) * 255, 0, 255).astype(np.uint8)


def preprocess(image: Image.Image) -> np.ndarray:
    """A user's digit image -> a 28x28 uint8 MNIST-style digit (white ink on black)."""
    gray = to_grayscale(image)
    if min(gray.shape) < MIN_SIDE:
        raise ImageError(f"image too small to hold a digit ({gray.shape[1]}x{gray.shape[0]} px, "
                         f"needs at least {MIN_SIDE}x{MIN_SIDE})")
    if max(gray.shape) > WORKING_SIZE:  # phone photos: a digit needs far fewer pixels, and filters get slow
        scale = WORKING_SIZE / max(gray.shape)
        size = (max(MIN_SIDE, round(gray.shape[1] * scale)), max(MIN_SIDE, round(gray.shape[0] * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.LANCZOS))
    if min(gray.shape) >= 2 * CANVAS:  # sensor noise and paper grain: specks that would widen the crop
        gray = np.asarray(Image.fromarray(gray).filter(ImageFilter.MedianFilter(3)))
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # a light page: even out its light, make the ink the bright part, as in MNIST
        gray = 255 - (flatten_lighting(gray) if min(gray.shape) >= 2 * CANVAS else gray)
    if int(gray.max()) - int(gray.min()) < 32:
        raise ImageError("no ink found (the image is nearly uniform)")
    threshold = otsu_threshold(gray)
    ink = np.where(gray > threshold, gray.astype(np.float32) - threshold, 0.0)
    rows, columns = np.nonzero(ink)
    ink = ink[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    ink = ink / ink.max() * 255  # the ink's gray levels, stretched to the full range
    height, width = ink.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, Image.LANCZOS))
    digit = np.clip(digit, 0, 255)
    return center_by_mass(digit)


def center_by_mass(digit: np.ndarray) -> np.ndarray:
    """Paste `digit` (at most 20x20) into 28x28 so that its centre of mass is at the centre."""
    total = digit.sum()
    rows, columns = np.indices(digit.shape)
    center_row, center_column = (rows * digit).sum() / total, (columns * digit).sum() / total
    top = int(np.clip(round(CANVAS / 2 - 0.5 - center_row), 0, CANVAS - digit.shape[0]))
    left = int(np.clip(round(CANVAS / 2 - 0.5 - center_column), 0, CANVAS - digit.shape[1]))
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.round(canvas).astype(np.uint8)


def read_image(source: Path | BinaryIO, name: str) -> Image.Image:
    """An image from a file or a file-like object (an upload), bounded to MAX_SIDE; ImageError naming `name`."""
    try:
        with Image.open(source) as opened:
            # A digit needs no more than MAX_SIDE pixels: bound the work and memory on huge files
            # (JPEG decodes straight at a fraction of its size; other formats are scaled once).
            opened.draft(opened.mode, (MAX_SIDE, MAX_SIDE))
            image = opened.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too large to read safely (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                         "megapixels)") from None
    except (UnidentifiedImageError, OSError) as error:
        reason = "not an image Pillow can read" if isinstance(error, UnidentifiedImageError) else str(error)
        raise ImageError(f"{name}: {reason}") from None
    return image


def load_image(source: Path | BinaryIO, name: str | None = None) -> tuple[Image.Image, np.ndarray]:
    """(original, preprocessed 28x28) of an image file or upload, or ImageError naming it."""
    name = str(source) if name is None else name
    image = read_image(source, name)
    try:
        return image, preprocess(image)
    except ImageError as error:
        raise ImageError(f"{name}: {error}") from None


@dataclass
class Prediction:
    labels: np.ndarray  # (N,) predicted digits
    probabilities: np.ndarray  # (N, 10) softmax


class Predictor:
    """A trained CCNet ready to classify 28x28 MNIST-style digits (see `preprocess`)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model_from_checkpoint(load_checkpoint(checkpoint), self.device)

    def predict(self, digits: np.ndarray | list[np.ndarray], batch_size: int = 512) -> Prediction:
        batch = device_images(np.stack(digits), self.device)
        probabilities = torch.softmax(predict_logits(self.model, batch, batch_size=batch_size), dim=1).cpu().numpy()
        return Prediction(probabilities.argmax(axis=1), probabilities)


def default_checkpoint(results: Path = Path("results")) -> Path:
    """The newest retrained search winner (results/*/best/model.pt), else the newest training run's best.pt."""
    for pattern in ("*/best/model.pt", "train/*/best.pt"):
        found = sorted(results.glob(pattern), key=lambda path: path.stat().st_mtime)
        if found:
            return found[-1]
    raise UserError(f"no checkpoint under {results}/ (no */best/model.pt, no train/*/best.pt): "
                    "train one with `python -m mnist.train` or pass --checkpoint")


def image_files(paths: list[str]) -> list[Path]:
    """The files named, and the image files inside the folders named, in order."""
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
        else:
            files.append(path)
    return files


def top_three(probabilities: np.ndarray) -> list[dict]:
    """The three likeliest digits with their probabilities, likeliest first."""
    return [{"digit": int(digit), "probability": round(float(probabilities[digit]), 4)}
            for digit in np.argsort(probabilities)[::-1][:3]]


def format_line(path: Path, probabilities: np.ndarray) -> str:
    top = top_three(probabilities)
    return f"{path}: {top[0]['digit']}  (" + ", ".join(f"{t['digit']}: {t['probability']:.3f}" for t in top) + ")"


def write_sheet(originals: list[Image.Image], digits: list[np.ndarray], names: list[str], prediction: Prediction,
                out: Path) -> None:
    """Each input beside its 28x28 version, titled with the prediction and its probability."""
    from mnist.plots import plt, save_figure

    pairs_per_row = min(5, max(1, len(digits)))
    rows = -(-len(digits) // pairs_per_row)
    figure, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.1 * 2 * pairs_per_row, 2.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for index, (original, digit, name) in enumerate(zip(originals, digits, names)):
        label = prediction.labels[index]
        source, result = axes[index // pairs_per_row, 2 * (index % pairs_per_row):][:2]
        source.imshow(original.convert("RGB"))
        source.set_title(name, fontsize=8)
        result.imshow(digit, cmap="gray", vmin=0, vmax=255)
        result.set_title(f"→ {label} ({prediction.probabilities[index, label]:.0%})", fontsize=10)
    save_figure(figure, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recognise your own handwritten digit images with a trained CCNet.")
    parser.add_argument("paths", nargs="+", help="image files (PNG, JPEG, BMP, ...) or folders of them")
    parser.add_argument("--checkpoint", default=None, help="model (default: newest results/*/best/model.pt, "
                                                           "else newest results/train/*/best.pt)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    parser.add_argument("--sheet", default=None, metavar="OUT.png", help="contact sheet: input, 28x28, prediction")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    predictor = Predictor(checkpoint, args.device)  # a bad checkpoint stops here, before any image
    print(f"checkpoint: {checkpoint}", file=sys.stderr)
    files = image_files(args.paths)
    if not files:
        raise UserError(f"no image files in {' '.join(args.paths)}")
    loaded, failures = [], 0
    for path in files:
        try:
            loaded.append((path, *load_image(path)))
        except ImageError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    if loaded:
        paths, originals, digits = zip(*loaded)
        prediction = predictor.predict(list(digits))
        for index, path in enumerate(paths):
            probabilities = prediction.probabilities[index]
            if args.json:
                top = top_three(probabilities)
                print(json.dumps({"file": str(path), "digit": top[0]["digit"], "top3": top}))
            else:
                print(format_line(path, probabilities))
        if args.sheet:
            write_sheet(list(originals), list(digits), [p.name for p in paths], prediction, Path(args.sheet))
            print(f"contact sheet: {args.sheet}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    run_cli(main)
