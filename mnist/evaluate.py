"""Evaluate a finished model on the 10,000 test images: accuracy, per-class report, confusion matrix.

The test set is touched here and nowhere else: validation selects, test reports.

    python -m mnist.evaluate CHECKPOINT [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from mnist.atomic import write_json_atomic
from mnist.calibration import expected_calibration_error
from mnist.checkpoint import load_checkpoint
from mnist.data import MnistData, device_images, load_mnist
from mnist.device import DEVICE_CHOICES, pick_device
from mnist.errors import run_cli
from mnist.layout import CONFUSION_MATRIX_PNG, METRICS_JSON, MISCLASSIFIED_PNG
from mnist.model import model_from_checkpoint, predict_logits

DIGITS = list(range(10))


def mcnemar_p_value(first_correct: np.ndarray, second_correct: np.ndarray) -> float:
    """Exact McNemar test on paired per-image outcomes: are the discordant images split 50/50?"""
    first_only = int(np.sum(first_correct & ~second_correct))
    second_only = int(np.sum(~first_correct & second_correct))
    if first_only + second_only == 0:
        return 1.0
    return float(stats.binomtest(first_only, first_only + second_only, 0.5).pvalue)


def evaluate_model(model: torch.nn.Module, data: MnistData, device: torch.device,
                   calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test-set metrics of `model` and its predictions (probabilities for the misclassified grid); with the
    checkpoint's calibration, the test set's expected calibration error without and with its temperature."""
    images = device_images(data.test_images, device)
    logits = predict_logits(model, images)
    probabilities = torch.softmax(logits, dim=1).cpu().numpy()
    predicted = probabilities.argmax(axis=1)
    truth = data.test_labels.astype(np.int64)
    calibrated = {}
    if calibration:
        scaled = torch.softmax(logits / calibration["temperature"], dim=1).cpu().numpy()
        unsure = scaled.max(axis=1) < calibration["unsure_below"]
        calibrated = {"calibration": {**calibration, "test_ece_before": expected_calibration_error(probabilities, truth),
                                      "test_ece_after": expected_calibration_error(scaled, truth),
                                      "test_unsure_share": float(unsure.mean()),
                                      "test_accuracy_when_sure": float((predicted == truth)[~unsure].mean())
                                      if (~unsure).any() else None}}
    report = classification_report(truth, predicted, labels=DIGITS, output_dict=True, zero_division=0)
    return {
        "test_accuracy": float(accuracy_score(truth, predicted)),
        "test_count": int(len(truth)),
        "misclassified_count": int((predicted != truth).sum()),
        "per_class": {str(d): {k: float(v) for k, v in report[str(d)].items()} for d in DIGITS},
        "macro_avg": {k: float(v) for k, v in report["macro avg"].items()},
        "confusion_matrix": confusion_matrix(truth, predicted, labels=DIGITS).tolist(),
        **calibrated,
        "predicted": predicted,
        "probabilities": probabilities,
    }


def write_evaluation(result: dict[str, Any], data: MnistData, out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """metrics.json, confusion_matrix.png and misclassified.png in `out`; returns what metrics.json holds."""
    from mnist.plots import plot_confusion_matrix, plot_misclassified

    out.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(np.array(result["confusion_matrix"]), out / CONFUSION_MATRIX_PNG)
    plot_misclassified(data.test_images, data.test_labels, result["predicted"], result["probabilities"],
                       out / MISCLASSIFIED_PNG)
    metrics = {key: value for key, value in result.items() if key not in ("predicted", "probabilities")}
    metrics.update(extra)
    write_json_atomic(out / METRICS_JSON, metrics)
    return metrics


def print_summary(metrics: dict[str, Any]) -> None:
    print(f"test accuracy {metrics['test_accuracy']:.4f} ({metrics['test_count'] - metrics['misclassified_count']}"
          f"/{metrics['test_count']})")
    print("digit  precision  recall  f1")
    for digit, row in metrics["per_class"].items():
        print(f"{digit:>5}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1-score']:.4f}")
    if "calibration" in metrics:
        calibration = metrics["calibration"]
        print(f"calibration: temperature {calibration['temperature']:.3f}; test expected calibration error "
              f"{calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}; not sure below "
              f"{calibration['unsure_below']:.3f} ({calibration['test_unsure_share']:.1%} of the test images)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a CCNet checkpoint on the MNIST test set.")
    parser.add_argument("checkpoint", help="a .pt file written by mnist.train or hpo/best.py")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint folder>/eval)")
    parser.add_argument("--data", default=None, help="data folder (default: the checkpoint's, else bundled MNIST)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="auto: CUDA when there is a GPU")
    args = parser.parse_args(argv)
    state = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model = model_from_checkpoint(state, device)
    data = load_mnist(args.data or state["config"].get("data"))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    result = evaluate_model(model, data, device, state.get("calibration"))
    metrics = write_evaluation(result, data, out, {"checkpoint": str(args.checkpoint), "data_source": data.source,
                                                   "config": state["config"]})
    print_summary(metrics)
    print(f"wrote {out}/{METRICS_JSON}, {CONFUSION_MATRIX_PNG}, {MISCLASSIFIED_PNG}")
    return 0


if __name__ == "__main__":
    run_cli(main)
