"""Winner retraining: the search's best configuration trained from scratch, then tested once.

The winner is picked on validation accuracy only; the test set is touched here, after
training, to report. The tutorial's setting is retrained beside it with the same budget and
the same seeds (paired), so the gain from the search is measured with its uncertainty
(hpo.comparison), not claimed.
"""
from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from hpo.comparison import compare, describe
from hpo.data_parallel import train_data_parallel
from hpo.experiment import baseline_point, plain, saved_experiment, trial_config
from hpo.plots import plot_comparison
from hpo.storage import join_uri
from hpo.summary import winner
from hpo.trial_terms import BEST_METRIC, LAST_METRIC
from mnist.atomic import recover_folder, replace_folder, write_json_atomic
from mnist.calibration import calibrate_checkpoint
from mnist.checkpoint import load_checkpoint, run_metadata, save_checkpoint
from mnist.config import resolve_config
from mnist.data import MnistData, load_mnist
from mnist.device import pick_device
from mnist.errors import UserError
from mnist.evaluate import evaluate_model, write_evaluation
from mnist.layout import BEST, RETRAIN_RUNS, TRIALS_CSV
from mnist.layout import BASELINE, COMPARISON_JSON, COMPARISON_PNG, CURVES_PNG, ENSEMBLE_PT, MODEL_PT
from mnist.model import ensemble_weights, model_from_checkpoint
from mnist.outputs import format_epoch
from mnist.plots import plot_curves
from mnist.train import train

SELECTION_RULES = {"best": "highest val_acc at the trial's best validation epoch",
                   "last": "highest val_acc at the trial's last epoch"}


def load_search(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(experiment settings, trials table) of a finished search folder."""
    experiment = saved_experiment(folder)
    path = folder / TRIALS_CSV
    if not path.exists():
        raise UserError(f"{path}: missing; is {folder} a finished hpo/search.py experiment?")
    try:
        trials = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    # trials.csv of searches before 2026-11 call the tutorial's column "seed_config"; read here until ccnet-hpo 0.3.0.
    trials = trials.rename(columns={"seed_config": "baseline"})
    needed = {"trial", BEST_METRIC, LAST_METRIC, *experiment["search_space"]}
    missing = sorted(needed - set(trials.columns))
    if missing:
        raise UserError(f"{path}: not a trials table of this search (no column {', '.join(missing)})")
    return experiment, trials


def winner_config(experiment: dict[str, Any], trials: pd.DataFrame, select: str) -> tuple[pd.Series, dict[str, Any]]:
    try:
        top = winner(trials, select)
    except ValueError as error:
        raise UserError(f"no winner to retrain: {error}") from None
    params = {key: plain(top[key]) for key in experiment["search_space"]}
    try:
        return top, trial_config(experiment, params)
    except UserError as error:  # a trials.csv edited by hand, or another search's
        raise UserError(f"trials.csv, trial {int(top['trial'])}: {error}") from None


def fit_here(config: dict[str, Any], data: MnistData,
             checkpoint: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train in this process, printing each epoch and keeping the run's state in `checkpoint` after every one,
    so that a stopped retraining continues where it stopped (best.py --resume); returns the history and the
    final state."""
    final: dict[str, Any] = {}

    def keep(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        print(f"  {format_epoch(metrics, config['epochs'])}", flush=True)
        save_checkpoint(state, checkpoint)
        final["state"] = {**state, "model": {k: v.detach().clone() for k, v in state["model"].items()}}

    resume_from = stopped_run(checkpoint, config)
    if resume_from is not None:
        if len(resume_from["history"]) >= config["epochs"]:
            return resume_from["history"], resume_from
        print(f"  continuing from epoch {len(resume_from['history'])} ({checkpoint})", flush=True)
    history = train(config, data=data, on_epoch=keep, resume_from=resume_from)
    return history, final["state"]


def stopped_run(checkpoint: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The state a stopped retraining left in `checkpoint` (None when there is none); refused in one line when
    it trained another configuration (another winner, budget or seed) than the one asked for now."""
    if not checkpoint.exists():
        return None
    state = load_checkpoint(checkpoint, for_resume=True)
    saved = resolve_config(state["config"])
    changed = sorted(key for key in config if key not in ("threads", "device") and saved[key] != config[key])
    if changed:
        raise UserError(f"{checkpoint}: a stopped retraining of another configuration ({changed[0]}="
                        f"{saved[changed[0]]!r}, now {config[changed[0]]!r}); remove its folder to start over")
    return state


@dataclass(frozen=True)
class Fit:
    """How a retraining trains: in this process (workers 1), or data-parallel on Ray Train workers.

    Built once from the flags and handed down; `train_storage` (a folder or URI every node
    reaches) keeps Ray Train's runs: rank 0 may run on another node and writes its checkpoints there.
    """
    workers: int = 1
    gpus_per_worker: int = 0
    address: str | None = None
    train_storage: str = ""
    shared_storage: bool = False  # a local train_storage is mounted on every node

    def __call__(self, config: dict[str, Any], data: MnistData, run_name: str,
                 checkpoint: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(per-epoch metrics, final checkpoint state) of one run; `run_name` names Ray Train's run, `checkpoint`
        keeps its state (after every epoch here; once finished with Ray Train) for best.py --resume."""
        if self.workers <= 1:
            return fit_here(config, data, checkpoint)
        done = stopped_run(checkpoint, config)
        if done is not None and len(done["history"]) >= config["epochs"]:
            return done["history"], done
        history, state = train_data_parallel(config, data, self.workers, self.gpus_per_worker,
                                             join_uri(self.train_storage, run_name), self.address, self.shared_storage)
        for metrics in history:
            print(f"  {format_epoch(metrics, config['epochs'])}", flush=True)
        save_checkpoint(state, checkpoint)
        return history, state


# How a trained state is calibrated: (state, data, device) -> its calibration, or None. calibrate_checkpoint fits
# it on the run's MNIST validation split; mnist.reading.calibrate.SetCalibration on the real sets' tune halves too.
Calibrate = Callable[[dict[str, Any], MnistData, torch.device], "dict[str, Any] | None"]


def train_and_test(config: dict[str, Any], data: MnistData, fit: Fit, label: str, run_name: str,
                   checkpoint: Path, calibrate: Calibrate = calibrate_checkpoint
                   ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(history, final state, test evaluation) of one seed's run of `config`."""
    print(f"{label}: training seed {config['seed']} for {config['epochs']} epochs", flush=True)
    history, state = fit(config, data, run_name, checkpoint)
    if history[-1]["diverged"]:
        raise UserError(f"{label} diverged (non-finite loss) with seed {config['seed']}")
    device = pick_device(config["device"])
    # Calibrated before it is tested (calibrate_checkpoint: none with --full, then left uncalibrated).
    state["calibration"] = calibrate(state, data, device)
    result = evaluate_model(model_from_checkpoint(state, device), data, device, state["calibration"])
    print(f"  test accuracy {result['test_accuracy']:.4f}", flush=True)
    return history, state, result


def spread(accuracies: list[float]) -> dict[str, float]:
    return {"test_accuracies": accuracies, "mean": statistics.fmean(accuracies),
            "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0}


def retrain_winner(folder: Path, select: str, seeds: int, epochs: int | None, full: bool, baseline: bool,
                   fit: Fit, resume: bool = False, calibrate: Calibrate = calibrate_checkpoint) -> dict[str, Any]:
    """Retrain the winner of the search in `folder` and the tutorial's setting, paired seed by seed;
    test each run once; write folder/best/ (and best/baseline/, best/comparison.json). With `resume`, the runs a
    stopped retraining left continue (finished ones are tested again, not trained again)."""
    experiment, trials = load_search(folder)
    top, config = winner_config(experiment, trials, select)
    config.update({"epochs": epochs or experiment["max_epochs"], "device": "auto", "threads": None})
    if full:
        config["val_fraction"] = 0.0
    seed_list = [experiment["seed"] + i for i in range(seeds)]
    data = load_mnist(config["data"])
    # Built aside and swapped in whole at the end: a run stopped at any moment leaves the previous best/
    # (or none), never one run's comparison beside another's model.
    out = staging_folder(folder)
    left = sorted((out / RETRAIN_RUNS).glob("*.pt"))
    if left and not resume:
        raise UserError(f"{out}: a stopped retraining left {len(left)} run(s) there; continue it with --resume, "
                        "or remove that folder to start over")
    if not resume:
        shutil.rmtree(out, ignore_errors=True)  # leftovers without a run (the lock says none is running)
    recover_folder(folder / BEST)  # a run killed mid-swap: its previous best/ comes back
    print(f"winner: trial {int(top['trial'])}, selected by {SELECTION_RULES[select]} "
          f"(val_acc {top[BEST_METRIC if select == 'best' else LAST_METRIC]:.4f})", flush=True)
    baseline_params = baseline_point(experiment["search_space"], config["epochs"])
    arms = {"winner": (config, out)}
    if baseline:
        arms["baseline"] = ({**config, **baseline_params}, out / BASELINE)
    runs: dict[str, list] = {name: [] for name in arms}
    for seed in seed_list:  # paired: seed i for the winner and for the baseline
        for name, (arm_config, _) in arms.items():
            if name == "baseline" and arm_config == config:  # the winner is the tutorial's setting: same runs
                runs[name].append(runs["winner"][-1])
                continue
            runs[name].append(train_and_test({**arm_config, "seed": seed}, data, fit,
                                             "winner" if name == "winner" else "the tutorial's setting",
                                             ("" if name == "winner" else "baseline/") + f"ray_train_seed{seed}",
                                             out / RETRAIN_RUNS / f"{name}-seed{seed}.pt", calibrate))
    summary = {"selected_by": SELECTION_RULES[select], "trial": int(top["trial"]),
               "params": {key: config[key] for key in experiment["search_space"]}, "epochs": config["epochs"],
               "trained_on": "train+validation" if full else "train split", "seeds": seed_list,
               "workers": fit.workers,
               "winner": spread([run[2]["test_accuracy"] for run in runs["winner"]])}
    if baseline:
        summary["baseline"] = {"params": baseline_params,
                               **spread([run[2]["test_accuracy"] for run in runs["baseline"]])}
        summary["comparison"] = compare_runs(runs["winner"], runs["baseline"], data)
        write_json_atomic(out / COMPARISON_JSON, {**summary["comparison"], "winner_params": summary["params"],
                                                   "baseline_params": baseline_params, "seeds": seed_list,
                                                   "epochs": config["epochs"], **run_metadata()})
        plot_comparison(summary["comparison"], [run[0] for run in runs["winner"]],
                        [run[0] for run in runs["baseline"]], out / COMPARISON_PNG)
    if len(seed_list) > 1:  # what mnist.reading.predict and the page serve: the K seeds' models as one
        ensemble, ensemble_result = ensemble_of([run[1] for run in runs["winner"]], config, seed_list, data,
                                                calibrate)
        summary["ensemble"] = {"members": len(seed_list), "test_accuracy": ensemble_result["test_accuracy"],
                               **({"calibration": ensemble_result["calibration"]} if "calibration" in ensemble_result
                                  else {})}
        save_checkpoint(ensemble, out / ENSEMBLE_PT)
    for name, (arm_config, arm_out) in arms.items():  # the first seed's model, curves and evaluation
        history, state, result = runs[name][0]
        save_checkpoint(state, arm_out / MODEL_PT)
        plot_curves(history, arm_out / CURVES_PNG)
        extra = {"config": {**arm_config, "seed": seed_list[0]}, "seed": seed_list[0], **run_metadata()}
        if name == "winner":  # test_accuracy is model.pt's (the first seed's); the mean over seeds beside it
            extra.update({"test_accuracy_mean": summary["winner"]["mean"],
                          "test_accuracy_std": summary["winner"]["std"], "search": summary})
        write_evaluation(result, data, arm_out, extra)
    shutil.rmtree(out / RETRAIN_RUNS)  # what resuming needed: best/ keeps the models it serves and compares
    replace_folder(out, folder / BEST)
    return summary


def ensemble_of(states: list[dict[str, Any]], config: dict[str, Any], seeds: list[int], data: MnistData,
                calibrate: Calibrate = calibrate_checkpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    """The winner's seeds as one Ensemble checkpoint, calibrated as its members were, tested once."""
    state = {"model": ensemble_weights([state["model"] for state in states]), "members": len(states),
             "config": {**config, "seed": seeds[0]}, "seeds": seeds, **run_metadata()}
    device = pick_device(config["device"])
    state["calibration"] = calibrate(state, data, device)
    return state, evaluate_model(model_from_checkpoint(state, device), data, device, state["calibration"])


def staging_folder(folder: Path) -> Path:
    """Where best/ is built before it replaces the old one (Ray Train's runs go there too)."""
    return folder / ".best.staging"


def compare_runs(winner_runs: list, baseline_runs: list, data: MnistData) -> dict[str, Any]:
    truth = data.test_labels.astype(np.int64)
    return compare([run[2]["test_accuracy"] for run in winner_runs], [run[2]["test_accuracy"] for run in baseline_runs],
                   [run[2]["predicted"] == truth for run in winner_runs],
                   [run[2]["predicted"] == truth for run in baseline_runs],
                   [run[0] for run in winner_runs], [run[0] for run in baseline_runs])


def describe_spread(summary: dict[str, Any]) -> str:
    if len(summary["test_accuracies"]) == 1:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} (mean ± std over {len(summary['test_accuracies'])} seeds)"


def print_comparison(summary: dict[str, Any]) -> None:
    print(f"winner (trial {summary['trial']}) test accuracy: {describe_spread(summary['winner'])}")
    if "ensemble" in summary:
        print(f"the {summary['ensemble']['members']} seeds' models as one ensemble (best/ensemble.pt, what "
              f"mnist.reading.predict and the page serve): test accuracy {summary['ensemble']['test_accuracy']:.4f}")
    if "baseline" in summary:
        print(f"the tutorial's setting, same {summary['epochs']} epochs and seeds: {describe_spread(summary['baseline'])}")
        for line in describe(summary["comparison"]):
            print(line)
