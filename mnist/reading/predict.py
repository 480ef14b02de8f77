"""Read a user's own handwritten digits: photos, scans, drawings -> MNIST-style 28x28 -> CCNet.

    python -m mnist.reading.predict my_digits/ [--checkpoint FILE] [--json] [--sheet sheet.png]
    python -m mnist.reading.predict my_digits/ --labels my_digits/labels.csv      # how well it reads a labelled set

Every image goes through mnist.reading.preprocess (the one preprocessing the page and every evaluation
share) and the model's calibrated probabilities (mnist.calibration): when the top probability
is below the threshold chosen on validation, the answer says "not sure: 4 or 9".
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mnist.atomic import json_text
from mnist.checkpoint import load_checkpoint
from mnist.data import device_images
from mnist.device import DEVICE_CHOICES, pick_device
from mnist.errors import UserError, run_cli
from mnist.layout import BEST, BEST_PT, ENSEMBLE_PT, MODEL_PT, PREDICT_MISREAD_PNG, RESULTS, TRAIN_RUNS, served_model
from mnist.model import model_from_checkpoint, predict_logits
from mnist.reading.export import ExportedModel, batched_logits, format_of
from mnist.reading.handwriting import REFUSED, format_report, read_labels, reading_report
from mnist.reading.preprocess import WORKING_SIZE, ImageError, Stages, Steps, preprocess_stages
from mnist.reading.shipped import MAKER as SHIPPED_MAKER, NAME, is_shipped, shipped_path

MAX_SIDE = 2048  # larger images are scaled down on opening: the digit ends up 20 px anyway
# Larger images are refused before they are decoded: a 12000x12000 PNG of a few hundred KB would take
# over a GB to decode. 70 MP holds an 8000x8000 scan and any phone's photo.
MAX_PIXELS = 70_000_000


def read_image(source: Path | BinaryIO, name: str) -> Image.Image:
    """An image from a file or a file-like object (an upload), bounded to MAX_SIDE; ImageError naming `name`."""
    try:
        with Image.open(source) as opened:
            if opened.width * opened.height > MAX_PIXELS:  # read from the header: nothing decoded yet
                raise ImageError(f"{name}: {opened.width}x{opened.height} px is over the {MAX_PIXELS / 1e6:.0f} "
                                 "megapixels read here (a digit needs far fewer: scale it down)")
            # A digit needs far fewer pixels: bound the work and memory on huge files (a JPEG decodes
            # straight at a fraction of its size; other formats are scaled to MAX_SIDE once).
            opened.draft(opened.mode, (WORKING_SIZE * 2, WORKING_SIZE * 2))  # still twice what preprocessing uses
            # Shrunk in place before it is copied: one full-size decode in memory at a time, not two.
            opened.thumbnail((MAX_SIDE, MAX_SIDE))
            image = opened.copy()
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too large to read safely (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                         "megapixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:  # PIL raises all four on bad files
        reason = "not an image Pillow can read" if isinstance(error, UnidentifiedImageError) else str(error)
        raise ImageError(f"{name}: {reason}") from None
    return image


def load_stages(source: Path | BinaryIO, name: str | None = None, steps: Steps = Steps()) -> Stages:
    """Every preprocessing stage of an image file or upload, or ImageError naming it."""
    name = str(source) if name is None else name
    image = read_image(source, name)
    try:
        return preprocess_stages(image, steps)
    except ImageError as error:
        raise ImageError(f"{name}: {error}", error.refused) from None
    except (ValueError, OSError) as error:  # a file Pillow opened but cannot decode to the end
        raise ImageError(f"{name}: cannot decode ({error})") from None


def load_image(source: Path | BinaryIO, name: str | None = None, steps: Steps = Steps()) -> tuple[Image.Image, np.ndarray]:
    """(original as read, upright; preprocessed 28x28) of an image file or upload, or ImageError naming it."""
    stages = load_stages(source, name, steps)
    return stages.original, stages.digit


@dataclass
class Prediction:
    labels: np.ndarray  # (N,) predicted digits
    probabilities: np.ndarray  # (N, 10) softmax of the calibrated logits
    unsure: np.ndarray  # (N,) the top probability is below the checkpoint's threshold

    def describe(self, index: int) -> str:
        """'7', or 'not sure: 4 or 9' (the two likeliest digits) when unsure."""
        if not self.unsure[index]:
            return str(int(self.labels[index]))
        first, second = np.argsort(self.probabilities[index])[::-1][:2]
        return f"not sure: {first} or {second}"


class Predictor:
    """A trained CCNet ready to classify 28x28 MNIST-style digits (see mnist.reading.preprocess), calibrated.

    `checkpoint` is a checkpoint (.pt) or a file written by mnist.reading.export (.onnx through onnxruntime,
    .ts through torch.jit.load), whose metadata holds the same calibration.
    A checkpoint without calibration (trained before it existed, or on every training image)
    answers with temperature 1 and is never "not sure".
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.device = pick_device(device)
        self.exported = ExportedModel(Path(checkpoint)) if format_of(Path(checkpoint)) else None
        if self.exported is not None:
            self.temperature, self.unsure_below = self.exported.temperature, self.exported.unsure_below
            self.description = f"an exported model; not sure below {self.unsure_below:.3f}"
        else:
            state = load_checkpoint(checkpoint)  # its calibration checked there
            self.model = model_from_checkpoint(state, self.device)
            calibration = state.get("calibration") or {"temperature": 1.0, "unsure_below": 0.0}
            self.temperature, self.unsure_below = calibration["temperature"], calibration["unsure_below"]
            self.description = describe_model(state)

    def logits(self, digits: np.ndarray, batch_size: int) -> torch.Tensor:
        if self.exported is not None:
            return torch.from_numpy(batched_logits(self.exported.logits, digits, batch_size))
        return predict_logits(self.model, device_images(digits, self.device), batch_size=batch_size)

    def predict(self, digits: np.ndarray | list[np.ndarray], batch_size: int = 512) -> Prediction:
        logits = self.logits(np.stack(digits), batch_size) / self.temperature
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        return Prediction(probabilities.argmax(axis=1), probabilities, probabilities.max(axis=1) < self.unsure_below)


def describe_model(state: dict) -> str:
    """What a checkpoint is and why it is served, in a line: predict prints it, the draw page shows it."""
    calibration = state.get("calibration")
    if state.get("made_by") == SHIPPED_MAKER:
        what = (f"{state['members']} CCNets trained on MNIST with corrupted digits and people's styles, shipped with "
                "the package (docs/reader.md: its figures on every set)")
    elif state.get("members", 1) > 1:
        what = (f"the winner's {state['members']} seeds as one ensemble: measured by the field report, it reads "
                "MNIST's test images and every real set at least as well as one model (docs/reading.md)")
    else:
        what = "one model"
    if not calibration:
        return f"{what}; uncalibrated, never 'not sure'"
    fitted_on = calibration.get("fitted_on")
    fitted_on = ", ".join(map(str, fitted_on)) if isinstance(fitted_on, dict) and fitted_on else "mnist validation"
    return f"{what}; 'not sure' below {calibration['unsure_below']:.3f}, fitted on {fitted_on}"


def chosen_model(checkpoint: str | None) -> Path:
    """The model a command reads with: the file given, else the shipped reader (its checksum verified)."""
    return Path(checkpoint) if checkpoint else shipped_path()


def model_name(path: Path) -> str:
    """What reads, as every command and the page say it: "the shipped reader v1", or the file."""
    return NAME if is_shipped(path) else str(path)


def newest_trained_checkpoint(results: Path = Path(RESULTS)) -> Path:
    """The newest retrained search winner (results/*/best/: the model it serves, its ensemble.pt, else its
    model.pt), else the newest training run's best.pt."""
    def newest_first(paths: list[Path]) -> list[Path]:
        return sorted(paths, key=lambda path: path.stat().st_mtime, reverse=True)

    winners = [path for model in newest_first(list(results.glob(f"*/{BEST}/{MODEL_PT}")))
               for path in (served_model(model.parent), model) if path.exists()]
    for path in dict.fromkeys(winners + newest_first(list(results.glob(f"{TRAIN_RUNS}/*/{BEST_PT}")))):
        try:
            load_checkpoint(path)
        except UserError as error:  # a diverged or broken one is passed over, and said so
            print(f"note: skipping {error}", file=sys.stderr)
            continue
        return path
    raise UserError(f"no checkpoint under {results}/ (no */{BEST}/{ENSEMBLE_PT} or {MODEL_PT}, no {TRAIN_RUNS}/*/{BEST_PT}): "
                    "train one with `python -m mnist.train` or pass --checkpoint")


# What the message about an empty folder lists (any format Pillow reads is taken).
PREFERRED = {".png", ".jpg", ".jpeg"}


def image_files(paths: list[str]) -> list[Path]:
    """The files named, and the image files inside the folders named, in order."""
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
            if not inside:  # a wrong folder, or photos not copied yet: an answer without them would mislead
                raise UserError(f"{path}: a folder with no image files in it ({', '.join(sorted(PREFERRED))} ...)")
            files += inside
        else:
            files.append(path)
    return files


def top_three(probabilities: np.ndarray) -> list[dict]:
    """The three likeliest digits with their probabilities, likeliest first."""
    return [{"digit": int(digit), "probability": round(float(probabilities[digit]), 4)}
            for digit in np.argsort(probabilities)[::-1][:3]]


def format_line(path: Path, prediction: Prediction, index: int) -> str:
    top = top_three(prediction.probabilities[index])
    return (f"{path}: {prediction.describe(index)}  ("
            + ", ".join(f"{t['digit']}: {t['probability']:.3f}" for t in top) + ")")


def answer(prediction: Prediction, index: int) -> dict:
    """One image's answer as JSON: the digit, whether the model is sure, top 3, all ten probabilities."""
    top = top_three(prediction.probabilities[index])
    return {"digit": top[0]["digit"], "unsure": bool(prediction.unsure[index]),
            "message": prediction.describe(index), "top3": top,
            "probabilities": [round(float(p), 6) for p in prediction.probabilities[index]]}


def write_sheet(originals: list[Image.Image], digits: list[np.ndarray], names: list[str], prediction: Prediction,
                out: Path) -> None:
    """Each input beside its 28x28 version, titled with the prediction and its probability."""
    from mnist.plots import drawable, plt, save_figure

    if not digits:
        return
    pairs_per_row = min(5, max(1, len(digits)))
    rows = -(-len(digits) // pairs_per_row)
    figure, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(2.1 * 2 * pairs_per_row, 2.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for index, (original, digit, name) in enumerate(zip(originals, digits, names)):
        label = prediction.labels[index]
        source, result = axes[index // pairs_per_row, 2 * (index % pairs_per_row):][:2]
        source.imshow(original.convert("RGB"))
        source.set_title(drawable(name), fontsize=8)
        result.imshow(digit, cmap="gray", vmin=0, vmax=255)
        unsure = "?" if prediction.unsure[index] else ""
        result.set_title(f"→ {label}{unsure} ({prediction.probabilities[index, label]:.0%})", fontsize=10)
    try:
        save_figure(figure, out)
    except OSError as error:
        raise UserError(f"{out}: cannot write the sheet ({error.strerror or error})") from None


def labelled(files: list[Path], labels_file: Path) -> tuple[list[Path], np.ndarray]:
    """The files that `labels_file` labels (by path relative to its folder, else by name) and their digits."""
    labels = read_labels(labels_file)
    kept, truth = [], []
    for path in files:
        try:
            key = str(path.resolve().relative_to(labels_file.resolve().parent))
        except ValueError:
            key = path.name
        digit = labels.get(key, labels.get(path.name))
        if digit is not None:
            kept.append(path)
            truth.append(digit)
    if not kept:
        raise UserError(f"{labels_file}: labels none of the {len(files)} image(s) given")
    if len(kept) < len(files):
        print(f"note: {len(files) - len(kept)} image(s) without a label in {labels_file} are left out",
              file=sys.stderr)
    return kept, np.array(truth, dtype=np.int64)


def every_answer(prediction: Prediction, read: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labels, "not sure" flags and calibrated confidence of all `count` images, of which `prediction`
    answered those `read` (indices or a mask): REFUSED, not unsure, confidence NaN for the others (no digit, ...)."""
    labels, unsure, confidence = np.full(count, REFUSED), np.zeros(count, dtype=bool), np.full(count, np.nan)
    labels[read], unsure[read] = prediction.labels, prediction.unsure
    confidence[read] = prediction.probabilities.max(axis=1)
    return labels, unsure, confidence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recognise your own handwritten digit images with a trained CCNet.")
    parser.add_argument("paths", nargs="+", help="image files (PNG, JPEG, BMP, ...) or folders of them")
    parser.add_argument("--checkpoint", default=None, help="model: a checkpoint or an exported .onnx/.ts (default: the "
                                                           "shipped reader; yours: results/NAME/best/ensemble.pt)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image instead of text")
    parser.add_argument("--sheet", default=None, metavar="OUT.png", help="contact sheet: input, 28x28, prediction")
    parser.add_argument("--labels", default=None, metavar="FILE.csv",
                        help="CSV with columns file,label: print accuracy, per-digit accuracy, the common misreadings")
    parser.add_argument("--misread", default=PREDICT_MISREAD_PNG, metavar="OUT.png",
                        help="with --labels: sheet of the misread images (default results/predict/misread.png)")
    parser.add_argument("--steps", default="all", help="preprocessing steps: all (default), before, none, or the "
                                                       "ones to turn off: -deskew,-stroke (see mnist.reading.preprocess)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                        help="cpu (default: a few images need no GPU, and start faster without one), cuda or auto")
    args = parser.parse_args(argv)
    steps = Steps.parse(args.steps)
    files = image_files(args.paths)  # the user's inputs first: loading the model takes seconds
    if not files:
        raise UserError(f"no image files in {' '.join(args.paths)}")
    truth = None
    if args.labels:
        files, truth = labelled(files, Path(args.labels))
    checkpoint = chosen_model(args.checkpoint)
    predictor = Predictor(checkpoint, args.device)  # a bad checkpoint stops here, before any image is read
    print(f"model: {model_name(checkpoint)} ({predictor.description})", file=sys.stderr)
    loaded, read, failures = [], [], 0
    for index, path in enumerate(files):
        try:
            loaded.append((path, *load_image(path, steps=steps)))
            read.append(index)
        except ImageError as error:
            print(f"error: {error}", file=sys.stderr)
            if args.json:  # a program reading the lines learns why, never a digit
                print(json_text({"file": str(path), "error": str(error), "refused": error.refused}))
            failures += 1
    if not loaded:
        return 2
    paths, originals, digits = zip(*loaded)
    prediction = predictor.predict(list(digits))
    if truth is None or args.json:
        for index, path in enumerate(paths):
            print(json_text({"file": str(path), **answer(prediction, index)}) if args.json
                  else format_line(path, prediction, index))
    if args.sheet:
        write_sheet(list(originals), list(digits), [p.name for p in paths], prediction, Path(args.sheet))
        print(f"contact sheet: {args.sheet}", file=sys.stderr)
    if truth is not None:
        labels, unsure, _ = every_answer(prediction, np.array(read, dtype=int), len(files))
        for line in format_report(reading_report(truth, labels, unsure)):
            print(line)
        truth = truth[read]
        wrong = np.nonzero(prediction.labels != truth)[0]
        misread = Prediction(prediction.labels[wrong], prediction.probabilities[wrong], prediction.unsure[wrong])
        write_sheet([originals[i] for i in wrong], [digits[i] for i in wrong],
                    [f"{paths[i].name} (is {truth[i]})" for i in wrong], misread, Path(args.misread))
        if len(wrong):
            print(f"misread images: {args.misread}", file=sys.stderr)
    return 2 if failures else 0  # bad input, as every CLI here: exit 2 (the other images were read)


if __name__ == "__main__":
    run_cli(main)
