"""How models read real handwriting beside MNIST: the table README shows, from one command.

    python -m mnist.reading.field_report CHECKPOINT [CHECKPOINT ...] [--sets results/handwriting] [--split report]

For each checkpoint: MNIST test accuracy, then the reading rate of every real set's `report`
half (mnist.reading.handwriting; the scans are written first when missing) with the preprocessing as
it was before its new steps ("before") and as it is now ("now"), and the share the calibrated
model is not sure of. One row per checkpoint, as Markdown; results/field_report.json keeps it all.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mnist.atomic import write_json_atomic
from mnist.checkpoint import load_checkpoint
from mnist.data import load_mnist
from mnist.device import pick_device
from mnist.errors import UserError, run_cli
from mnist.evaluate import evaluate_model
from mnist.layout import FIELD_REPORT_JSON, HANDWRITING_SETS
from mnist.model import model_from_checkpoint
from mnist.reading.handwriting import CANVAS_SET, LABELS_FILE, read_labels, reading_report, write_scan_set
from mnist.reading.predict import ImageError, Predictor, load_image
from mnist.reading.preprocess import Steps

PREPROCESSING = {"before": Steps.before(), "now": Steps()}


def set_folders(sets: Path) -> dict[str, Path]:
    """The real sets: the scans (written under `sets` when missing) and the committed canvas drawings."""
    scans = sets / "scans"
    if not (scans / "report" / LABELS_FILE).exists():
        write_scan_set(scans)
    return {"scans": scans, "canvas": CANVAS_SET}


def read_set(predictor: Predictor, folder: Path, steps: Steps) -> dict:
    labels = read_labels(folder / LABELS_FILE)
    digits, truth = [], []
    for file, digit in labels.items():
        try:
            digits.append(load_image(folder / file, steps=steps)[1])
            truth.append(digit)
        except ImageError as error:
            print(f"note: {error}")
    prediction = predictor.predict(digits)
    return reading_report(np.array(truth), prediction.labels, prediction.unsure)


def field_report(checkpoint: Path, folders: dict[str, Path], split: str) -> dict:
    """MNIST test accuracy and every set's reading, both preprocessings, of one checkpoint."""
    device = pick_device("auto")
    state = load_checkpoint(checkpoint)
    data = load_mnist(state["config"].get("data"))
    mnist = evaluate_model(model_from_checkpoint(state, device), data, device)["test_accuracy"]
    predictor = Predictor(checkpoint)
    sets = {name: {when: read_set(predictor, folder / split, steps) for when, steps in PREPROCESSING.items()}
            for name, folder in folders.items()}
    return {"checkpoint": str(checkpoint), "mnist_test_accuracy": mnist, "sets": sets,
            "calibrated": "calibration" in state and state["calibration"] is not None}


def markdown_row(label: str, result: dict) -> str:
    cells = [label, f"{100 * result['mnist_test_accuracy']:.2f}%"]
    for reading in result["sets"].values():
        now = reading["now"]
        cells += [f"{100 * reading['before']['accuracy']:.1f}%", f"{100 * now['accuracy']:.1f}%",
                  f"{100 * now['unsure_share']:.0f}%" if result["calibrated"] else "-"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoints to compare (label=PATH names a row)")
    parser.add_argument("--sets", default=HANDWRITING_SETS, help=f"where the scans set is (default {HANDWRITING_SETS})")
    parser.add_argument("--split", choices=("tune", "report"), default="report", help="which half (default report)")
    parser.add_argument("--out", default=FIELD_REPORT_JSON, help=f"all figures (default {FIELD_REPORT_JSON})")
    args = parser.parse_args(argv)
    named = [item.split("=", 1) if "=" in item else (Path(item).parent.name, item) for item in args.checkpoints]
    for _, path in named:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such checkpoint file")
    folders = set_folders(Path(args.sets))
    results = {label: field_report(Path(path), folders, args.split) for label, path in named}
    header = "| model | MNIST test | " + " | ".join(f"{name} before | {name} now | {name} not sure"
                                                   for name in folders) + " |"
    print(header)
    print("|" + "---|" * (2 + 3 * len(folders)))
    for label, result in results.items():
        print(markdown_row(label, result))
    write_json_atomic(args.out, {"split": args.split, "results": results})
    print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
