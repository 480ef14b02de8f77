"""Evaluation on the test set: the numbers agree with each other, the files are there, bad checkpoints are refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist.evaluate import main
from mnist.model import predict_logits
from mnist.model import CCNet
from tests.helpers import refused

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_evaluate_writes_consistent_metrics(tiny_run: Path, tmp_path: Path) -> None:
    main([str(tiny_run / "best.pt"), "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    matrix = np.array(metrics["confusion_matrix"])
    assert metrics["test_count"] == 10000 and matrix.sum() == 10000
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / 10000)
    assert metrics["misclassified_count"] == 10000 - np.trace(matrix)
    assert metrics["per_class"]["3"]["recall"] == pytest.approx(matrix[3, 3] / matrix[3].sum())
    assert metrics["test_accuracy"] > 0.5  # two epochs on 1,600 images: well above chance
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_prediction_runs_without_gradients_in_eval_mode() -> None:
    model = CCNet(dropout=0.9)
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    first, second = predict_logits(model, images), predict_logits(model, images)
    assert not first.requires_grad and not model.training
    assert torch.equal(first, second)


@pytest.mark.parametrize("content, message", [
    (None, "no such checkpoint file"),
    (b"garbage", "not a checkpoint, or truncated"),
    ({"weights": 1}, "not a CCNet checkpoint"),
])
def test_bad_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture, content, message: str) -> None:
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    err = refused(main, [str(path), "--out", str(tmp_path / "eval")], capsys)
    assert f"{path}: {message}" in err, err
    assert not (tmp_path / "eval").exists()
