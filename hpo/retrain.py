"""Winner retraining: the search's best configuration trained from scratch, then tested once.

The winner is picked on validation accuracy only; the test set is touched here, after
training, to report. The seed tutorial's configuration is retrained beside it with the same
budget and seeds, so the gain from the search is measured, not claimed.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.experiment import baseline_point, trial_config
from hpo.storage import join_uri
from hpo.summary import plain, winner
from mnist.checkpoint import run_metadata, save_checkpoint, write_json_atomic
from mnist.data import MnistData, load_mnist
from mnist.errors import UserError
from mnist.evaluate import evaluate_model, model_from_checkpoint, write_evaluation
from mnist.outputs import format_epoch
from mnist.plots import plot_curves
from mnist.train import pick_device, train

SELECTION_RULES = {"best": "highest val_acc at the trial's best validation epoch",
                   "last": "highest val_acc at the trial's last epoch"}


def newest_experiment(storage: Path) -> Path:
    """The most recently finished search under `storage` (the newest best.json)."""
    candidates = sorted(storage.glob("*/best.json"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise UserError(f"{storage}: no finished search found (no */best.json); run hpo/search.py first")
    return candidates[-1].parent


def load_search(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(experiment settings, trials table) of a finished search folder."""
    for name in ("experiment.json", "trials.csv"):
        if not (folder / name).exists():
            raise UserError(f"{folder / name}: missing; is {folder} a finished hpo/search.py experiment?")
    try:
        experiment = json.loads((folder / "experiment.json").read_text())["experiment"]
        trials = pd.read_csv(folder / "trials.csv")
    except (json.JSONDecodeError, KeyError, pd.errors.ParserError) as error:
        raise UserError(f"{folder}: unreadable search results ({error})") from None
    return experiment, trials


def winner_config(experiment: dict[str, Any], trials: pd.DataFrame, select: str) -> tuple[pd.Series, dict[str, Any]]:
    try:
        top = winner(trials, select)
    except ValueError as error:
        raise UserError(f"no winner to retrain: {error}") from None
    params = {key: plain(top[key]) for key in experiment["search_space"]}
    return top, trial_config(experiment, params)


def train_final(config: dict[str, Any], data: MnistData, workers: int, gpus_per_worker: float,
                storage: str, address: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-epoch metrics, final checkpoint state): in this process, or data-parallel on Ray Train workers."""
    if workers > 1:
        from hpo.data_parallel import train_data_parallel

        history, state = train_data_parallel(config, data, workers, gpus_per_worker, storage, address)
        for metrics in history:
            print(f"  {format_epoch(metrics, config['epochs'])}", flush=True)
        return history, state
    final: dict[str, Any] = {}

    def keep_final(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        print(f"  {format_epoch(metrics, config['epochs'])}", flush=True)
        final["state"] = {**state, "model": {k: v.detach().clone() for k, v in state["model"].items()}}

    history = train(config, data=data, on_epoch=keep_final)
    return history, final["state"]


def retrain_and_test(config: dict[str, Any], data: MnistData, seeds: list[int], out: Path, label: str,
                     train_storage: str, workers: int = 1, gpus_per_worker: float = 0,
                     address: str | None = None) -> dict[str, Any]:
    """Train `config` once per seed, test each final model; outputs of the first seed go to `out`.

    `train_storage` (a folder or URI every node reaches) keeps Ray Train's runs when workers > 1:
    rank 0 may run on another node and writes its checkpoints there.
    """
    accuracies = []
    for index, seed in enumerate(seeds):
        run_config = {**config, "seed": seed}
        how = f" on {workers} data-parallel workers" if workers > 1 else ""
        print(f"{label}: training seed {seed} for {config['epochs']} epochs{how}", flush=True)
        history, final_state = train_final(run_config, data, workers, gpus_per_worker,
                                           join_uri(train_storage, f"ray_train_seed{seed}"), address)
        if history[-1]["diverged"]:
            raise UserError(f"{label} diverged (non-finite loss) with seed {seed}")
        device = pick_device(run_config["device"])
        result = evaluate_model(model_from_checkpoint(final_state, device), data, device)
        accuracies.append(result["test_accuracy"])
        print(f"  test accuracy {result['test_accuracy']:.4f}", flush=True)
        if index == 0:
            save_checkpoint(final_state, out / "model.pt")
            plot_curves(history, out / "curves.png")
            write_evaluation(result, data, out, {"config": run_config, "seed": seed, **run_metadata()})
    return {"seeds": seeds, "test_accuracies": accuracies, "mean": statistics.fmean(accuracies),
            "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}


def describe(summary: dict[str, Any]) -> str:
    if len(summary["seeds"]) == 1:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} (mean ± std over {len(summary['seeds'])} seeds)"


def retrain_winner(folder: Path, select: str, seeds: int, epochs: int | None, full: bool,
                   baseline: bool, workers: int = 1, gpus_per_worker: float = 0,
                   address: str | None = None, storage: str | None = None) -> dict[str, Any]:
    """Retrain the winner of the search in `folder` (and the seed's configuration); write folder/best/.

    `storage`: where the experiment lives when that is not `folder` (a URI): Ray Train's runs go there.
    """
    experiment, trials = load_search(folder)
    top, config = winner_config(experiment, trials, select)
    config.update({"epochs": epochs or experiment["max_epochs"], "device": "auto", "threads": None})
    if full:
        config["val_fraction"] = 0.0
    seed_list = [experiment["seed"] + i for i in range(seeds)]
    data = load_mnist(config["data"])
    out = folder / "best"
    train_storage = join_uri(storage, "best") if storage else str(out.resolve())
    print(f"winner: trial {int(top['trial'])}, selected by {SELECTION_RULES[select]} "
          f"(val_acc {top['best_val_acc' if select == 'best' else 'last_val_acc']:.4f})", flush=True)
    summary = {"selected_by": SELECTION_RULES[select], "trial": int(top["trial"]),
               "params": {key: config[key] for key in experiment["search_space"]},
               "epochs": config["epochs"], "trained_on": "train+validation" if full else "train split",
               "workers": workers, "winner": retrain_and_test(config, data, seed_list, out, "winner", train_storage,
                                                               workers, gpus_per_worker, address)}
    if baseline:
        seed_config = {**config, **baseline_point(experiment["search_space"], config["epochs"])}
        summary["baseline"] = {"params": baseline_point(experiment["search_space"], config["epochs"]),
                               **retrain_and_test(seed_config, data, seed_list, out / "baseline", "seed's configuration",
                                                  join_uri(train_storage, "baseline"), workers, gpus_per_worker,
                                                  address)}
        summary["gain_points"] = 100 * (summary["winner"]["mean"] - summary["baseline"]["mean"])
    metrics = json.loads((out / "metrics.json").read_text())
    # test_accuracy (like the confusion matrix) is model.pt's, the first seed's; the mean over seeds beside it.
    metrics.update({"test_accuracy_mean": summary["winner"]["mean"], "test_accuracy_std": summary["winner"]["std"],
                    "search": summary})
    write_json_atomic(out / "metrics.json", metrics)
    return summary


def print_comparison(summary: dict[str, Any]) -> None:
    print(f"winner (trial {summary['trial']}) test accuracy: {describe(summary['winner'])}")
    if "baseline" in summary:
        print(f"seed's configuration, same {summary['epochs']} epochs: {describe(summary['baseline'])}")
        print(f"gain from the search: {summary['gain_points']:+.2f} points of test accuracy")

