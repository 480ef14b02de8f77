"""Know when it does not know: temperature scaling and a "not sure" threshold, both fitted on validation.

A network trained with cross-entropy is over-confident: its top softmax probability is higher
than how often it is right. Temperature scaling (Guo et al. 2017) divides the logits by one
number T fitted on the validation split (the negative log-likelihood, minimised by scipy);
the ranking, and so every prediction, stays as it was. The calibrated top probability then
decides when to answer "not sure": below `unsure_below`, the threshold at which the
validation images answered with confidence are misread at most TARGET_RISK of the time.

Fitted once after training and stored in the checkpoint under "calibration"; the test set
is never used for it (validation selects, test reports).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from mnist.config import DEFAULTS
from mnist.data import MnistData, device_images, split_train_val
from mnist.model import model_from_checkpoint, predict_logits

ECE_BINS = 15  # the usual number of confidence bins (Guo et al. 2017)
TARGET_RISK = 0.002  # "sure" answers on validation are wrong at most 0.2% of the time
TEMPERATURE_RANGE = (0.05, 20.0)  # far outside it the fit is degenerate (all right, or all wrong)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """How far confidence is from accuracy, averaged over equal-width confidence bins weighted by their size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The T > 0 that minimises the (weighted) mean negative log-likelihood of softmax(logits / T)."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)

    def loss(log_t: float) -> float:
        nll = -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(labels)), labels]
        return float(np.average(nll, weights=weights))
    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(loss, bounds=(low, high), method="bounded").x))


def unsure_threshold(probabilities: np.ndarray, labels: np.ndarray, risk: float = TARGET_RISK) -> float:
    """The lowest top probability t such that the images answered at >= t are misread at most `risk` of the time."""
    confidence = probabilities.max(axis=1)
    wrong = probabilities.argmax(axis=1) != labels
    order = np.argsort(-confidence)  # most confident first: accept a prefix
    errors = np.cumsum(wrong[order]) / np.arange(1, len(order) + 1)
    if len(errors) == 0 or errors[-1] <= risk:
        # Every answer may be accepted: nothing below the lowest confidence seen was found wrong, so no threshold
        # (the lowest confidence seen would flag new answers below it for no measured reason; a set the model
        # reads perfectly, at 0.99 at least, made every other set's answers "not sure" below 0.99).
        return 0.0
    acceptable = np.nonzero(errors <= risk)[0]
    if len(acceptable) == 0:
        return 1.0  # even the most confident answers are too often wrong: never sure
    return float(confidence[order][acceptable[-1]])


def calibrate_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Temperature, threshold, and the expected calibration error before and after, of validation logits."""
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits, axis=1), softmax(logits / temperature, axis=1)
    return {"temperature": temperature, "unsure_below": unsure_threshold(after, labels),
            "target_risk": TARGET_RISK, "val_count": int(len(labels)),
            "val_ece_before": expected_calibration_error(before, labels),
            "val_ece_after": expected_calibration_error(after, labels)}


def validation_logits(state: dict[str, Any], data: MnistData, device: torch.device
                      ) -> tuple[np.ndarray, np.ndarray] | None:
    """A trained checkpoint's logits on its own validation split, and the labels; None when it trained on
    everything."""
    config = state["config"]
    if not config.get("val_fraction", DEFAULTS["val_fraction"]):
        return None
    split = split_train_val(data, config["val_fraction"], config.get("limit"))
    model = model_from_checkpoint(state, device)
    logits = predict_logits(model, device_images(split.val_images, device)).cpu().numpy().astype(np.float64)
    return logits, split.val_labels.astype(np.int64)


def calibrate_checkpoint(state: dict[str, Any], data: MnistData, device: torch.device) -> dict[str, Any] | None:
    """The calibration of a trained checkpoint on its own validation split; None when it trained on everything."""
    validation = validation_logits(state, data, device)
    if validation is None:
        return None
    return {**calibrate_logits(*validation), "fitted_on": {"mnist validation": int(len(validation[1]))}}
