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
import math
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
from torch.optim.swa_utils import AveragedModel

from mnist.augment import Augmentation
from mnist.batches import EpochBatches, steps_per_epoch
from mnist.calibration import calibrate_checkpoint
from mnist.checkpoint import load_checkpoint, run_metadata, save_checkpoint
from mnist.config import DEFAULTS, add_config_flags, config_from_flags, resolve_config
from mnist.data import MnistData, device_images, device_labels, load_mnist, split_train_val
from mnist.device import available_cpus, bf16_is_native, pick_device, set_cuda_math
from mnist.errors import UserError, run_cli, shell_path
from mnist.folder_lock import hold_folder
from mnist.layout import BEST_PT, CONFIG_JSON, LAST_PT, RESULTS, TRAIN_RUNS
from mnist.model import CCNet, predict_logits
from mnist.strokes import with_synthetic_digits

EpochHook = Callable[[dict[str, Any], dict[str, Any]], None]
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s")


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


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: EpochBatches, amp: bool,
                    label_smoothing: float = 0.0, after_step: Callable[[], None] | None = None,
                    show_progress: Callable | None = None) -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, accuracy) over every sample seen, summed over workers.

    `after_step` runs after every optimizer step (a per-batch lr schedule). The sums stay on the
    device and are read once at the end: no host sync per step.
    """
    model.train()
    device = batches.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = torch.zeros((), device=device, dtype=torch.long)
    for number, (inputs, targets) in enumerate(batches, 1):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, targets, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        loss_sum += loss.detach() * len(targets)
        correct += (outputs.argmax(dim=1) == targets).sum()
        seen += len(targets)
        if show_progress and (number % 50 == 0 or number == len(batches)):
            show_progress(number, len(batches))
    totals = torch.stack([loss_sum, correct.to(loss_sum.dtype), seen.to(loss_sum.dtype)])
    if batches.world > 1:
        dist.all_reduce(totals)
    loss_total, correct_total, seen_total = totals.tolist()
    return loss_total / seen_total, correct_total / seen_total


def make_optimizer(model: torch.nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam, the tutorial's; AdamW (decoupled decay) when weight_decay > 0."""
    if config["weight_decay"] == 0:
        return torch.optim.Adam(model.parameters(), lr=config["lr"])
    return torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])


def make_lr_schedule(optimizer: torch.optim.Optimizer, config: dict[str, Any],
                     batches_per_epoch: int) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """(scheduler, stepped per batch?). StepLR steps per epoch as in the tutorial; cosine and
    one-cycle follow the whole budget of optimizer steps, one step per batch. With warmup_epochs,
    every schedule is stepped per batch: a linear warm-up, then the schedule over the steps left."""
    steps = config["epochs"] * batches_per_epoch
    warmup = min(steps - 1, round(config["warmup_epochs"] * batches_per_epoch))
    if config["schedule"] == "onecycle":
        # One-cycle: warm up to lr (over the warm-up, else the first quarter), then anneal to ~0; Adam's beta1
        # cycles with it.
        rise = warmup / steps if warmup > 0 else 0.25
        # torch's rise ends at step pct_start * steps - 1 and divides by that: a short run (few images, large
        # batches: 4 steps) rises to lr at step 1 at least (2 steps: no whole step to peak at, just no error).
        rise = max(rise, 2 / steps) if steps >= 3 else 0.75
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], total_steps=steps,
                                                   pct_start=rise), True
    if warmup > 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmed_up(config, warmup, steps, batches_per_epoch)), True
    if config["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config["step_size"], gamma=config["gamma"]), False
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps), True


# Where a warm-up starts, as a share of lr: near zero, but not zero (the first step still moves).
WARMUP_START = 0.01


def warmed_up(config: dict[str, Any], warmup: int, steps: int, batches_per_epoch: int) -> Callable[[int], float]:
    """The lr factor at optimizer step t: linear from WARMUP_START to 1 over `warmup` steps, then StepLR's
    gamma every step_size epochs (counted from the warm-up's end), or a cosine to 0 over the steps left."""
    def factor(step: int) -> float:
        if step < warmup:
            return WARMUP_START + (1 - WARMUP_START) * step / warmup
        after = step - warmup
        if config["schedule"] == "step":
            return config["gamma"] ** (after // (config["step_size"] * batches_per_epoch))
        return 0.5 * (1 + math.cos(math.pi * min(after, steps - warmup) / (steps - warmup)))
    return factor


def ema_of(model: torch.nn.Module, config: dict[str, Any]) -> AveragedModel | None:
    """The exponential moving average of `model`'s weights when config["ema"] asks for one (CCNet has no
    buffers, so the parameters are all there is to average)."""
    if not config["ema"]:
        return None
    return AveragedModel(model, avg_fn=ema_step(config["ema_decay"]))


def ema_step(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """One EMA update of a parameter. The decay ramps up as (1 + n) / (10 + n) after n updates, capped at
    `decay` (TensorFlow's ExponentialMovingAverage with num_updates): a fixed 0.999 would carry the random
    initial weights for thousands of steps, and an early-stopping scheduler judges a trial on its first
    epochs. Tensor arithmetic throughout: no host sync per step on a GPU."""
    def update(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        step_decay = torch.clamp((1 + updates) / (10 + updates), max=decay).to(averaged.dtype)
        return torch.lerp(averaged, current, 1 - step_decay)
    return update


def per_step_updates(schedule_step: Callable[[], None] | None, ema: AveragedModel | None,
                     model: torch.nn.Module) -> Callable[[], None] | None:
    """What runs after every optimizer step: the per-batch lr schedule, then the EMA update; None when neither."""
    ema_update = (lambda: ema.update_parameters(model)) if ema is not None else None
    updates = [update for update in (schedule_step, ema_update) if update is not None]
    if not updates:
        return None

    def after_step() -> None:
        for update in updates:
            update()
    return after_step


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
    float32_math = set_cuda_math(device, config["cuda_exact"])  # before any kernel runs
    precision = "bf16 autocast" if amp else float32_math
    torch.manual_seed(config["seed"])
    split = split_train_val(data or load_mnist(config["data"]), config["val_fraction"], config["limit"])
    images, labels = with_synthetic_digits(split.train_images, split.train_labels, config["synthetic"], config["seed"])
    train_images, train_labels = device_images(images, device), device_labels(labels, device)
    val_images, val_labels = device_images(split.val_images, device), device_labels(split.val_labels, device)

    model = CCNet(config["dropout"], config["head"]).to(device, memory_format=torch.channels_last)
    # Data-parallel under Ray Train: DDP averages the gradients; `model` (saved, validated) shares its weights.
    rank, world = data_parallel_rank()
    network = DistributedDataParallel(model) if world > 1 else model
    optimizer = make_optimizer(model, config)
    scheduler, per_batch = make_lr_schedule(optimizer, config, steps_per_epoch(len(train_images), config["batch_size"]))
    ema = ema_of(model, config)
    # What is validated, checkpointed as "model" and served: the average when there is one.
    evaluated = ema.module if ema is not None else model
    after_step = per_step_updates(scheduler.step if per_batch else None, ema, model)
    augmentation = Augmentation.from_config(config)
    history: list[dict[str, Any]] = []
    if resume_from is not None:
        if ema is not None:  # the average is the checkpoint's "model"; the weights being trained sit beside it
            model.load_state_dict(resume_from["trained_model"])
            ema.module.load_state_dict(resume_from["model"])
            ema.n_averaged.fill_(resume_from["ema_updates"])
        else:
            model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        history = list(resume_from["history"])
        _set_rng_state(resume_from["rng"], device)
    metadata = run_metadata()

    for epoch in range(len(history) + 1, config["epochs"] + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        batches = EpochBatches(train_images, train_labels, config["batch_size"], config["seed"], epoch,
                               augmentation, rank, world)
        show = (lambda done, total: _progress(epoch, config["epochs"], done, total)) if progress else None
        train_loss, train_acc = train_one_epoch(network, optimizer, batches, amp, config["label_smoothing"],
                                                after_step, show)
        train_seconds = time.perf_counter() - started
        val_loss, val_acc = validate(evaluated, val_images, val_labels, amp)
        if not per_batch:
            scheduler.step()
        metrics = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": lr, "epoch_time_s": time.perf_counter() - started,
            "images_per_s": len(train_images) / train_seconds, "diverged": not np.isfinite(train_loss),
        }
        history.append(metrics)
        state = {
            "model": evaluated.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epoch, "rng": _rng_state(device), "config": config, "history": history,
            "precision": precision, **metadata,
        }
        if ema is not None:
            state.update({"trained_model": model.state_dict(), "ema_updates": int(ema.n_averaged)})
        if on_epoch is not None:
            on_epoch(metrics, state)
        if metrics["diverged"]:
            break
    return history


# ---------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train CCNet on MNIST (the tutorial's flags and defaults, fixed).")
    add_config_flags(parser)
    parser.add_argument("--out", default=None, help="run folder (default results/train/<time>)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a run from its last.pt")
    return parser.parse_args(argv)


# What may differ when a run is resumed: how long it trains, and how many threads compute it.
RESUMABLE_CHANGES = ("epochs", "threads")


def check_resume(path: str, resume_from: dict[str, Any], config: dict[str, Any]) -> None:
    """A resumed run continues the saved configuration: refuse flags that would change what it trains."""
    saved = resolve_config(resume_from["config"])
    changed = [key for key in saved if key not in RESUMABLE_CHANGES and saved[key] != config[key]]
    if changed:
        key = changed[0]
        raise UserError(f"{path}: was trained with {key}={saved[key]!r}; resuming continues that run, so "
                        f"{key}={config[key]!r} is refused (only -e and --threads may change; start a new run instead)")
    if len(resume_from["history"]) >= config["epochs"]:
        raise UserError(f"{path}: already trained {len(resume_from['history'])} epochs; pass -e N with more")
    if config["schedule"] != "step" and config["epochs"] != saved["epochs"]:
        raise UserError(f"{path}: its {config['schedule']} schedule was laid over {saved['epochs']} "
                        "epochs and cannot be stretched; start a new run with -e N")


def calibrate_best(path: Path, data: MnistData, device: torch.device) -> None:
    """Fit best.pt's temperature and "not sure" threshold on its validation split, and store them in it."""
    state = load_checkpoint(path)
    calibration = calibrate_checkpoint(state, data, device)
    if calibration is None:
        print("not calibrated: no validation split (val_fraction 0)", flush=True)
        return
    save_checkpoint({**state, "calibration": calibration}, path)
    print(f"calibrated best.pt on {calibration['val_count']} validation images: temperature "
          f"{calibration['temperature']:.3f}, expected calibration error {calibration['val_ece_before']:.4f} -> "
          f"{calibration['val_ece_after']:.4f}, not sure below {calibration['unsure_below']:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resume_from = load_checkpoint(args.resume, for_resume=True) if args.resume else None
    config = config_from_flags(args, resume_from["config"] if resume_from else DEFAULTS)
    if resume_from:
        check_resume(args.resume, resume_from, config)
    # Everything is checked before anything is written: a refused run leaves no folder behind.
    data = load_mnist(config["data"])
    split_train_val(data, config["val_fraction"], config["limit"])
    default_out = Path(args.resume).parent if args.resume else Path(RESULTS) / TRAIN_RUNS / datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else default_out
    # Claimed before it is looked at: of two runs started at the same instant into one folder, one is refused.
    with hold_folder(out, "mnist.train", other="another --out"):
        return train_into(out, config, data, resume_from, fresh=not args.resume)


def train_into(out: Path, config: dict[str, Any], data: MnistData, resume_from: dict[str, Any] | None,
               fresh: bool) -> int:
    """Train into `out` (held by this process) and calibrate its best checkpoint; the exit code."""
    from mnist.outputs import RunOutputs  # matplotlib and tensorboard only where files are written

    if fresh and any((out / name).exists() for name in (LAST_PT, BEST_PT, CONFIG_JSON)):
        raise UserError(f"{out}: holds a training run already; continue it with "
                        f"--resume {shell_path(out / LAST_PT)}, or choose another --out")
    outputs = RunOutputs(out, config)
    print(f"run folder: {outputs.folder}", flush=True)
    history = train(config, data=data, on_epoch=outputs.on_epoch, resume_from=resume_from,
                    progress=sys.stderr.isatty())
    outputs.close()
    calibrate_best(outputs.folder / BEST_PT, data, pick_device(config["device"]))
    best = max(history, key=lambda row: row["val_acc"])
    print(f"best val_acc {best['val_acc']:.4f} at epoch {best['epoch']}; checkpoints in {outputs.folder}")
    return 1 if history[-1]["diverged"] else 0


if __name__ == "__main__":
    run_cli(main)
