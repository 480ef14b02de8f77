"""What a finished search leaves for a person: trials.csv, history.csv, best.json, plots, report.md.

Everything here is about validation accuracy: the search never sees the test set.
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from hpo.experiment import is_baseline, plain
from hpo.plots import (plot_anytime, plot_importance, plot_learning_curves, plot_parallel_coordinates,
                       plot_search_history)
from hpo.space import dimensions
from hpo.trial_terms import BEST_METRIC, DIVERGED, LAST_METRIC, METRIC, MODE, status_of
from mnist.atomic import write_json_atomic, write_text_atomic
from mnist.checkpoint import git_commit
from mnist.errors import UserError, mask_credentials
from mnist.layout import BEST_JSON, HISTORY_CSV, REPORT_MD, TRIALS_CSV
from mnist.layout import ANYTIME_PNG, IMPORTANCE_PNG, LEARNING_CURVES_PNG, PARALLEL_COORDINATES_PNG, SEARCH_HISTORY_PNG


def _status(result: tune.Result, history: pd.DataFrame, max_epochs: int) -> str:
    last_epoch = None if history.empty else int(history["epoch"].iloc[-1])
    diverged = not history.empty and bool(history["diverged"].iloc[-1])
    return status_of(result.error is not None, last_epoch, diverged, max_epochs)


# Where a trial ran, as text: a node id such as "042680521077" or "12e456789012" must not become a number.
WHERE_COLUMNS = {"device": str, "gpu_ids": str, "node": str, "node_ip": str, "node_id": str}


def read_progress(result: tune.Result) -> pd.DataFrame:
    """Every epoch a trial reported, from its progress.csv (through the storage's filesystem).

    Result.metrics_dataframe misses the epoch reported just before a crash that Tune retried.
    """
    try:
        with result.filesystem.open_input_stream(f"{result.path}/progress.csv") as stream:
            history = pd.read_csv(stream, dtype=WHERE_COLUMNS)
    except (FileNotFoundError, OSError, pd.errors.EmptyDataError):
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
    if "epoch" not in history:
        return pd.DataFrame(columns=["epoch", "diverged", METRIC])
    return history[history["epoch"].notna()]


class NothingFinished(UserError):
    """No trial reported a result: nothing to summarize (a time budget shorter than one epoch)."""


def trial_tables(results: tune.ResultGrid, experiment: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per trial, one row per trial and epoch), trials in the order they were created."""
    searched = list(experiment["search_space"])
    rows, histories = [], []
    for result in results:
        if result.config is None:  # never started (a time budget ended the search first): nothing to say
            continue
        _, number, trial_id = Path(result.path).name.split("_", 2)  # trial_<number>_<id>, see driver.trial_name
        number = int(number)
        history = read_progress(result)
        history = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
        params = {key: result.config[key] for key in searched}
        best = history.loc[history[METRIC].idxmax()] if not history.empty else None
        # A trial the time budget ended just after it reported may have no checkpoint kept (Ray raises then).
        checkpoint = (result.get_best_checkpoint(metric=METRIC, mode=MODE)
                      if not history.empty and result.best_checkpoints else None)
        last = history.iloc[-1] if not history.empty else {}
        rows.append({
            "trial": number, "trial_id": trial_id, **params,
            "status": _status(result, history, experiment["max_epochs"]),
            "epochs": int(last["epoch"]) if best is not None else 0,
            BEST_METRIC: float(best[METRIC]) if best is not None else None,
            "best_epoch": int(best["epoch"]) if best is not None else None,
            LAST_METRIC: float(last[METRIC]) if best is not None else None,
            "time_s": float(history["epoch_time_s"].sum()) if best is not None else 0.0,
            "device": last.get("device", ""), "gpu_ids": last.get("gpu_ids", ""), "node": last.get("node", ""),
            "node_ip": last.get("node_ip", ""), "node_id": last.get("node_id", ""),
            "baseline": is_baseline(experiment["baseline"], params),
            # Relative to the experiment folder, so that the folder can be moved or shared.
            "checkpoint": str(Path(checkpoint.path).relative_to(Path(result.path).parent)) if checkpoint else "",
            "path": result.path,
            "config": result.config,
        })
        if not history.empty:
            columns = ["trial", "epoch", "train_loss", "train_acc", "val_loss", METRIC, "lr", "epoch_time_s"]
            # When each epoch ended (Tune's wall clock): orders all trials' epochs for the anytime plot.
            columns += ["timestamp"] if "timestamp" in history else []
            histories.append(history.assign(trial=number)[columns])
    if not rows:
        raise NothingFinished("no trial finished an epoch")
    trials = pd.DataFrame(rows).sort_values("trial").reset_index(drop=True)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return trials, history


def winner(trials: pd.DataFrame, select: str = "best") -> pd.Series:
    """The trial with the highest val_acc at its best epoch (select="best") or at its last one."""
    column = BEST_METRIC if select == "best" else LAST_METRIC
    ranked = trials[trials[column].notna() & (trials["status"] != DIVERGED)]
    if ranked.empty:
        raise ValueError("no trial reported a validation accuracy")
    return ranked.loc[ranked[column].idxmax()]


def hours_saved(trials: pd.DataFrame, max_epochs: int, resources: dict[str, float]) -> dict[str, float]:
    """Device hours ASHA saved against training every trial for the full budget."""
    done = trials[trials["epochs"] > 0]
    seconds_per_epoch = done["time_s"] / done["epochs"]
    spent = float(done["time_s"].sum())
    full = float((seconds_per_epoch * max_epochs).sum())
    unit = resources["gpu"] if resources["gpu"] else resources["cpu"]
    return {"unit": "GPU" if resources["gpu"] else "CPU", "spent_hours": spent * unit / 3600,
            "full_budget_hours": full * unit / 3600, "saved_hours": (full - spent) * unit / 3600,
            "epochs_trained": int(done["epochs"].sum()), "epochs_full_budget": int(len(done) * max_epochs)}


def format_table(trials: pd.DataFrame, space: dict[str, dict[str, list]]) -> str:
    """Trials as a text table; each searched value printed on its dimension's scale."""
    columns = ["trial", *space, "status", "epochs", BEST_METRIC, "device", "gpu_ids"]
    table = trials[columns].copy()
    for key, dimension in dimensions(space).items():
        table[key] = table[key].map(lambda value, scale=dimension: scale.format(plain(value)))
    return table.to_string(index=False, float_format=lambda v: f"{v:.4f}")


def console_summary(trials: pd.DataFrame, space: dict[str, dict[str, list]], top: int = 5) -> str:
    ranked = trials.sort_values(BEST_METRIC, ascending=False)
    lines = [f"top {min(top, len(ranked))} of {len(trials)} trials by best validation accuracy:",
             format_table(ranked.head(top), space)]
    baseline_rows = trials[trials["baseline"]]
    if not baseline_rows.empty and ranked[BEST_METRIC].notna().any():
        baseline_acc, best_acc = baseline_rows[BEST_METRIC].iloc[0], ranked[BEST_METRIC].iloc[0]
        lines += ["the tutorial's setting:", format_table(baseline_rows, space),
                  f"search beat the tutorial's setting by {100 * (best_acc - baseline_acc):+.2f} points of val_acc "
                  f"({best_acc:.4f} vs {baseline_acc:.4f}) at the same budget"]
    return "\n".join(lines)


def environment() -> dict[str, str]:
    import optuna
    import ray
    import torch

    devices = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or platform.machine()
    return {"python": sys.version.split()[0], "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "git_commit": git_commit(), "driver_device": devices,
            "platform": platform.platform()}


# The marks of the time-to-accuracy report besides the tutorial's final val_acc: a level the best CCNets pass.
ACCURACY_MARKS = (0.995,)


def anytime_curve(history: pd.DataFrame, trials: pd.DataFrame) -> dict[str, Any]:
    """The search's best val_acc so far against epochs trained so far (all trials, in the order the epochs
    ended), and when it first passed the tutorial's final val_acc and each of ACCURACY_MARKS: after how many
    epochs, how many minutes of training (all trials' epochs summed) and, where Tune timed the epochs, how many
    minutes of wall clock since the search's first epoch began (a resumed search counts its pause too)."""
    order = ["timestamp", "trial", "epoch"] if "timestamp" in history else ["trial", "epoch"]
    ordered = history.sort_values(order)
    best_so_far = ordered[METRIC].cummax().to_numpy()
    cumulative = np.arange(1, len(ordered) + 1)
    training_minutes = ordered["epoch_time_s"].cumsum().to_numpy() / 60
    wall_minutes = None
    if "timestamp" in ordered and ordered["timestamp"].notna().all() and len(ordered):
        began = (ordered["timestamp"] - ordered["epoch_time_s"]).min()
        wall_minutes = (ordered["timestamp"].to_numpy() - began) / 60
    baseline_rows = trials[trials["baseline"].astype(bool)]
    baseline = float(baseline_rows[LAST_METRIC].iloc[0]) if not baseline_rows.empty else None
    marks = ([("the tutorial's final val_acc", baseline)] if baseline is not None else [])
    marks += [(f"val_acc {mark:.1%}", mark) for mark in ACCURACY_MARKS]
    milestones = []
    for label, level in marks:
        above = np.flatnonzero(best_so_far > level)
        first = int(above[0]) if above.size else None
        milestones.append({"label": label, METRIC: level, "epochs": None if first is None else int(cumulative[first]),
                           "training_minutes": None if first is None else float(training_minutes[first]),
                           "wall_minutes": None if first is None or wall_minutes is None else float(wall_minutes[first])})
    passed = milestones[0]["epochs"] if baseline is not None else None
    return {"epochs": cumulative, "best_so_far": best_so_far, "baseline_val_acc": baseline, "passed_at_epochs": passed,
            "milestones": milestones, "total_training_minutes": float(training_minutes[-1]) if len(ordered) else 0.0}


def anytime_sentence(anytime: dict[str, Any]) -> str:
    """Time to accuracy, in a sentence per mark: when the search first passed it."""
    total = int(anytime["epochs"][-1]) if len(anytime["epochs"]) else 0
    sentences = [] if anytime["baseline_val_acc"] is not None else [
        "The tutorial's setting did not finish in this search: nothing to compare against."]
    for mark in anytime["milestones"]:
        if mark["epochs"] is None:
            sentences.append(f"The search never passed {mark['label']} ({mark[METRIC]:.4f}) in the {total} "
                             "epochs it trained.")
            continue
        wall = f", {mark['wall_minutes']:.1f} min of wall clock" if mark["wall_minutes"] is not None else ""
        sentences.append(f"The search passed {mark['label']} ({mark[METRIC]:.4f}) after {mark['epochs']} of the "
                         f"{total} epochs it trained (all trials together): {mark['training_minutes']:.1f} of "
                         f"{anytime['total_training_minutes']:.1f} min of training{wall}.")
    return " ".join(sentences)


def write_report(folder: Path, trials: pd.DataFrame, experiment: dict[str, Any], best: dict[str, Any],
                 savings: dict[str, float], argv: list[str], anytime: dict[str, Any],
                 no_importance: str | None = None) -> None:
    env = environment()
    lines = [
        f"# Search report: {folder.name}", "",
        f"Command: `{mask_credentials(' '.join(argv))}`", "",
        "| | |", "|---|---|", *[f"| {key} | {value} |" for key, value in env.items()], "",
        f"{len(trials)} trials, budget {experiment['max_epochs']} epochs each; "
        + ", ".join(f"{count} {status}" for status, count in trials["status"].value_counts().items()) + ".", "",
        f"Winner (best validation epoch): trial {best['trial']} with val_acc {best[METRIC]:.4f} at epoch "
        f"{best['epoch']}: " + ", ".join(f"{key}={dimension.format(best['params'][key])}"
                                         for key, dimension in dimensions(experiment["search_space"]).items()), "",
        "```", console_summary(trials, experiment["search_space"]), "```", "",
        f"ASHA trained {savings['epochs_trained']} epochs instead of {savings['epochs_full_budget']} "
        f"({savings['spent_hours']:.3f} {savings['unit']} hours instead of {savings['full_budget_hours']:.3f}: "
        f"{savings['saved_hours']:.3f} {savings['unit']} hours saved).", "",
        "![search history](search_history.png)", "![parallel coordinates](parallel_coordinates.png)",
        "![learning curves](learning_curves.png)",
        f"No hyperparameter importance: {no_importance}." if no_importance else "![importance](importance.png)", "",
        anytime_sentence(anytime), "", "![anytime](anytime.png)", "",
        "Validation accuracy only: the test set is used by `hpo/best.py` on the retrained winner.", "",
    ]
    write_text_atomic(folder / REPORT_MD, "\n".join(lines))


def summarize(folder: Path, results: tune.ResultGrid, experiment: dict[str, Any], resources: dict[str, float],
              argv: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write trials.csv, history.csv, best.json, the plots and report.md; returns (trials, best)."""
    trials, history = trial_tables(results, experiment)
    return write_summary(folder, trials, history, experiment, resources, argv)


def write_summary(folder: Path, trials: pd.DataFrame, history: pd.DataFrame, experiment: dict[str, Any],
                  resources: dict[str, float], argv: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The summary's files from the trial and epoch tables: also for a search whose trials all scored the same
    or that finished one trial (a plot that cannot be drawn says why, in report.md and on the console)."""
    searched = list(experiment["search_space"])
    write_text_atomic(folder / TRIALS_CSV, trials.drop(columns=["config", "path"]).to_csv(index=False))
    write_text_atomic(folder / HISTORY_CSV, history.to_csv(index=False))
    if trials[BEST_METRIC].isna().all():
        raise NothingFinished("no trial finished an epoch")
    try:
        top = winner(trials)
    except ValueError:
        raise UserError(f"{folder}: no trial reported a usable validation accuracy (all diverged or failed); "
                        "see trials.csv") from None
    best = {"selected_by": f"highest {METRIC} at the trial's best validation epoch", "trial": int(top["trial"]),
            "trial_id": top["trial_id"], "params": {k: plain(top[k]) for k in searched}, "config": top["config"],
            METRIC: float(top[BEST_METRIC]), "epoch": int(top["best_epoch"]), "checkpoint": top["checkpoint"]}
    write_json_atomic(folder / BEST_JSON, best)
    plot_search_history(trials, folder / SEARCH_HISTORY_PNG)
    plot_parallel_coordinates(trials, experiment["search_space"], folder / PARALLEL_COORDINATES_PNG)
    plot_learning_curves(history, trials, experiment["max_epochs"], folder / LEARNING_CURVES_PNG)
    no_importance = plot_importance(trials, experiment["search_space"], folder / IMPORTANCE_PNG)
    anytime = anytime_curve(history, trials)
    plot_anytime(anytime, folder / ANYTIME_PNG)
    write_report(folder, trials, experiment, best, hours_saved(trials, experiment["max_epochs"], resources), argv,
                 anytime, no_importance)
    if no_importance:
        print(f"no hyperparameter importance plot: {no_importance}", flush=True)
    return trials, best
