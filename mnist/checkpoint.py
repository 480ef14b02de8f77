"""Checkpoints and run metadata: safe loads, the config, argv and git commit inside (written whole: mnist.atomic).

A checkpoint holds everything needed to resume a run exactly (model, optimizer, scheduler,
epoch, RNG states, history) and to know where it came from (config, argv, git commit).
"""
from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from mnist.atomic import write_atomic
from mnist.config import is_int, resolve_config, upgrade_config
from mnist.errors import UserError, mask_credentials

# Every checkpoint has a model and its config; a training checkpoint also what resuming needs.
MODEL_KEYS = ("model", "config")
RESUME_KEYS = MODEL_KEYS + ("optimizer", "scheduler", "epoch", "history", "rng")


def git_commit() -> str:
    """The commit of the code that runs, with '+dirty' when it has uncommitted changes; 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def run_metadata() -> dict[str, Any]:
    """What is saved beside every result and inside every checkpoint, next to the config."""
    return {"argv": [mask_credentials(word) for word in sys.argv], "git_commit": git_commit(),
            "version": package_version()}


def package_version() -> str:
    """This project's installed version (pyproject.toml's), or "unknown" when run from a copy not installed."""
    try:
        return importlib.metadata.version("ccnet-hpo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, for_resume: bool = False) -> dict[str, Any]:
    """Load a CCNet checkpoint (weights_only: no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types, with causes like "(101)", for a file that is not a checkpoint
        raise UserError(f"{path}: not a checkpoint, or truncated") from None
    needed = RESUME_KEYS if for_resume else MODEL_KEYS
    if not isinstance(state, dict) or any(key not in state for key in needed):
        what = "training checkpoint to resume from" if for_resume else "CCNet checkpoint"
        raise UserError(f"{path}: not a {what} (expected keys {', '.join(needed)})")
    check_contents(state, path)
    if for_resume:
        check_resume_contents(state, path)
    return state


def check_resume_contents(state: dict[str, Any], path: Path) -> None:
    """What resuming reads besides the weights: the history (a list of epochs' metrics, as many as the epoch
    says), the optimizer's and scheduler's states (mappings) and the RNG state (a byte tensor)."""
    history = state["history"]
    if not isinstance(history, list) or not all(isinstance(row, dict) and "epoch" in row for row in history):
        raise UserError(f"{path}: its history is not a list of epochs' metrics")
    if not is_count(state["epoch"]) or state["epoch"] != len(history):
        raise UserError(f"{path}: its epoch {state['epoch']!r} does not match its history of {len(history)} epochs")
    for key in ("optimizer", "scheduler"):
        if not isinstance(state[key], dict):
            raise UserError(f"{path}: its {key} state is not a mapping")
    rng = state["rng"]
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor) or rng["torch"].dtype != torch.uint8:
        raise UserError(f"{path}: its rng state is not torch's (a byte tensor under 'torch')")
    # An EMA run's "model" is the average; resuming also needs the weights being trained.
    if resolve_config(upgrade_config(state["config"]))["ema"] and not (
            isinstance(state.get("trained_model"), dict) and is_count(state.get("ema_updates"))):
        raise UserError(f"{path}: trained with ema but holds no trained_model and ema_updates to resume from")


def is_count(value: Any) -> bool:
    return is_int(value) and value >= 0


def check_contents(state: dict[str, Any], path: Path) -> None:
    """Refuse, naming the file, weights that are not a table of tensors or not finite (a diverged run's),
    and a config that breaks the knobs' rules."""
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(value, torch.Tensor) for value in weights.values()):
        raise UserError(f"{path}: its model is not a table of weight tensors")
    if not all(bool(torch.isfinite(value).all()) for value in weights.values() if value.is_floating_point()):
        raise UserError(f"{path}: its weights are not finite (a run that diverged); train again or pick another")
    members = state.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise UserError(f"{path}: its member count {members!r} is not a whole number >= 1")
    held = {name.split(".")[1] for name in weights if name.startswith("members.")}
    if members > 1 and (len(held) != members or held != {str(index) for index in range(members)}):
        raise UserError(f"{path}: says {members} ensemble members but its weights hold {len(held)}")
    if not isinstance(state["config"], dict):
        raise UserError(f"{path}: its config is not a mapping")
    if state.get("calibration") is not None:
        check_calibration(state["calibration"], f"{path}: calibration")
    try:
        resolve_config(upgrade_config(state["config"]))
    except UserError as error:
        raise UserError(f"{path}: config: {error}") from None


def check_calibration(calibration: Any, where: str, as_text: bool = False) -> tuple[float, float]:
    """(temperature, unsure_below) of a checkpoint's or an export's calibration, checked where it enters: a
    temperature that is not a finite number > 0 flips or flattens every probability, and a threshold outside
    [0, 1] (or NaN) makes "not sure" always or never true. One line naming `where` and the key. `as_text`: the
    numbers are written as text (an export's metadata), else they must be numbers."""
    if not isinstance(calibration, dict):
        raise UserError(f"{where} is not a mapping (got {type(calibration).__name__})")
    temperature, unsure_below = (number_in(calibration, key, where, as_text) for key in ("temperature", "unsure_below"))
    if not temperature > 0:
        raise UserError(f"{where}.temperature must be a finite number > 0, got {calibration['temperature']!r}")
    if not 0 <= unsure_below <= 1:
        raise UserError(f"{where}.unsure_below must be a probability in [0, 1], got {calibration['unsure_below']!r}")
    return temperature, unsure_below


def number_in(mapping: dict, key: str, where: str, as_text: bool) -> float:
    """mapping[key] as a finite float: a number (an int or float, not a bool), or with `as_text` its text."""
    if key not in mapping:
        raise UserError(f"{where} has no {key}")
    value = mapping[key]
    number = math.nan
    if isinstance(value, str) if as_text else (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            number = float(value)
        except ValueError:
            pass
    if not math.isfinite(number):
        raise UserError(f"{where}.{key} must be a finite number, got {value!r}")
    return number
