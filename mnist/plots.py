"""Figures of a training run and of an evaluation, written atomically as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no window: runs on servers and in Ray workers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.font_manager import FontProperties, findfont, get_font  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402

from mnist.atomic import write_atomic  # noqa: E402


def drawable(text: str) -> str:
    """`text` as the figures' font can draw it: bytes of a file name that are not UTF-8 (Python keeps them as
    surrogates) and characters the font lacks (matplotlib would warn, an error under `python -W error`) become
    the replacement character, or "?" where the font lacks that too."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    font = get_font(findfont(FontProperties()))
    fallback = "\ufffd" if font.get_char_index(0xFFFD) else "?"
    return "".join(char if char.isspace() or font.get_char_index(ord(char)) else fallback for char in text)


def save_figure(figure: plt.Figure, path: Path) -> None:
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(figure)


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch, train vs validation (the tutorial's loss.png, split in two panels)."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        loss_axis.plot(epochs, [row[f"{split}_loss"] for row in history], marker=".", label=f"{split} loss")
        acc_axis.plot(epochs, [row[f"{split}_acc"] for row in history], marker=".", label=f"{split} accuracy")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def draw_confusion(axis: plt.Axes, counts: np.ndarray, title: str, fontsize: int = 7) -> plt.cm.ScalarMappable:
    """A row-normalised confusion matrix on `axis`: each cell is the share of a true digit read as another."""
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="YlGnBu", vmin=0, vmax=1)
    for true in range(10):
        for predicted in range(10):
            color = "white" if shares[true, predicted] > 0.5 else "black"
            axis.text(predicted, true, f"{shares[true, predicted]:.0%}" if fontsize < 7 else f"{shares[true, predicted]:.2%}",
                      ha="center", va="center", color=color, fontsize=fontsize)
    axis.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit", title=title)
    return image


def plot_confusion_matrix(counts: np.ndarray, path: Path) -> None:
    """Row-normalised confusion matrix: each cell is the share of a true digit predicted as another."""
    figure, axis = plt.subplots(figsize=(9, 7.5))
    figure.colorbar(draw_confusion(axis, counts, "Confusion matrix (share of each true digit)"))
    save_figure(figure, path)


def plot_confusion_matrices(matrices: dict[str, np.ndarray], title: str, path: Path) -> None:
    """One row-normalised confusion matrix per set (name -> counts), side by side."""
    figure, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.8), squeeze=False)
    for axis, (name, counts) in zip(axes[0], matrices.items()):
        draw_confusion(axis, counts, f"{name} ({int(counts.sum())} read)", fontsize=6)
    figure.suptitle(title)
    save_figure(figure, path)


def plot_misclassified(images: np.ndarray, truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray,
                       path: Path, limit: int = 64) -> None:
    """A grid of up to `limit` misclassified test digits, titled true -> predicted (probability)."""
    wrong = np.flatnonzero(predicted != truth)[:limit]
    columns = 8
    rows = max(1, int(np.ceil(len(wrong) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        axis.imshow(images[index], cmap="gray_r")
        axis.set_title(f"{truth[index]}→{predicted[index]} ({probabilities[index, predicted[index]]:.0%})", fontsize=8)
    figure.suptitle(f"Misclassified test digits: true→predicted, {len(wrong)} shown of {(predicted != truth).sum()}")
    save_figure(figure, path)


def plot_reliability(sets: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path, bins: int = 10) -> None:
    """A reliability diagram per set: how often the answers given at each confidence were right (the
    diagonal is a model exactly as sure as it is right). `sets`: name -> (confidence, right) of its answers."""
    figure, axis = plt.subplots(figsize=(6, 6))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="as sure as right")
    for name, (confidence, right) in sets.items():
        if len(set(right.tolist())) < 2:  # all right (or all wrong): one point, no curve to fit
            axis.plot([confidence.mean()], [right.mean()], marker="o", linestyle="", label=f"{name} ({len(right)})")
            continue
        accuracy, sureness = calibration_curve(right, confidence, n_bins=bins, strategy="quantile")
        axis.plot(sureness, accuracy, marker="o", label=f"{name} ({len(right)})")
    axis.set(xlabel="confidence of the answer (calibrated)", ylabel="share of answers right", xlim=(0, 1.01),
             ylim=(0, 1.01), title=title)
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    save_figure(figure, path)

