"""The trainable: `train(config)` runs CCNet on MNIST, one plain config dict in, one metrics dict out per epoch.

What happens each epoch is reported through `on_epoch(metrics, state)`: the CLI below writes
checkpoints, metrics.csv and TensorBoard; `hpo` hands the same call to Ray Tune. So this
module never imports ray, and Ray Tune calls `train` unchanged.

Fast and correct, in the spirit of airbench: the uint8 dataset sits on the device once;
a batch is an index slice of a seeded per-epoch permutation (no Dataset, no DataLoader);
the loss and accuracy are summed on the device and read once per epoch (no host sync per
step); validation runs in eval mode without gradients and divides by the true count.

    python -m mnist.train -e 3 --limit 5000 -l 1e-3 -b 64
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from mnist.checkpoint import load_checkpoint, run_metadata
from mnist.config import DEFAULTS, resolve_config
from mnist.data import MnistData, load_mnist, random_shifts, shift_images, split_train_val, to_model_input
from mnist.errors import UserError, run_cli
from mnist.evaluate import predict_logits
from mnist.model import CCNet

EpochHook = Callable[[dict[str, Any], dict[str, Any]], None]
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")


def available_cpus() -> int:
    """CPUs this process may run on (Ray and containers narrow it below os.cpu_count())."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but torch sees no CUDA GPU")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 matmuls and convolutions run in hardware here (else autocast would be slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def shuffle_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation depends on (seed, epoch) alone, so a resumed run shuffles the same."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(count, generator=generator)


def _progress(epoch: int, epochs: int, done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    print(f"\repoch {epoch}/{epochs} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
          end="" if done < total else "\r", file=sys.stderr, flush=True)


def data_parallel_rank() -> tuple[int, int]:
    """(rank, world size) when a torch.distributed process group is up (Ray Train sets one), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                    labels: torch.Tensor, batch_size: int, order: torch.Tensor, amp: bool,
                    show_progress: Callable | None, shifts: torch.Tensor | None = None) -> tuple[float, float]:
    """One pass over `images` in the order given; returns (mean loss, accuracy) over every sample.

    `shifts` (one (dy, dx) per image, or None) translates each image before it is seen.

    Data-parallel (a DDP `model` in a process group of N): every worker walks the same global
    batches of `batch_size` and trains on its 1/N share of each, so the global batch and the
    steps per epoch are those of one process; the sums are added across workers once per epoch.
    """
    rank, world = data_parallel_rank()
    model.train()
    loss_sum = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    seen = torch.zeros((), device=images.device, dtype=torch.long)
    order = order.to(images.device)
    max_shift = 0 if shifts is None else int(shifts.abs().max())  # read on the host, once per epoch
    shifts = None if shifts is None else shifts.to(images.device)
    batches = range(0, len(order), batch_size)
    for number, start in enumerate(batches, 1):
        index = order[start:start + batch_size]
        if len(index) < world:  # a last global batch too small to give every worker a sample
            break
        index = index[rank::world]
        batch_images = images[index] if shifts is None else shift_images(images[index], shifts[index], max_shift)
        inputs, targets = to_model_input(batch_images), labels[index]
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (outputs.argmax(dim=1) == targets).sum()
        seen += len(index)
        if show_progress and (number % 50 == 0 or number == len(batches)):
            show_progress(number, len(batches))
    totals = torch.stack([loss_sum, correct.to(loss_sum.dtype), seen.to(loss_sum.dtype)])
    if world > 1:
        dist.all_reduce(totals)
    loss_total, correct_total, seen_total = totals.tolist()
    return loss_total / seen_total, correct_total / seen_total


def validate(model: CCNet, images: torch.Tensor, labels: torch.Tensor, amp: bool) -> tuple[float, float]:
    """(mean loss, accuracy) over the whole validation split, dropout off, no gradients; NaN without one."""
    if len(images) == 0:
        return float("nan"), float("nan")
    outputs = predict_logits(model, images, amp=amp)
    loss = F.cross_entropy(outputs.float(), labels).item()
    accuracy = (outputs.argmax(dim=1) == labels).float().mean().item()
    return loss, accuracy


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _device_tensors(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # np.array copies: data from Ray's object store are read-only, and torch wants writable memory.
    return (torch.from_numpy(np.array(images)).unsqueeze(1).to(device),
            torch.from_numpy(np.array(labels, dtype=np.int64)).to(device))


def train(config: dict[str, Any], data: MnistData | None = None, on_epoch: EpochHook | None = None,
          resume_from: dict[str, Any] | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Train CCNet as `config` says; returns the per-epoch metrics.

    on_epoch(metrics, state) is called after every epoch; `state` is a checkpoint from which
    `train(config, resume_from=state)` continues exactly. A non-finite training loss stops
    the run with `diverged: True` in that epoch's metrics.
    """
    config = resolve_config(config)
    device = pick_device(config["device"])
    torch.set_num_threads(config["threads"] or available_cpus())
    amp = config["amp"] and bf16_is_native(device)
    torch.manual_seed(config["seed"])
    split = split_train_val(data or load_mnist(config["data"]), config["val_fraction"], config["limit"])
    train_images, train_labels = _device_tensors(split.train_images, split.train_labels, device)
    val_images, val_labels = _device_tensors(split.val_images, split.val_labels, device)

    model = CCNet(config["dropout"], config["head"]).to(device, memory_format=torch.channels_last)
    # Data-parallel under Ray Train: DDP averages the gradients; `model` (saved, validated) shares its weights.
    network = DistributedDataParallel(model) if data_parallel_rank()[1] > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config["step_size"], gamma=config["gamma"])
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        history = list(resume_from["history"])
        _set_rng_state(resume_from["rng"], device)
    metadata = run_metadata()

    for epoch in range(len(history) + 1, config["epochs"] + 1):
        started = time.perf_counter()
        lr = scheduler.get_last_lr()[0]
        order = shuffle_order(len(train_images), config["seed"], epoch)
        shifts = random_shifts(len(train_images), config["shift"], config["seed"], epoch) if config["shift"] else None
        show = (lambda done, total: _progress(epoch, config["epochs"], done, total)) if progress else None
        train_loss, train_acc = train_one_epoch(network, optimizer, train_images, train_labels,
                                                config["batch_size"], order, amp, show, shifts)
        train_seconds = time.perf_counter() - started
        val_loss, val_acc = validate(model, val_images, val_labels, amp)
        scheduler.step()
        metrics = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": lr, "epoch_time_s": time.perf_counter() - started,
            "images_per_s": len(train_images) / train_seconds, "diverged": not np.isfinite(train_loss),
        }
        history.append(metrics)
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "rng": _rng_state(device), "config": config, "history": history,
            "precision": "bf16 autocast" if amp else "fp32", **metadata,
        }
        if on_epoch is not None:
            on_epoch(metrics, state)
        if metrics["diverged"]:
            break
    return history


# ---------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train CCNet on MNIST (the seed's flags and defaults, fixed).")
    parser.add_argument("-m", "--model", default=DEFAULTS["model"], help="model to train (CCNet)")
    parser.add_argument("-l", "--init_lr", type=float, default=None, help=f"initial learning rate (default {DEFAULTS['lr']})")
    parser.add_argument("-b", "--batch_size", type=int, default=None, help=f"batch size (default {DEFAULTS['batch_size']})")
    parser.add_argument("-e", "--epochs", type=int, default=None, help=f"number of epochs (default {DEFAULTS['epochs']})")
    parser.add_argument("--dropout", type=float, default=None, help=f"dropout before the classifier (default {DEFAULTS['dropout']})")
    parser.add_argument("--step-size", type=int, default=None, help=f"StepLR step in epochs (default {DEFAULTS['step_size']})")
    parser.add_argument("--gamma", type=float, default=None, help=f"StepLR factor (default {DEFAULTS['gamma']})")
    parser.add_argument("--shift", type=int, default=None, help="augment: shift training images up to N pixels (default 0)")
    parser.add_argument("--head", choices=("logits", "seed"), default=None, help="'seed' = the tutorial's ReLU+Softmax head")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--data", default=None, help="folder of IDX or Kaggle CSV files (default: bundled MNIST)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    parser.add_argument("--val-fraction", type=float, default=None, help="share of training images for validation (0.2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="auto takes CUDA when present")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all available)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast where the hardware does bf16 natively (default on; --no-amp = fp32)")
    parser.add_argument("--out", default=None, help="run folder (default results/train/<time>)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a run from its last.pt")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (defaults or a resumed run's config) with every flag the user gave on top."""
    flags = {"model": args.model, "lr": args.init_lr, "batch_size": args.batch_size, "epochs": args.epochs,
             "dropout": args.dropout, "step_size": args.step_size, "gamma": args.gamma, "shift": args.shift, "head": args.head,
             "seed": args.seed, "data": args.data, "limit": args.limit, "val_fraction": args.val_fraction,
             "device": args.device, "threads": args.threads, "amp": args.amp}
    config = dict(base)
    config.update({key: value for key, value in flags.items() if value is not None})
    return resolve_config(config)


def main(argv: list[str] | None = None) -> int:
    from mnist.outputs import RunOutputs  # matplotlib and tensorboard only where files are written

    args = parse_args(argv)
    resume_from = load_checkpoint(args.resume, for_resume=True) if args.resume else None
    config = config_from_args(args, resume_from["config"] if resume_from else DEFAULTS)
    if resume_from and len(resume_from["history"]) >= config["epochs"]:
        raise UserError(f"{args.resume}: already trained {len(resume_from['history'])} epochs; pass -e N with more")
    default_out = Path(args.resume).parent if args.resume else Path("results/train") / datetime.now().strftime("%Y%m%d-%H%M%S")
    outputs = RunOutputs(Path(args.out) if args.out else default_out, config)
    print(f"run folder: {outputs.folder}", flush=True)
    data = load_mnist(config["data"])
    history = train(config, data=data, on_epoch=outputs.on_epoch, resume_from=resume_from,
                    progress=sys.stderr.isatty())
    outputs.close()
    best = max(history, key=lambda row: row["val_acc"])
    print(f"best val_acc {best['val_acc']:.4f} at epoch {best['epoch']}; checkpoints in {outputs.folder}")
    return 1 if history[-1]["diverged"] else 0


if __name__ == "__main__":
    run_cli(main)
