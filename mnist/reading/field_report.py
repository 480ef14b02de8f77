"""How models read people's digits beside MNIST: every real set in one table, from one command.

    python -m mnist.reading.field_report [CHECKPOINT | LABEL=CHECKPOINT ...] [--sets results/handwriting]
                                         [--split report] [--steps all] [--out results/field_report.json]

The models: those named (any model: a checkpoint, an exported .onnx or .ts), else the shipped reader and, where
a search was retrained under --results, the newest one's served model (the quick start's ensemble) and the
tutorial's setting retrained beside it, side by side. The sets, each read on its --split half
(mnist.reading.sets; all but the canvas written under --sets when missing):
    scans     scikit-learn's digits (43 writers) as photographed paper
    notebook  notebook photos drawn from our own stroke paths (mnist.reading.notebook)
    drawings  drawings on a pad, pens 4-40 px, slants and sizes, our stroke paths (mnist.reading.drawings)
    canvas    digits drawn on the draw page by a real browser's pointer: committed
    mnist-png MNIST's own digits saved as PNG files (28-112 px, half black on white), read through predict's path
    corrupt-* MNIST's digits corrupted, one set per kind (mnist.reading.corruptions); their mean and worst
    mnist     MNIST's 10,000 test images as tensors, for what the model was trained on
For each set and model: the accuracy (an image refused as "no digit" or "more than one digit" is a miss), the
share refused, the share "not sure", the share of sure answers that are wrong; each model against the first
by McNemar's exact test on the same images (is the difference more than chance?); then per digit and the
most common misreadings; each model's confusion matrices and reliability diagram under --plots.
results/field_report.json keeps it all.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mnist.atomic import write_json_atomic
from mnist.errors import UserError, run_cli
from mnist.evaluate import mcnemar_p_value
from mnist.layout import (BASELINE, BEST, FIELD_REPORT_JSON, FIELD_REPORT_PLOTS, HANDWRITING_SETS, MODEL_PT, RESULTS,
                          served_model)
from mnist.plots import plot_confusion_matrices, plot_reliability
from mnist.reading.corruptions import CORRUPTION_PREFIX
from mnist.reading.handwriting import format_report, reading_report
from mnist.reading.predict import Prediction, Predictor, every_answer
from mnist.reading.preprocess import Steps
from mnist.reading.sets import ReadSet, mnist_test_set, read_set, set_folders
from mnist.reading.shipped import NAME, shipped_path


def answers(predictor: Predictor, images: ReadSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (REFUSED where the image was refused), "not sure" flags and the calibrated confidence (NaN where
    refused) of every image of the set."""
    prediction = predictor.predict(images.digits) if images.digits else Prediction(
        np.zeros(0, int), np.zeros((0, 10)), np.zeros(0, bool))
    return every_answer(prediction, images.read, len(images.truth))


def default_models(results: Path) -> dict[str, Path]:
    """The shipped reader; beside it, where a search was retrained under `results`, the newest one's served model
    (the quick start's ensemble) and the tutorial's setting retrained beside it (best/baseline)."""
    models = {NAME: shipped_path()}
    retrained = sorted(results.glob(f"*/{BEST}/{MODEL_PT}"), key=lambda path: path.stat().st_mtime)
    if retrained:
        best = retrained[-1].parent
        models[f"search's served ({served_model(best)})"] = served_model(best)
        baseline = best / BASELINE / MODEL_PT
        if baseline.is_file():
            models[f"tutorial's setting ({baseline})"] = baseline
    return models


def field_report(models: dict[str, Path], sets: dict[str, ReadSet], plots: Path | None = None) -> dict:
    """Each set read by each model: the reading report, and the McNemar p-value against the first model; with
    `plots`, a reliability diagram and the confusion matrices of each model over the sets there."""
    report: dict[str, dict] = {}
    first_right: dict[str, np.ndarray] = {}
    for index, (label, path) in enumerate(models.items()):
        predictor = Predictor(path)
        report[label] = {}
        reliability = {}
        for name, images in sets.items():
            labels, unsure, confidence = answers(predictor, images)
            right = labels == images.truth
            reliability[name] = (confidence[images.read], right[images.read])
            reading = reading_report(images.truth, labels, unsure if predictor.unsure_below > 0 else None)
            first_right.setdefault(name, right)
            reading["mcnemar_p_vs_first"] = mcnemar_p_value(right, first_right[name])
            report[label][name] = reading
        if plots is not None:
            report[label]["reliability_png"] = str(plots / f"reliability-{index + 1}.png")
            plot_reliability(reliability, f"{label}: answers by confidence", Path(report[label]["reliability_png"]))
            report[label]["confusion_png"] = str(plots / f"confusion-{index + 1}.png")
            plot_confusion_matrices({name: np.array(report[label][name]["confusion_matrix"]) for name in sets},
                                    f"{label}: what each digit was read as", Path(report[label]["confusion_png"]))
    return report


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cell(reading: dict, first: bool) -> str:
    """A model's figures on a set: accuracy, sure answers wrong, refused, and the paired p against the first."""
    low, high = reading["accuracy_interval"]
    text = (f"{percent(reading['accuracy'])} [{100 * low:.1f}, {100 * high:.1f}] "
            f"(sure wrong {percent(reading.get('sure_wrong_share'))}")
    if reading["refused_share"]:
        text += f", refused {percent(reading['refused_share'])}"
    return text + ("" if first else f", p {reading['mcnemar_p_vs_first']:.2g}") + ")"


def corruption_summary(report: dict, sets: dict[str, ReadSet]) -> dict[str, dict]:
    """Each model's mean accuracy over the corruption sets, and its worst one."""
    kinds = [name for name in sets if name.startswith(CORRUPTION_PREFIX)]
    if not kinds:
        return {}
    summary = {}
    for label, readings in report.items():
        accuracy = {name: readings[name]["accuracy"] for name in kinds}
        worst = min(accuracy, key=accuracy.get)
        summary[label] = {"mean_accuracy": float(np.mean(list(accuracy.values()))), "worst": worst,
                          "worst_accuracy": accuracy[worst]}
    return summary


def print_report(report: dict, sets: dict[str, ReadSet]) -> None:
    """One row a set, the models side by side (the first is what the others are paired against)."""
    labels = list(report)
    print("models: " + "; ".join(f"[{index + 1}] {label}" for index, label in enumerate(labels)))
    print("| set | images | " + " | ".join(f"[{index + 1}]" for index in range(len(labels))) + " |")
    print("|---|---|" + "---|" * len(labels))
    for name, images in sets.items():
        print(f"| {name} | {len(images.truth)} | "
              + " | ".join(cell(report[label][name], index == 0) for index, label in enumerate(labels)) + " |")
    summary = corruption_summary(report, sets)
    if summary:
        print("| corruptions: mean | | " + " | ".join(percent(summary[label]["mean_accuracy"]) for label in labels)
              + " |")
        print("| corruptions: worst | | " + " | ".join(f"{summary[label]['worst']} "
                                                       f"{percent(summary[label]['worst_accuracy'])}"
                                                       for label in labels) + " |")
    print("(accuracy [Wilson's 95% interval]: an image refused is a miss; sure wrong: the share of sure answers "
          "that are wrong; p: McNemar's exact test against [1] on the same images)")
    for name in sets:
        for label, readings in report.items():
            print(f"\n{name}, {label}:")
            for line in format_report(readings[name])[1:]:
                print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", help="models to compare (LABEL=PATH names a column; default: the "
                                                       "shipped reader, the newest search's served model, the "
                                                       "tutorial's setting)")
    parser.add_argument("--sets", default=HANDWRITING_SETS, help=f"where the generated sets are (default {HANDWRITING_SETS})")
    parser.add_argument("--split", choices=("tune", "report"), default="report", help="which half (default report)")
    parser.add_argument("--steps", default="all", help="preprocessing steps, as predict's --steps (default all)")
    parser.add_argument("--results", default=RESULTS, help=f"where the default models are found (default {RESULTS})")
    parser.add_argument("--plots", default=FIELD_REPORT_PLOTS,
                        help="each model's reliability diagram and confusion matrices, numbered in the order given "
                             f"(default {FIELD_REPORT_PLOTS})")
    parser.add_argument("--out", default=FIELD_REPORT_JSON, help=f"all figures (default {FIELD_REPORT_JSON})")
    args = parser.parse_args(argv)
    steps = Steps.parse(args.steps)
    named = [item.split("=", 1) if "=" in item else (item, item) for item in args.checkpoints]
    models = {label: Path(path) for label, path in named} if named else default_models(Path(args.results))
    for path in models.values():
        if not path.is_file():
            raise UserError(f"{path}: no such checkpoint file")
    for path in models.values():
        Predictor(path)  # a bad checkpoint stops here, in one line, before the sets are read
    sets = {name: read_set(folder / args.split, steps) for name, folder in set_folders(Path(args.sets)).items()}
    sets["mnist"] = mnist_test_set()
    report = field_report(models, sets, Path(args.plots))
    print_report(report, sets)
    write_json_atomic(args.out, {"split": args.split, "steps": args.steps, "models": {k: str(v) for k, v in models.items()},
                                 "sets": report, "corruptions": corruption_summary(report, sets)})
    print(f"\nfigures: {args.out}; reliability diagrams and confusion matrices: {args.plots}/")
    return 0


if __name__ == "__main__":
    run_cli(main)
