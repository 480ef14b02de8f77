"""Figures of a search: history, parallel coordinates, learning curves, hyperparameter importance."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.colors import LogNorm

from hpo.experiment import plain
from hpo.space import Dimension, dimensions
from hpo.trial_terms import BEST_METRIC, METRIC, STOPPED_EARLY
from mnist.plots import plt, save_figure


def plot_search_history(trials: pd.DataFrame, path: Path) -> None:
    """Each trial's best validation error in the order trials were created, and the best so far.

    Error (1 - val_acc) on a log axis: the differences that matter, 0.7% vs 0.8%, stay visible
    beside a diverged trial's 90%.
    """
    figure, axis = plt.subplots(figsize=(8, 4.5))
    scored = trials[trials[BEST_METRIC].notna()]
    error = 1 - scored[BEST_METRIC]
    axis.scatter(scored["trial"], error, c="tab:blue", s=18, label="trial's best val error")
    axis.step(scored["trial"], error.cummin(), where="post", color="tab:orange", label="best so far")
    baseline = scored["baseline"].astype(bool)
    axis.scatter(scored["trial"][baseline], error[baseline], marker="*", s=160, c="tab:red", label="tutorial's setting")
    axis.set(xlabel="trial", ylabel="validation error (1 - val_acc)", title="Search history", yscale="log")
    axis.grid(alpha=0.3, which="both")
    axis.legend(loc="upper right")
    save_figure(figure, path)


def _axis_values(trials: pd.DataFrame, key: str, dimension: Dimension) -> tuple[np.ndarray, list[str]]:
    """Values of `key` scaled to [0, 1] on the dimension's own scale, with tick labels."""
    scaled = np.array([dimension.position(plain(value)) for value in trials[key]])
    return scaled, [dimension.format(dimension.values[0]), dimension.format(dimension.values[-1])]


def error_colors(accuracies: np.ndarray) -> tuple[np.ndarray, LogNorm | None]:
    """RGBA per trial from its validation error on a log scale (bright = low error = best), and the scale."""
    if len(accuracies) == 0:
        return np.empty((0, 4)), None
    error = np.clip(1 - accuracies, 1e-4, 1)
    norm = LogNorm(error.min(), max(error.max(), error.min() * 1.01))
    return plt.cm.viridis_r(norm(error)), norm


def plot_parallel_coordinates(trials: pd.DataFrame, space: dict[str, dict], path: Path) -> None:
    """One line per trial across the hyperparameter axes, coloured by its validation error on a log
    scale: 0.7% and 0.6% stay apart even when a diverged trial's 90% is on the same scale."""
    scored = trials[trials[BEST_METRIC].notna()].sort_values(BEST_METRIC)
    keys = list(space)
    figure, axis = plt.subplots(figsize=(2 + 1.8 * len(keys), 5))
    scales = dimensions(space)
    columns = [_axis_values(scored, key, scales[key]) for key in keys]
    colors, norm = error_colors(scored[BEST_METRIC].to_numpy(dtype=float))
    for row, color in enumerate(colors):
        axis.plot(range(len(keys)), [column[0][row] for column in columns], color=color, alpha=0.8)
    for i, (_, (low, high)) in enumerate(columns):
        axis.axvline(i, color="gray", lw=0.8)
        axis.text(i, -0.06, low, ha="center", va="top", fontsize=8)
        axis.text(i, 1.04, high, ha="center", va="bottom", fontsize=8)
    axis.set_xticks(range(len(keys)), keys)
    axis.tick_params(axis="x", pad=18)
    axis.set_yticks([])
    axis.set_ylim(-0.15, 1.15)
    if norm is not None:
        mappable = plt.cm.ScalarMappable(cmap="viridis_r", norm=norm)
        figure.colorbar(mappable, ax=axis, label="best validation error (1 - val_acc), log scale")
    axis.set_title("Hyperparameters of every trial, coloured by validation error (brightest = best)")
    save_figure(figure, path)


def plot_learning_curves(history: pd.DataFrame, trials: pd.DataFrame, max_epochs: int, path: Path) -> None:
    """Validation error per epoch of every trial (log axis); an x where ASHA stopped a trial early."""
    figure, axis = plt.subplots(figsize=(8, 5))
    for number, curve in history.groupby("trial") if not history.empty else []:
        status = trials.loc[trials["trial"] == number, "status"].iloc[0]
        line, = axis.plot(curve["epoch"], 1 - curve[METRIC], alpha=0.7, lw=1.2)
        if status == STOPPED_EARLY:
            axis.plot(curve["epoch"].iloc[-1], 1 - curve[METRIC].iloc[-1], "x", color=line.get_color(), ms=8)
    axis.plot([], [], "kx", label="stopped early by ASHA")
    axis.set(xlabel="epoch", ylabel="validation error (1 - val_acc)", title="Learning curves of all trials",
             xlim=(0.8, max_epochs + 0.2), yscale="log")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.grid(alpha=0.3, which="both")
    axis.legend(loc="upper right")
    save_figure(figure, path)


def hyperparameter_importance(trials: pd.DataFrame, space: dict[str, dict]) -> tuple[dict[str, float], str | None]:
    """Optuna's fANOVA importance of each hyperparameter for the trials' best val_acc (all trials count), or
    ({}, why there is none): fANOVA needs two scored trials whose scores differ."""
    scored = trials[trials[BEST_METRIC].notna()]
    if len(scored) < 2:
        return {}, f"importance needs two trials with a validation accuracy; this search has {len(scored)}"
    if scored[BEST_METRIC].nunique() == 1:
        return {}, (f"every trial scored the same ({float(scored[BEST_METRIC].iloc[0]):.4f}): nothing to "
                    "tell the hyperparameters apart")
    study = optuna.create_study(direction="maximize")
    distributions = {key: dimension.distribution() for key, dimension in dimensions(space).items()}
    for _, row in scored.iterrows():
        params = {key: plain(row[key]) for key in space}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row[BEST_METRIC])))
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)), None
    except RuntimeError as error:  # fANOVA's own refusal ("zero total variance in all trees")
        return {}, f"fANOVA could not estimate it ({str(error).strip().splitlines()[0]})"


def plot_importance(trials: pd.DataFrame, space: dict[str, Any], path: Path) -> str | None:
    """The importance bars, or a figure saying why there are none; returns that reason (None: plotted)."""
    importance, missing = hyperparameter_importance(trials, space)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    if importance:
        keys = list(importance)[::-1]
        axis.barh(keys, [importance[k] for k in keys], color="tab:blue")
        axis.set(xlabel="share of val_acc variance explained (fANOVA)", title="Hyperparameter importance")
    else:
        axis.text(0.5, 0.5, f"no importance:\n{missing}", ha="center", va="center", wrap=True)
        axis.set_axis_off()
    save_figure(figure, path)
    return missing


def plot_comparison(comparison: dict[str, Any], winner_histories: list, baseline_histories: list, path: Path) -> None:
    """Left: each seed's test accuracy, winner vs baseline, paired by seed. Right: both validation curves."""
    figure, (seeds_axis, curve_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    winner, baseline = np.array(comparison["winner_test_acc"]), np.array(comparison["baseline_test_acc"])
    for w, b in zip(winner, baseline):
        seeds_axis.plot([0, 1], [100 * b, 100 * w], color="grey", alpha=0.5)
    seeds_axis.scatter(np.zeros(len(baseline)), 100 * baseline, color="tab:red", label="tutorial's setting", zorder=3)
    seeds_axis.scatter(np.ones(len(winner)), 100 * winner, color="tab:blue", label="winner", zorder=3)
    interval = comparison["gain_ci95_points"]
    title = f"gain {comparison['gain_points']:+.3f} points"
    if interval is not None:
        title += f", 95% CI [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    seeds_axis.set(xticks=[0, 1], xticklabels=["tutorial's setting", "winner"], xlim=(-0.5, 1.5),
                   ylabel="test accuracy (%)", title=f"per seed: {title}")
    seeds_axis.grid(alpha=0.3)
    for histories, colour, label in ((baseline_histories, "tab:red", "tutorial's setting"),
                                     (winner_histories, "tab:blue", "winner")):
        for number, history in enumerate(histories):
            epochs = [row["epoch"] for row in history]
            curve_axis.plot(epochs, [100 * row[METRIC] for row in history], color=colour, alpha=0.6,
                            label=label if number == 0 else None)
    curve_axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation curves, one line per seed")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend()
    save_figure(figure, path)


def plot_anytime(anytime: dict[str, Any], path: Path) -> None:
    """Best validation error so far against epochs trained by the whole search, with the tutorial's line."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.step(anytime["epochs"], 1 - anytime["best_so_far"], where="post", color="tab:blue", label="search: best so far")
    if anytime["baseline_val_acc"] is not None:
        axis.axhline(1 - anytime["baseline_val_acc"], color="tab:red", linestyle="--",
                     label="tutorial's setting, final")
    if anytime["passed_at_epochs"] is not None:
        axis.axvline(anytime["passed_at_epochs"], color="grey", linestyle=":", label="search passes it")
    axis.set(xlabel="epochs trained by the search so far (all trials)", ylabel="validation error (1 - val_acc)",
             title="Anytime performance of the search", yscale="log")
    axis.grid(alpha=0.3, which="both")
    axis.legend(loc="upper right")
    save_figure(figure, path)


def plot_arms_anytime(arms: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Best val_acc so far against cumulative epochs, one line per arm (mean over its searches, band = min..max),
    each search's curve held at its last value up to the longest search of the arm."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    highest = 0.0
    for label, curves in arms.items():
        length = max(len(curve["best_so_far"]) for curve in curves)
        padded = np.array([np.pad(curve["best_so_far"], (0, length - len(curve["best_so_far"])), mode="edge")
                           for curve in curves])
        epochs = np.arange(1, length + 1)
        line, = axis.plot(epochs, 100 * padded.mean(axis=0), label=f"{label} (mean of {len(curves)})")
        axis.fill_between(epochs, 100 * padded.min(axis=0), 100 * padded.max(axis=0), color=line.get_color(), alpha=0.2)
        highest = max(highest, 100 * float(padded.max()))
    axis.set(xlabel="epochs trained by the search so far (all trials)", ylabel="best val_acc so far (%)",
             title="Schedulers: best so far per epoch spent")
    # Where the arms differ (the first epochs' climb from 10% would flatten it), never above 100%.
    axis.set_ylim(bottom=max(axis.get_ylim()[0], 97), top=min(100.0, highest + 0.2))
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    save_figure(figure, path)
