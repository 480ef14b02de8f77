"""The search's summary, on hand-made trial tables: time to accuracy."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.fs
import pytest

from hpo.summary import anytime_curve, anytime_sentence, read_progress


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
