"""Data-parallel retraining with Ray Train (2 CPU workers, gloo) against the plain single-process path."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hpo.experiment import resolve_experiment
from mnist.evaluate import main as evaluate_main
from mnist.reading.predict import Predictor
from tests.helpers import run_script

pytestmark = pytest.mark.slow  # Ray clusters and searches: minutes


def finished_search(folder: Path) -> Path:
    """A search folder as hpo/search.py leaves it, whose winner is a known good configuration."""
    folder.mkdir(parents=True)
    # MNIST alone (no digits drawn from pen strokes): the data of the known good configuration and its tolerance.
    experiment = resolve_experiment({"max_epochs": 2, "grace_period": 1, "train": {"limit": 10000, "synthetic": 0.0}},
                                    {}, "test")
    (folder / "experiment.json").write_text(json.dumps({"experiment": experiment}))
    pd.DataFrame([{"trial": 1, "trial_id": "a", "lr": 2e-3, "batch_size": 64, "dropout": 0.25, "step_size": 3,
                   "gamma": 0.5, "schedule": "step", "weight_decay": 0.0, "label_smoothing": 0.0, "rotate": 0.0,
                   "scale": 0.0, "shift": 0, "shear": 0.0, "stretch": 0.0, "elastic": 0.0, "thickness": 0.0,
                   "erase": 0.0, "status": "completed", "epochs": 2, "best_val_acc": 0.97,
                   "best_epoch": 2, "last_val_acc": 0.97}]).to_csv(folder / "trials.csv", index=False)
    return folder


def test_two_workers_match_one_process(tmp_path: Path) -> None:
    accuracy = {}
    for workers in (1, 2):
        folder = finished_search(tmp_path / f"workers{workers}")
        result = run_script("best.py", ["--search", str(folder), "--workers", str(workers), "--no-baseline",
                                        "--seeds", "1", "--calibration", "validation"],
                            timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((folder / "best" / "metrics.json").read_text())
        assert metrics["search"]["workers"] == workers and metrics["config"]["batch_size"] == 64
        accuracy[workers] = metrics["test_accuracy"]
    assert accuracy[1] > 0.95
    assert abs(accuracy[2] - accuracy[1]) <= 0.005  # within 0.5 points at the same epochs and seed

    model = tmp_path / "workers2" / "best" / "model.pt"
    evaluate_main([str(model), "--out", str(tmp_path / "eval")])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test_accuracy"] == pytest.approx(accuracy[2])
    from mnist.data import load_mnist

    digits = load_mnist().test_images[:100]
    assert Predictor(model).predict(list(digits)).labels.shape == (100,)
