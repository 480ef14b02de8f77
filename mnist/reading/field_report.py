"""How models read people's digits beside MNIST: every real set in one table, from one command.

    python -m mnist.reading.field_report [CHECKPOINT | LABEL=CHECKPOINT ...] [--sets results/handwriting]
                                         [--split report] [--steps all] [--out results/field_report.json]

The models: those named, else the newest retrained search's (results/*/best/): the model it serves and its
first seed's model.pt. The sets, each read on its --split half (mnist.reading.handwriting):
    scans     scikit-learn's digits (43 writers) as photographed paper: written under --sets when missing
    notebook  notebook photos drawn from our own stroke paths (mnist.reading.notebook): written when missing
    drawings  drawings on a pad, pens 4-40 px, slants and sizes, our stroke paths (mnist.reading.drawings): the same
    canvas    digits drawn on the draw page by a real browser's pointer: committed
    mnist     MNIST's 10,000 test images, for what the model was trained on
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
from mnist.layout import BEST, FIELD_REPORT_JSON, HANDWRITING_SETS, MODEL_PT, FIELD_REPORT_PLOTS, RESULTS, served_model
from mnist.plots import plot_confusion_matrices, plot_reliability
from mnist.reading.handwriting import format_report, reading_report
from mnist.reading.predict import Prediction, Predictor, every_answer
from mnist.reading.preprocess import Steps
from mnist.reading.sets import ReadSet, mnist_test_set, read_set, set_folders


def answers(predictor: Predictor, images: ReadSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (REFUSED where the image was refused), "not sure" flags and the calibrated confidence (NaN where
    refused) of every image of the set."""
    prediction = predictor.predict(images.digits) if images.digits else Prediction(
        np.zeros(0, int), np.zeros((0, 10)), np.zeros(0, bool))
    return every_answer(prediction, images.read, len(images.truth))


def default_models(results: Path) -> dict[str, Path]:
    """The newest retrained search's served model and its first seed's model.pt."""
    models = sorted(results.glob(f"*/{BEST}/{MODEL_PT}"), key=lambda path: path.stat().st_mtime)
    if not models:
        raise UserError(f"no retrained search under {results}/ (no */{BEST}/{MODEL_PT}): run hpo/best.py, or name "
                        "the checkpoints")
    best = models[-1].parent
    served = served_model(best)
    return {f"served ({served})": served, **({f"one model ({models[-1]})": models[-1]} if served != models[-1] else {})}


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


def print_report(report: dict, sets: dict[str, ReadSet]) -> None:
    print("| set | images | model | accuracy | refused | not sure | sure but wrong | McNemar p vs first |")
    print("|---|---|---|---|---|---|---|---|")
    for name, images in sets.items():
        for index, (label, readings) in enumerate(report.items()):
            reading = readings[name]
            print(f"| {name} | {len(images.truth)} | {label} | {percent(reading['accuracy'])} | "
                  f"{percent(reading['refused_share'])} | {percent(reading.get('unsure_share'))} | "
                  f"{percent(reading.get('sure_wrong_share'))} | "
                  f"{'-' if index == 0 else format(reading['mcnemar_p_vs_first'], '.3g')} |")
    for name in sets:
        for label, readings in report.items():
            print(f"\n{name}, {label}:")
            for line in format_report(readings[name])[1:]:
                print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", help="models to compare (LABEL=PATH names a row; default: the "
                                                       "newest retrained search's served model and its model.pt)")
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
                                 "sets": report})
    print(f"\nfigures: {args.out}; reliability diagrams and confusion matrices: {args.plots}/")
    return 0


if __name__ == "__main__":
    run_cli(main)
