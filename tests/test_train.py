"""The trainable: exact resume, honest metrics, seeded shuffling, refused hyperparameters, the CLI's files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.config import resolve_config
from mnist.augment import random_shifts, shift_images
from mnist.batches import shuffle_order
from mnist.data import MnistData
from mnist.errors import UserError, run_cli
from mnist.model import CCNet
from mnist.train import METRIC_COLUMNS, main, train, validate


@pytest.mark.parametrize("shift", [0, 2])
def test_resume_continues_exactly(tmp_path: Path, mnist_data: MnistData, shift: int, tiny_config: dict) -> None:
    config = {**tiny_config, "limit": 600, "epochs": 2, "seed": 3, "shift": shift}
    straight: dict = {}
    train(config, data=mnist_data, on_epoch=lambda metrics, state: straight.update(state))

    def save_first_epoch(metrics: dict, state: dict) -> None:
        save_checkpoint(state, tmp_path / "epoch1.pt")

    train({**config, "epochs": 1}, data=mnist_data, on_epoch=save_first_epoch)
    resumed: dict = {}
    state = load_checkpoint(tmp_path / "epoch1.pt", for_resume=True)
    history = train(config, data=mnist_data, on_epoch=lambda metrics, s: resumed.update(s), resume_from=state)
    assert [row["epoch"] for row in history] == [1, 2]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert straight["history"][1]["train_loss"] == resumed["history"][1]["train_loss"]


def test_same_seed_same_run_other_seed_other_run(mnist_data: MnistData, tiny_config: dict) -> None:
    config = {**tiny_config, "limit": 300}
    first, again, other = (train({**config, "seed": s}, data=mnist_data)[0]["train_loss"] for s in (1, 1, 2))
    assert first == again and first != other


def test_validation_has_dropout_off_and_counts_every_sample(mnist_data: MnistData) -> None:
    torch.manual_seed(0)
    model = CCNet(dropout=0.9)
    images = torch.from_numpy(np.array(mnist_data.test_images[:1001])).unsqueeze(1)
    labels = torch.from_numpy(mnist_data.test_labels[:1001].astype(np.int64))
    loss_a, acc_a = validate(model, images, labels, amp=False)
    loss_b, acc_b = validate(model, images, labels, amp=False)
    assert loss_a == loss_b and acc_a == acc_b  # with dropout on, two passes would differ
    model.eval()
    with torch.no_grad():
        correct = sum(int(model(((images[i:i + 1].float() / 255) - 0.1307) / 0.3081).argmax()) == int(labels[i])
                      for i in range(len(labels)))
    assert acc_a == pytest.approx(correct / 1001, abs=1e-6)  # not divided by a batch size


def test_shuffle_is_a_seeded_permutation_per_epoch() -> None:
    first = shuffle_order(1000, seed=0, epoch=1)
    assert sorted(first.tolist()) == list(range(1000))
    assert not torch.equal(first, torch.arange(1000))  # the seed never shuffled
    assert torch.equal(first, shuffle_order(1000, seed=0, epoch=1))
    assert not torch.equal(first, shuffle_order(1000, seed=0, epoch=2))


def test_shift_moves_each_image_by_its_own_offset() -> None:
    images = torch.zeros(3, 1, 6, 6, dtype=torch.uint8)
    images[:, 0, 2, 3] = 200
    moved = shift_images(images, torch.tensor([[1, 0], [0, -2], [-2, 2]]), 2)
    assert moved.dtype == torch.uint8 and moved.shape == images.shape
    assert [tuple((moved[i, 0] == 200).nonzero()[0].tolist()) for i in range(3)] == [(3, 3), (2, 1), (0, 5)]
    assert int((moved > 0).sum()) == 3  # nothing else drawn: what moves in is background
    assert torch.equal(shift_images(images, torch.zeros(3, 2, dtype=torch.long), 2), images)


def test_random_shifts_are_bounded_and_seeded_per_epoch() -> None:
    shifts = random_shifts(5000, 2, seed=0, epoch=1)
    assert set(shifts.flatten().tolist()) == {-2, -1, 0, 1, 2}
    assert torch.equal(shifts, random_shifts(5000, 2, seed=0, epoch=1))
    assert not torch.equal(shifts, random_shifts(5000, 2, seed=0, epoch=2))


def test_shift_changes_training_and_is_checked(mnist_data: MnistData, tiny_config: dict) -> None:
    plain, shifted = (train({**tiny_config, "limit": 300, "shift": s}, data=mnist_data)[0] for s in (0, 2))
    assert plain["train_loss"] != shifted["train_loss"]
    with pytest.raises(UserError, match="shift"):
        resolve_config({"shift": 9})


def test_metrics_reported_each_epoch(mnist_data: MnistData, tiny_config: dict) -> None:
    reports = []
    train({**tiny_config, "epochs": 2, "step_size": 1, "gamma": 0.5}, data=mnist_data,
          on_epoch=lambda metrics, state: reports.append(metrics))
    assert [row["epoch"] for row in reports] == [1, 2]
    assert all(set(METRIC_COLUMNS) <= set(row) for row in reports)
    assert [row["lr"] for row in reports] == [1e-3, 5e-4]  # StepLR applied after each epoch
    assert reports[1]["val_acc"] > 0.2  # well above chance after 26 steps


@pytest.mark.slow
def test_quick_run_learns(mnist_data: MnistData) -> None:
    # The quick run: -e 3 --limit 5000 -l 1e-3 -b 64 must pass 90% validation accuracy.
    history = train({"epochs": 3, "limit": 5000, "lr": 1e-3, "batch_size": 64, "device": "cpu"}, data=mnist_data)
    assert history[-1]["val_acc"] > 0.90


def test_diverging_loss_stops_the_run(mnist_data: MnistData, tiny_config: dict) -> None:
    history = train({**tiny_config, "epochs": 3, "lr": 1e6}, data=mnist_data)
    assert history[-1]["diverged"] and len(history) < 3


@pytest.mark.parametrize("key, value", [
    ("lr", 0), ("lr", -1e-3), ("batch_size", 0), ("dropout", 1.0), ("dropout", -0.1),
    ("gamma", 0), ("gamma", 1.5), ("epochs", 0), ("lr_typo", 1e-3),
])
def test_bad_hyperparameters_are_refused(key: str, value: float) -> None:
    with pytest.raises(UserError, match=key):
        resolve_config({key: value})


@pytest.mark.parametrize("flags, message", [
    (["-l", "0"], "lr must be > 0"), (["-b", "0"], "batch_size must be an integer >= 1"),
    (["--dropout", "1"], "dropout must be in [0, 1)"), (["--gamma", "0"], "gamma must be in (0, 1]"),
    (["-e", "0"], "epochs must be an integer >= 1"),
])
def test_cli_refuses_bad_hyperparameters_before_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, flags + ["--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_run_folder(tiny_run: Path) -> None:
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    assert list(metrics.columns[:8]) == list(METRIC_COLUMNS) and len(metrics) == 2
    for name in ("best.pt", "last.pt", "config.json", "curves.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    state = load_checkpoint(tiny_run / "last.pt", for_resume=True)
    assert state["config"]["limit"] == 2000 and "git_commit" in state and state["argv"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/val", "lr"} <= set(events.Tags()["scalars"])


def test_cli_resume_extends_the_run(tmp_path: Path, tiny_run: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    main(["--resume", str(run / "last.pt"), "-e", "3"])
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert load_checkpoint(run / "last.pt", for_resume=True)["epoch"] == 3


def test_resume_from_a_non_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "last.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--resume", str(bad)])
    assert exit_info.value.code == 2 and f"{bad}: not a checkpoint, or truncated\n" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_runs_and_reports_its_ratio(capsys: pytest.CaptureFixture) -> None:
    from benchmarks.train_speed import main as bench_main

    bench_main(["--batches", "8", "--threads", "1", "--skip-csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    tutorial = float(lines[-5].split()[2])
    ours = float(lines[-3].split()[-2])
    assert tutorial > 0 and ours > 0
    # The EMA's cost: the share of throughput lost, from the two figures printed beside it.
    words = lines[-2].split()
    with_ema, without = float(words[6]), float(words[8])
    assert words[-4] == "ema_cost" and float(words[-3].rstrip("%")) == pytest.approx(100 * (1 - with_ema / without),
                                                                                      abs=0.2)
    assert lines[-1].startswith("speedup_vs_tutorial: ")
    assert float(lines[-1].split()[1]) == pytest.approx(ours / tutorial, abs=0.02)  # figures printed rounded
