"""Calibration that holds away from MNIST: a checkpoint's temperature and "not sure" threshold fitted on its
MNIST validation split and on the tune halves of the real sets (mnist.reading.sets) together.

    python -m mnist.reading.calibrate CHECKPOINT [--sets results/handwriting] [--risk 0.01]

Fitted on MNIST validation alone, "not sure" holds on MNIST (sure answers wrong at most 0.2% of the
time) and not on people's digits, which are further from what the model learned: its sure answers were
wrong 1-8% of the time there. Here the temperature minimises the negative log-likelihood of all these
images, each set weighing as much as MNIST's validation split however many images it has; the
threshold is the lowest at which the sure answers of every set are wrong at most --risk of the time
(MNIST validation: at most mnist.calibration.TARGET_RISK). Images a set's preprocessing refuses take no
part; a checkpoint trained on every training image (no validation split) is fitted on the real sets alone.
hpo/best.py calibrates every model it retrains this way (its --calibration). Here the checkpoint is
rewritten (atomically) with the new calibration and what it was fitted on ("fitted_on": images per set);
the report halves stay for the field report to judge it.
"""
from __future__ import annotations

import argparse
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from mnist.calibration import TARGET_RISK, expected_calibration_error, fit_temperature, unsure_threshold, \
    validation_logits
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.data import MnistData, device_images, load_mnist
from mnist.device import pick_device
from mnist.errors import UserError, run_cli
from mnist.layout import HANDWRITING_SETS
from mnist.model import model_from_checkpoint, predict_logits
from mnist.reading.preprocess import Steps
from mnist.reading.sets import ReadSet, read_set, set_folders

# Sure answers on each real set's tune half wrong at most this often: the 1% people's digits are held to.
REAL_SET_RISK = 0.01
MNIST_VALIDATION = "mnist validation"


class SetCalibration:
    """Calibrates a trained state (see the module's docstring) on its MNIST validation split and the tune halves
    of the real sets under `sets` (written there when missing); the halves are read once, when the first state
    comes (a command refused before it trains pays nothing)."""

    def __init__(self, sets: Path, risk: float = REAL_SET_RISK) -> None:
        self.sets, self.risk = sets, risk

    @cached_property
    def halves(self) -> dict[str, ReadSet]:
        print(f"calibrating on MNIST validation and the real sets' tune halves ({self.sets}; written there when "
              "missing, about a minute)", flush=True)
        return {f"{name} tune": read_set(folder / "tune", Steps()) for name, folder in set_folders(self.sets).items()}

    def __call__(self, state: dict[str, Any], data: MnistData, device: torch.device) -> dict[str, Any]:
        validation = validation_logits(state, data, device)
        logits = {} if validation is None else {MNIST_VALIDATION: validation}
        model = model_from_checkpoint(state, device)
        for name, half in self.halves.items():
            if half.digits:
                values = predict_logits(model, device_images(np.stack(half.digits), device), batch_size=512)
                logits[name] = (values.cpu().numpy().astype(np.float64), half.truth[half.read])
        risks = {name: TARGET_RISK if name == MNIST_VALIDATION else self.risk for name in logits}
        return calibrate_on(logits, risks)


def calibrate_on(logits: dict[str, tuple[np.ndarray, np.ndarray]], risks: dict[str, float]) -> dict[str, Any]:
    """One temperature for all the sets (each weighing the same), the threshold that holds on each."""
    weights = np.concatenate([np.full(len(labels), 1 / len(labels)) for _, labels in logits.values()])
    temperature = fit_temperature(np.concatenate([values for values, _ in logits.values()]),
                                  np.concatenate([labels for _, labels in logits.values()]), weights)
    thresholds, ece = {}, {}
    for name, (values, labels) in logits.items():
        probabilities = softmax(values / temperature, axis=1)
        thresholds[name] = unsure_threshold(probabilities, labels, risks[name])
        ece[name] = [expected_calibration_error(softmax(values, axis=1), labels),
                     expected_calibration_error(probabilities, labels)]
    return {"temperature": temperature, "unsure_below": max(thresholds.values()), "target_risk": risks,
            "thresholds": thresholds, "ece_before_after": ece,
            "fitted_on": {name: int(len(labels)) for name, (_, labels) in logits.items()}}


def calibrate_checkpoint_on_sets(checkpoint: Path, sets: Path, risk: float) -> dict[str, Any]:
    """Fit the calibration (see the module's docstring) and write it into `checkpoint`."""
    state = load_checkpoint(checkpoint)
    calibration = SetCalibration(sets, risk)(state, load_mnist(state["config"].get("data")), pick_device("auto"))
    save_checkpoint({**state, "calibration": calibration}, checkpoint)
    return calibration


def describe(calibration: dict[str, Any]) -> list[str]:
    """What a set calibration holds, a line for its whole and one for each set it was fitted on."""
    lines = [f"temperature {calibration['temperature']:.3f}, not sure below {calibration['unsure_below']:.3f}, "
             "fitted on " + ", ".join(f"{name} ({count})" for name, count in calibration["fitted_on"].items())]
    for name, threshold in calibration["thresholds"].items():
        before, after = calibration["ece_before_after"][name]
        lines.append(f"  {name}: its own threshold {threshold:.3f} (sure answers wrong at most "
                     f"{calibration['target_risk'][name]:.1%}); expected calibration error {before:.4f} -> {after:.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="the checkpoint to calibrate (rewritten in place)")
    parser.add_argument("--sets", default=HANDWRITING_SETS, help=f"where the generated sets are (default {HANDWRITING_SETS})")
    parser.add_argument("--risk", type=float, default=REAL_SET_RISK,
                        help=f"sure answers on each real set wrong at most this often (default {REAL_SET_RISK})")
    args = parser.parse_args(argv)
    if not 0 < args.risk < 1:
        raise UserError(f"--risk must be between 0 and 1, got {args.risk}")
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: no such checkpoint file")
    lines = describe(calibrate_checkpoint_on_sets(checkpoint, Path(args.sets), args.risk))
    print(f"{checkpoint}: " + "\n".join(lines))
    return 0


if __name__ == "__main__":
    run_cli(main)
