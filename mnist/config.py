"""The training config: one plain dict of plain values, checked before any work starts.

Every knob is ONE entry of `KNOBS` below: its default (the tutorial's behaviour, so an
old config or checkpoint means what it meant), a why-comment, its rule, and its help text.
`DEFAULTS`, `validate_config` and the flags of `python -m mnist.train` are all derived from it,
so adding a knob is one entry here plus its use in the training loop.

Config flows one way: DEFAULTS -> experiment file -> CLI flags -> `resolve_config` -> the
trainable. A key that is not in KNOBS is an error, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

from mnist.device import DEVICE_CHOICES
from mnist.errors import UserError


@dataclass(frozen=True)
class Rule:
    """What values a knob takes: a check, the words for it, and how a CLI string becomes one."""
    check: Callable[[Any], bool]
    text: str
    parse: Callable[[str], Any] | None = str
    choices: tuple | None = None


def is_int(value: Any) -> bool:
    """An int, not a bool (YAML's true is not 1 here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: int | None = None) -> Rule:
    text = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(lambda v: is_int(v) and v >= low and (high is None or v <= high), text, int)


def number(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite float in the interval; open ends say so ("(0, 1]")."""
    def check(value: Any) -> bool:
        return (is_number(value) and (value > low if low_open else value >= low)
                and (value < high if high_open else value <= high))
    return Rule(check, f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}", float)


def positive() -> Rule:
    return Rule(lambda v: is_number(v) and v > 0, "> 0", float)


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(map(str, choices))}", str, choices)


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.check(v), f"{rule.text} or None", rule.parse, rule.choices)


BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false", None)
FOLDER = Rule(lambda v: v is None or isinstance(v, str), "a folder path or None", str)


@dataclass(frozen=True)
class Knob:
    default: Any
    rule: Rule
    help: str
    # CLI flags; empty = "--" + the key with dashes. The tutorial's short flags are kept.
    flags: tuple[str, ...] = ()
    # Whether a search may vary it: not what the search sets itself (epochs, seed, threads), nor what
    # defines the data, the split it selects on, or where and how precisely it runs.
    searchable: bool = True


MAX_SEED = 2**32 - 1  # numpy's legacy seeding and many tools take no more


KNOBS: dict[str, Knob] = {
    # The tutorial's model; the only one there is, kept as a flag for its CLI.
    "model": Knob("CCNet", one_of("CCNet"), "model to train", ("-m", "--model"), searchable=False),
    # "logits" is the fixed head; "tutorial" reproduces the tutorial's ReLU+Softmax head (to compare).
    "head": Knob("logits", one_of("logits", "tutorial"), "'tutorial' = the tutorial's ReLU+Softmax head"),
    # The tutorial's hand-picked optimiser settings are the baseline every search must beat.
    "lr": Knob(2e-4, positive(), "initial (peak, for onecycle) learning rate", ("-l", "--init_lr")),
    "batch_size": Knob(32, integer(1), "batch size", ("-b", "--batch_size")),
    "epochs": Knob(100, integer(1), "number of epochs", ("-e", "--epochs"), searchable=False),
    "dropout": Knob(0.5, number(0, 1, high_open=True), "dropout before the classifier"),
    # Decoupled weight decay (AdamW); 0 = plain Adam, the tutorial's optimiser.
    "weight_decay": Knob(0.0, number(0, 1), "decoupled weight decay (AdamW); 0 = Adam"),
    # Soft targets keep an over-confident net from memorising the few mislabelled-looking digits.
    "label_smoothing": Knob(0.0, number(0, 0.5, high_open=True), "label smoothing of the cross-entropy loss"),
    # "step" is the tutorial's StepLR; "cosine" and "onecycle" follow the epoch budget, stepped per batch.
    "schedule": Knob("step", one_of("step", "cosine", "onecycle"), "learning-rate schedule"),
    # StepLR: multiply lr by gamma every step_size epochs (tutorial: 0.8 every 20).
    "step_size": Knob(20, integer(1), "StepLR step in epochs (schedule step)"),
    "gamma": Knob(0.8, number(0, 1, low_open=True), "StepLR factor (schedule step)"),
    # A linear warm-up from 1% of lr over the first N epochs, stepped per batch, then the schedule over the
    # rest: a large peak lr (cosine's, one-cycle's) taken at once can throw the first steps off. 0 = none, the
    # tutorial's; one-cycle warms up by design, over N epochs when N > 0, else over its first quarter.
    "warmup_epochs": Knob(0.0, number(0, 1000), "linear warm-up over the first N epochs (may be fractional; "
                                                "0 = none, onecycle: its first quarter)"),
    # An exponential moving average of the weights, updated after every optimizer step: the averaged weights
    # sit nearer the middle of the minimum the last steps wander around (Polyak averaging), and are what is
    # validated, checkpointed and served. Off = the tutorial's (the last step's weights).
    "ema": Knob(False, BOOLEAN, "validate, checkpoint and serve an exponential moving average of the weights"),
    # Its decay per optimizer step: 0.999 averages over the last ~1,000 steps (about 3 epochs at batch 128);
    # over the first steps it ramps up from 0.1 (mnist.train.ema_step), so the average follows early training.
    "ema_decay": Knob(0.999, number(0, 1, low_open=True, high_open=True), "EMA: decay per optimizer step (with --ema)"),
    # Augmentation, drawn per image from (seed, epoch) so a resumed run draws the same; validation
    # and test images are never augmented. 0 everywhere = none, the tutorial's.
    # Random translation by up to `shift` whole pixels per axis: MNIST digits sit centred by mass.
    "shift": Knob(0, integer(0, 8), "augment: shift training images up to N pixels"),
    # Random rotation by up to +-`rotate` degrees: handwriting slants.
    "rotate": Knob(0.0, number(0, 45), "augment: rotate training images up to +-N degrees"),
    # Random zoom by a factor in [1 - scale, 1 + scale]: digits come in different sizes.
    "scale": Knob(0.0, number(0, 0.5), "augment: zoom training images by up to +-F (0.1 = 10%)"),
    # The ways people's digits differ from MNIST's (measured on drawn and photographed digits:
    # slant, narrow or wide writing, wobbly strokes, pen width, broken strokes).
    # Random slant by up to +-`shear` degrees: people lean their digits more than MNIST's writers.
    "shear": Knob(0.0, number(0, 45), "augment: slant training images up to +-N degrees"),
    # Random width by a factor in [1 - stretch, 1 + stretch], height kept: narrow 2s and 8s read as 1.
    "stretch": Knob(0.0, number(0, 0.5), "augment: widen or narrow training images by up to +-F"),
    # Elastic distortion (Simard et al. 2003): a smooth random field moves pixels by up to ~N px.
    "elastic": Knob(0.0, number(0, 6), "augment: elastic distortion, displacements up to N pixels"),
    # Strokes blended towards their 3x3 dilation or erosion by up to F: pens of other widths.
    "thickness": Knob(0.0, number(0, 1), "augment: thicken or thin strokes by up to F of one pixel a side"),
    # Probability of erasing a 3-7 px box of an image: gaps in a stroke, faint pens, scan dropouts.
    "erase": Knob(0.0, number(0, 1), "augment: erase a small box with probability P"),
    # A share of the training images corrupted as images no one here made are (mnist.corrupt: noise, blur, fog,
    # uneven light, bars and page edges, rules and dotted lines, scribbles, specks, hollow and thin or thick strokes,
    # strong turns and slants), one kind each: robustness from training data, not from preprocessing rules
    # (issue #41). 0 = none, the tutorial's.
    "corrupt": Knob(0.0, number(0, 1), "augment: corrupt a share P of the training images (noise, blur, fog, "
                                       "lines, bars, scribbles, hollow strokes, ...)"),
    # Extra training digits drawn from random pen-stroke styles MNIST's writers rarely used (mnist.strokes: 9s
    # with a curled tail, 6s hooked or with a high loop, 1s with a lead-in or a base), as a share of the training
    # images: 0.1 adds 10%. People write these; MNIST alone reads them as 8, 0 or 7. 0 = none, the tutorial's.
    "synthetic": Knob(0.0, number(0, 1), "add a share F of digits drawn from pen strokes to the training images"),
    # Seeds weights, dropout, the per-epoch shuffle and augmentation: same seed + config = same run.
    "seed": Knob(0, integer(0, MAX_SEED), "random seed", searchable=False),
    # None = the MNIST copy bundled in the package; else a folder of IDX or Kaggle CSV files.
    "data": Knob(None, FOLDER, "folder of IDX or Kaggle CSV files (default: bundled MNIST)", searchable=False),
    # Use only the first `limit` of the 60,000 training images (quick runs); None = all.
    "limit": Knob(None, optional(integer(10)), "train on the first N training images only", searchable=False),
    # The tutorial's split: the last 20% of the training images are the validation set;
    # 0 trains on all of them (final retraining only: there is nothing left to select on).
    "val_fraction": Knob(0.2, number(0, 1, high_open=True), "share of training images for validation",
                         searchable=False),
    # "auto" takes CUDA when there is one.
    "device": Knob("auto", one_of(*DEVICE_CHOICES), "auto takes CUDA when present", searchable=False),
    # CPU threads for torch; None = every CPU this process may use (Ray sets it per trial).
    "threads": Knob(None, optional(integer(1)), "CPU threads for torch (default: all available)", searchable=False),
    # bf16 autocast where the hardware runs bf16 natively (recent NVIDIA GPUs; CPUs with
    # AVX512-BF16/AMX, where it trains ~1.5x faster); fp32 elsewhere. False = always fp32.
    "amp": Knob(True, BOOLEAN, "bf16 autocast where the hardware does bf16 natively (--no-amp = fp32)",
                searchable=False),
    # On CUDA: deterministic cuDNN kernels, no autotuning, no TF32, so that the same seed gives the same
    # run on a GPU as it does on CPU; False trades that for speed (cudnn.benchmark, TF32 matmuls and
    # convolutions: 10 mantissa bits). No effect on CPU. The checkpoint's "precision" says what ran.
    "cuda_exact": Knob(True, BOOLEAN, "on CUDA: deterministic kernels and no TF32 (--no-cuda-exact: faster)",
                       searchable=False),
}

DEFAULTS: dict[str, Any] = {key: knob.default for key, knob in KNOBS.items()}
# Compatibility: values renamed since (head "seed" became "tutorial", 2026-11); configs and checkpoints
# written before still hold the old names. Goes in ccnet-hpo 0.3.0.
RENAMED_VALUES = {"head": {"seed": "tutorial"}}


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with renamed values under their present names (an old checkpoint's config)."""
    return {key: RENAMED_VALUES.get(key, {}).get(value, value) if isinstance(value, str) else value
            for key, value in config.items()}


def validate_config(config: dict[str, Any]) -> None:
    """Raise UserError naming the first bad key or value."""
    unknown = sorted(str(key) for key in set(config) - set(KNOBS))  # a YAML key may be a number or null
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(unknown)} (known: {', '.join(KNOBS)})")
    missing = sorted(set(KNOBS) - set(config))
    if missing:
        raise UserError(f"missing config key(s): {', '.join(missing)}")
    for key, knob in KNOBS.items():
        check_value(key, config[key])
    check_within_budget("warmup_epochs", config["warmup_epochs"], config["epochs"])


def check_within_budget(key: str, value: float, epochs: int) -> None:
    """A warm-up must end before the budget does: the schedule needs steps after it."""
    if value >= epochs:
        raise UserError(f"{key}={value:g} is not shorter than the budget of {epochs} epochs; warm up for fewer "
                        "epochs or train for more")


def check_value(key: str, value: Any) -> None:
    """Raise UserError when `value` breaks the rule of knob `key`."""
    rule = KNOBS[key].rule
    if not rule.check(value):
        raise UserError(f"{key} must be {rule.text}, got {value!r}")


def resolve_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS updated by `overrides`, validated. Unknown keys are errors."""
    config = dict(DEFAULTS)
    config.update(upgrade_config(overrides or {}))
    # YAML and JSON give ints where floats are meant (lr: 1); keep floats floats.
    for key, knob in KNOBS.items():
        if knob.rule.parse is float and is_int(config.get(key)):
            config[key] = float(config[key])
    validate_config(config)
    return config


def add_table_flags(parser: argparse.ArgumentParser, table: dict[str, Any]) -> None:
    """One flag per entry of a table of settings (KNOBS, or hpo's experiment SETTINGS: each entry has a default,
    a rule, a help and its flags), named by the table; every flag defaults to None (= not given), and its help
    shows the table's default."""
    for key, knob in table.items():
        flags = knob.flags or (f"--{key.replace('_', '-')}",)
        shown = "" if knob.default is None else f" (default {knob.default})"
        help_text = f"{knob.help}{shown}".replace("%", "%%")
        if knob.rule is BOOLEAN:
            parser.add_argument(*flags, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(*flags, dest=key, type=knob.rule.parse, choices=knob.rule.choices, default=None,
                                help=help_text)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per knob."""
    add_table_flags(parser, KNOBS)


def config_from_flags(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """`base` (defaults or a resumed run's config) with every knob flag the user gave on top."""
    given = {key: getattr(args, key) for key in KNOBS if getattr(args, key) is not None}
    return resolve_config({**base, **given})
