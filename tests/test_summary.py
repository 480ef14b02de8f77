"""The search's summary and progress line, on hand-made trials and trial tables: time to accuracy."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.fs
import pytest

from ray import tune

from hpo.experiment import resolve_experiment
from hpo.progress import SearchProgress
from hpo.summary import anytime_curve, anytime_sentence, read_progress, trial_tables


def search_tables(second_trial_last: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two trials of two epochs, 100 s each: the tutorial's (trial 1, final 0.99) and another, whose epochs end
    50 s after the tutorial's; the other's last val_acc is `second_trial_last`."""
    history = pd.DataFrame({
        "trial": [1, 1, 2, 2], "epoch": [1, 2, 1, 2], "val_acc": [0.98, 0.99, 0.985, second_trial_last],
        "epoch_time_s": [100.0, 100.0, 100.0, 100.0], "timestamp": [1100.0, 1200.0, 1150.0, 1250.0]})
    trials = pd.DataFrame({"trial": [1, 2], "baseline": [True, False], "last_val_acc": [0.99, second_trial_last]})
    return history, trials


def test_time_to_accuracy_counts_epochs_training_minutes_and_wall_clock() -> None:
    anytime = anytime_curve(*search_tables(0.996))
    tutorial, mark = anytime["milestones"]
    assert tutorial["label"] == "the tutorial's final val_acc" and tutorial["val_acc"] == 0.99
    # Epochs in the order they ended: 0.98, 0.985, 0.99, 0.996; only the fourth is above 0.99 (equal is not).
    assert tutorial["epochs"] == mark["epochs"] == 4 and anytime["passed_at_epochs"] == 4
    assert tutorial["training_minutes"] == pytest.approx(400 / 60)
    assert tutorial["wall_minutes"] == pytest.approx((1250 - 1000) / 60)  # since the first epoch began (t=1000)
    sentence = anytime_sentence(anytime)
    assert "passed the tutorial's final val_acc (0.9900) after 4 of the 4 epochs" in sentence
    assert "passed val_acc 99.5% (0.9950) after 4 of the 4 epochs" in sentence and "4.2 min of wall clock" in sentence


def test_a_mark_never_passed_says_so() -> None:
    anytime = anytime_curve(*search_tables(0.9945))
    tutorial, mark = anytime["milestones"]
    assert tutorial["epochs"] == 4 and mark["epochs"] is None and mark["training_minutes"] is None
    assert "never passed val_acc 99.5% (0.9950) in the 4 epochs it trained" in anytime_sentence(anytime)


def test_without_timestamps_there_is_no_wall_clock() -> None:
    history, trials = search_tables(0.996)
    anytime = anytime_curve(history.drop(columns="timestamp"), trials)
    assert anytime["milestones"][0]["wall_minutes"] is None and "wall clock" not in anytime_sentence(anytime)


def test_where_a_trial_ran_stays_text_when_it_looks_like_a_number(tmp_path: Path) -> None:
    """Node ids are hex: "042680521077" lost its zero and "12e456789012" became a float (CI, two nodes)."""
    pd.DataFrame({"epoch": [1, 2], "val_acc": [0.9, 0.95], "node_id": ["042680521077", "12e456789012"],
                  "node_ip": ["127.0.0.1", "127.0.0.1"], "gpu_ids": ["0", "01"]}).to_csv(tmp_path / "progress.csv",
                                                                                    index=False)
    result = SimpleNamespace(filesystem=pyarrow.fs.LocalFileSystem(), path=str(tmp_path), metrics_dataframe=None)
    history = read_progress(result)
    assert list(history["node_id"]) == ["042680521077", "12e456789012"] and list(history["gpu_ids"]) == ["0", "01"]
    assert history["val_acc"].dtype.kind == "f"


def test_a_trial_the_time_budget_ended_before_its_checkpoint_was_kept_is_still_a_row(tmp_path: Path) -> None:
    """Tune's time budget can end a trial between its report and its checkpoint: Ray then raises on
    get_best_checkpoint ("No checkpoint exists"), which ended a benchmark's summary."""
    experiment = resolve_experiment({"max_epochs": 2}, {}, "test")
    folder = tmp_path / "trial_001_abc"
    folder.mkdir()
    pd.DataFrame({"epoch": [1], "val_acc": [0.9], "train_loss": [0.3], "train_acc": [0.88], "val_loss": [0.3],
                  "lr": [2e-4], "epoch_time_s": [1.0], "diverged": [False]}).to_csv(folder / "progress.csv", index=False)
    result = tune.Result(metrics={"config": dict(experiment["baseline"]), "epoch": 1, "val_acc": 0.9},
                         checkpoint=None, error=None, path=str(folder), best_checkpoints=[],
                         _storage_filesystem=pyarrow.fs.LocalFileSystem())
    trials, history = trial_tables([result], experiment)
    assert trials.loc[0, "checkpoint"] == "" and trials.loc[0, "best_val_acc"] == 0.9 and list(history["epoch"]) == [1]


def test_the_time_left_is_never_beyond_the_time_budget() -> None:
    """A search of 100,000 samples bounded by --time-budget said "~23h44m left" a minute before its end."""
    ended = [SimpleNamespace(status="TERMINATED", last_result={"epoch": 1}, experiment_tag=f"{n}_x")
             for n in range(1, 11)]
    running = [SimpleNamespace(status="RUNNING", last_result={}, experiment_tag="11_x")]
    progress = SearchProgress(num_samples=100_000, max_epochs=9, time_budget_s=360)
    progress.started -= 300  # five minutes in: ten trials ended, 30 s each
    assert re.search(r"~(0m[0-5]\d|1m00)s left \(time budget\)", progress.line(ended + running))
    unbounded = SearchProgress(num_samples=12, max_epochs=9)
    unbounded.started -= 300
    line = unbounded.line(ended + running)
    assert "~0m45s left" in line and "time budget" not in line  # (1 to go + 1 running / 2) x 30 s
