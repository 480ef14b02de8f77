"""The training config: one plain dict of plain values, checked before any work starts.

Config flows one way: DEFAULTS -> experiment file -> CLI flags -> `resolve_config` -> the
trainable. A key that is not in DEFAULTS is an error, so a typo never silently falls back
to a default.
"""
from __future__ import annotations

import math
from typing import Any

from mnist.errors import UserError

DEFAULTS: dict[str, Any] = {
    # The seed tutorial's model; the only one there is, kept as a flag for its CLI.
    "model": "CCNet",
    # "logits" is the fixed head; "seed" reproduces the tutorial's ReLU+Softmax head.
    "head": "logits",
    # The seed's hand-picked hyperparameters are the baseline every search must beat.
    "lr": 2e-4,
    "batch_size": 32,
    "epochs": 100,
    "dropout": 0.5,
    # StepLR: multiply lr by gamma every step_size epochs (seed: 0.8 every 20).
    "step_size": 20,
    "gamma": 0.8,
    # Random translation of each training image by up to `shift` pixels per axis, drawn anew
    # every epoch (0 = none, the seed's). MNIST digits are centred by their centre of mass, so
    # small shifts are the cheapest honest augmentation; validation and test images are never shifted.
    "shift": 0,
    # Seeds weights, dropout and the per-epoch shuffle: same seed + config = same run.
    "seed": 0,
    # None = the MNIST copy bundled in the package; else a folder of IDX or Kaggle CSV files.
    "data": None,
    # Use only the first `limit` of the 60,000 training images (quick runs); None = all.
    "limit": None,
    # The seed's split: the last 20% of the training images are the validation set;
    # 0 trains on all of them (final retraining only: there is nothing left to select on).
    "val_fraction": 0.2,
    # "auto" takes CUDA when there is one.
    "device": "auto",
    # CPU threads for torch; None = every CPU this process may use (Ray sets it per trial).
    "threads": None,
    # bf16 autocast where the hardware runs bf16 natively (recent NVIDIA GPUs; CPUs with
    # AVX512-BF16/AMX, where it trains ~1.5x faster); fp32 elsewhere. False = always fp32.
    "amp": True,
}

HEADS = ("logits", "seed")
DEVICES = ("auto", "cpu", "cuda")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_config(config: dict[str, Any]) -> None:
    """Raise UserError naming the first bad key or value."""
    unknown = sorted(set(config) - set(DEFAULTS))
    _check(not unknown, f"unknown config key(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})")
    missing = sorted(set(DEFAULTS) - set(config))
    _check(not missing, f"missing config key(s): {', '.join(missing)}")
    _check(config["model"] == "CCNet", f"model must be CCNet, got {config['model']!r}")
    _check(config["head"] in HEADS, f"head must be one of {HEADS}, got {config['head']!r}")
    _check(_is_number(config["lr"]) and config["lr"] > 0, f"lr must be > 0, got {config['lr']!r}")
    _check(_is_int(config["batch_size"]) and config["batch_size"] >= 1,
           f"batch_size must be an integer >= 1, got {config['batch_size']!r}")
    _check(_is_int(config["epochs"]) and config["epochs"] >= 1,
           f"epochs must be an integer >= 1, got {config['epochs']!r}")
    _check(_is_number(config["dropout"]) and 0 <= config["dropout"] < 1,
           f"dropout must be in [0, 1), got {config['dropout']!r}")
    _check(_is_int(config["step_size"]) and config["step_size"] >= 1,
           f"step_size must be an integer >= 1, got {config['step_size']!r}")
    _check(_is_number(config["gamma"]) and 0 < config["gamma"] <= 1,
           f"gamma must be in (0, 1], got {config['gamma']!r}")
    _check(_is_int(config["shift"]) and 0 <= config["shift"] <= 8,
           f"shift must be an integer number of pixels in [0, 8], got {config['shift']!r}")
    _check(_is_int(config["seed"]) and config["seed"] >= 0, f"seed must be an integer >= 0, got {config['seed']!r}")
    _check(config["data"] is None or isinstance(config["data"], str), f"data must be a folder path, got {config['data']!r}")
    _check(config["limit"] is None or (_is_int(config["limit"]) and config["limit"] >= 10),
           f"limit must be an integer >= 10 or None, got {config['limit']!r}")
    _check(_is_number(config["val_fraction"]) and 0 <= config["val_fraction"] < 1,
           f"val_fraction must be in [0, 1), got {config['val_fraction']!r}")
    _check(config["device"] in DEVICES, f"device must be one of {DEVICES}, got {config['device']!r}")
    _check(config["threads"] is None or (_is_int(config["threads"]) and config["threads"] >= 1),
           f"threads must be an integer >= 1 or None, got {config['threads']!r}")
    _check(isinstance(config["amp"], bool), f"amp must be true or false, got {config['amp']!r}")


def resolve_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS updated by `overrides`, validated. Unknown keys are errors."""
    config = dict(DEFAULTS)
    config.update(overrides or {})
    # YAML and JSON give ints where floats are meant (lr: 1); keep floats floats.
    for key in ("lr", "dropout", "gamma", "val_fraction"):
        if _is_int(config.get(key)):
            config[key] = float(config[key])
    validate_config(config)
    return config
