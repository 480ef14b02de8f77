"""The files of a `python -m mnist.train` run folder, written as each epoch ends.

checkpoints (last.pt every epoch, best.pt at the best val_acc), config.json, metrics.csv,
TensorBoard events and curves.png; every file is replaced atomically, so a run killed
at any moment leaves a consistent folder to resume from.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.tensorboard import SummaryWriter

from mnist.atomic import write_json_atomic, write_text_atomic
from mnist.checkpoint import run_metadata, save_checkpoint
from mnist.layout import BEST_PT, CONFIG_JSON, CURVES_PNG, LAST_PT, METRICS_CSV, TENSORBOARD
from mnist.plots import plot_curves

# TensorBoard tag -> metric, for training runs and search trials alike.
SCALARS = {"loss/train": "train_loss", "loss/val": "val_loss", "accuracy/train": "train_acc",
           "accuracy/val": "val_acc", "lr": "lr", "speed/images_per_s": "images_per_s"}


def format_epoch(metrics: dict[str, Any], epochs: int) -> str:
    return (f"epoch {metrics['epoch']:>3}/{epochs}  train_loss {metrics['train_loss']:.4f}  "
            f"train_acc {metrics['train_acc']:.4f}  val_loss {metrics['val_loss']:.4f}  "
            f"val_acc {metrics['val_acc']:.4f}  lr {metrics['lr']:.2e}  {metrics['epoch_time_s']:.1f}s  "
            f"{metrics['images_per_s']:.0f} img/s" + ("  DIVERGED (non-finite loss)" if metrics["diverged"] else ""))


class RunOutputs:
    """Writes a training run's folder; `on_epoch` is the trainable's hook."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.config = config
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / CONFIG_JSON, {"config": config, **run_metadata()})
        self.writer = SummaryWriter(log_dir=str(folder / TENSORBOARD))

    def on_epoch(self, metrics: dict[str, Any], state: dict[str, Any]) -> None:
        history = state["history"]
        save_checkpoint(state, self.folder / LAST_PT)
        if not metrics["val_acc"] < max(row["val_acc"] for row in history):  # NaN (no validation) keeps the last
            save_checkpoint(state, self.folder / BEST_PT)
        write_text_atomic(self.folder / METRICS_CSV, pd.DataFrame(history).to_csv(index=False))
        for tag, key in SCALARS.items():
            self.writer.add_scalar(tag, metrics[key], metrics["epoch"])
        self.writer.flush()
        plot_curves(history, self.folder / CURVES_PNG)
        print(format_epoch(metrics, self.config["epochs"]), flush=True)

    def close(self) -> None:
        self.writer.close()
