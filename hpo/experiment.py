"""An experiment: what to search, for how long, on what. Defaults -> YAML file -> CLI flags -> one plain dict.

A key that is not in EXPERIMENT_DEFAULTS (or, under `train`, not a key of mnist's config) is an
error: a typo never silently falls back to a default.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.space import Dimension, dimensions
from hpo.storage import read_experiment_file
from mnist.config import DEFAULTS as TRAIN_DEFAULTS
from mnist.config import KNOBS, MAX_SEED, Rule, integer, is_int, is_number, one_of, optional, resolve_config
from mnist.errors import UserError
from mnist.layout import EXPERIMENT_JSON

# Rules of the settings below, built like mnist.config's knob rules (a check and the words for it).
# Ray places a fraction of one GPU or whole GPUs: a trial asking 1.5 would wait forever.
GPUS = Rule(lambda v: is_number(v) and v >= 0 and (v <= 1 or float(v).is_integer()),
            "0, a fraction of one GPU (0.25) or a whole number of GPUs", float)
SECONDS = Rule(lambda v: is_number(v) and v > 0, "a number of seconds > 0", float)
MAPPING = Rule(lambda v: isinstance(v, dict), "a mapping of mnist config keys to values", None)
SPACE = Rule(lambda v: isinstance(v, dict) and bool(v), "a non-empty mapping of searched keys", None)


@dataclass(frozen=True)
class Setting:
    """One experiment setting: its default, its rule, its help; the why is the comment above its entry.
    A setting with `flags` (or none: "--" + the key with dashes) is also a flag of hpo/search.py; `cli` False
    keeps the mappings (train, search_space) to experiment files."""
    default: Any
    rule: Rule
    help: str
    flags: tuple[str, ...] = ()
    cli: bool = True


# The one table of experiment settings: what a YAML file or a flag of hpo/search.py may set, what each takes,
# and the defaults --help shows. A key not in it is an error; every value is checked against its rule before
# anything starts.
SETTINGS: dict[str, Setting] = {
    # Trials Optuna proposes (the tutorial's setting is the first of them).
    "num_samples": Setting(50, integer(1), "trials to run"),
    # The full epoch budget of one trial; ASHA stops most trials long before it.
    "max_epochs": Setting(30, integer(1), "epoch budget of one trial"),
    # "asha" stops weak trials early; "fifo" trains every trial to max_epochs (for comparison).
    "scheduler": Setting("asha", one_of("asha", "fifo"), "when to stop a trial: ASHA, or FIFO (every trial to the "
                                                        "budget)"),
    # "tpe" is Optuna's TPE through our searcher (stopped trials told PRUNED); for comparison, "random" samples
    # the space uniformly and "tpe-complete" is Ray's stock OptunaSearch, which tells stopped trials COMPLETE
    # with their last value (benchmarks/searchers.py measures the difference; such a search does not resume).
    "searcher": Setting("tpe", one_of("tpe", "random", "tpe-complete"),
                        "what to try next: Optuna's TPE, random sampling, or Ray's stock OptunaSearch"),
    # ASHA: every trial trains at least grace_period epochs; at each rung only the best
    # 1/reduction_factor go on. None = max_epochs // reduction_factor: tied to the budget, so
    # that slow starters (augmented, one-cycle) are not judged on their first epochs. Chosen by
    # benchmarks/schedulers.py at 30 epochs over 5 seeds: the best trials (99.33% against 99.26% for a 1-epoch
    # grace, 99.28% for the hedge) for 2.5x and 1.7x their epochs (docs/results.md).
    "grace_period": Setting(None, optional(integer(1)), "ASHA: epochs every trial gets (default: max_epochs // "
                                                        "reduction_factor)"),
    "reduction_factor": Setting(4, integer(2), "ASHA: keep the best 1/N at each rung"),
    # ASHA's brackets (Hyperband's hedge against judging too early): 1 = plain ASHA; with 2, a trial
    # drawn into the second bracket (by a generator seeded by `seed`) is first judged reduction_factor
    # times later, so slow starters (augmented, annealed) are also judged on a longer horizon.
    "brackets": Setting(1, integer(1), "ASHA: brackets (2 adds Hyperband's hedge: trials judged later)"),
    # Trials at once; None = as many as the cluster's GPUs (or CPUs) hold, capped at 8 so that
    # TPE proposes from results instead of sampling blind.
    "max_concurrent": Setting(None, optional(integer(1)), "trials at once (default: what the cluster holds, "
                                                          "at most 8)"),
    # Resources of one trial; gpus_per_trial None = 1 when the cluster has GPUs, else 0.
    "cpus_per_trial": Setting(1, integer(1), "CPUs of one trial"),
    "gpus_per_trial": Setting(None, optional(GPUS), "GPUs of one trial, fractions allowed (default: 1 if the "
                                                    "cluster has GPUs, else 0)"),
    # Seeds TPE and every trial's training (weights, dropout, shuffle): same seed, same search.
    "seed": Setting(0, integer(0, MAX_SEED), "random seed of TPE, ASHA's brackets and every trial"),
    # TPE samples at random for its first trials, then models the results.
    "tpe_startup_trials": Setting(10, integer(0), "TPE: trials sampled at random before it models the results"),
    # Stop starting and running trials after this many seconds; None = no limit.
    "time_budget_s": Setting(None, optional(SECONDS), "stop the search after this many seconds (default: no limit)",
                             ("--time-budget",)),
    # Fixed settings of every trial's mnist config (data, limit, val_fraction, amp, ...), the tutorial's trial
    # included; a file's `train` is laid over these, key by key. 15% more training images as digits drawn from pen
    # strokes (mnist.strokes): MNIST's validation, which selects, cannot see what they buy (9s with curled tails,
    # hooked and high-looped 6s: notebook photos +2.8 points, drawings +2.0, MNIST's test unchanged; docs/results.md
    # "Digits MNIST lacks"), so they are a fixed part of the data, not a searched knob. `synthetic: 0` drops them.
    "train": Setting({"synthetic": 0.15}, MAPPING, "fixed settings of every trial's mnist config, over these "
                                                   "defaults", cli=False),
    # What is searched: key -> {distribution: [low, high]} or {choice: [values]}; below.
    "search_space": Setting(None, SPACE, "what is searched", cli=False),
}
# The settings that are also flags of hpo/search.py.
FLAG_SETTINGS = {key: setting for key, setting in SETTINGS.items() if setting.cli}

EXPERIMENT_DEFAULTS: dict[str, Any] = {
    **{key: setting.default for key, setting in SETTINGS.items()},
    "search_space": {
        # The design card's four: Adam's step size, batch, dropout, StepLR.
        "lr": {"loguniform": [1e-5, 1e-2]},
        "batch_size": {"choice": [32, 64, 128, 256, 512]},
        "dropout": {"uniform": [0.0, 0.7]},
        "step_size": {"randint": [1, "max_epochs"]},
        "gamma": {"uniform": [0.1, 1.0]},
        # Where the headroom is on MNIST: schedules tied to the budget, regularisation, augmentation.
        "schedule": {"choice": ["step", "cosine", "onecycle"]},
        "weight_decay": {"choice": [0.0, 1e-4, 1e-3, 1e-2, 5e-2]},
        "label_smoothing": {"uniform": [0.0, 0.2]},
        "rotate": {"uniform": [0.0, 20.0]},
        "scale": {"uniform": [0.0, 0.2]},
        "shift": {"randint": [0, 3]},
        # People's variation (mnist.augment): slant, width, wobble, pen, gaps. They rarely move MNIST's
        # validation accuracy but decide how drawn and photographed digits read (mnist.reading.field_report).
        "shear": {"uniform": [0.0, 20.0]},
        "stretch": {"uniform": [0.0, 0.25]},
        "elastic": {"uniform": [0.0, 3.0]},
        "thickness": {"uniform": [0.0, 0.8]},
        "erase": {"uniform": [0.0, 0.5]},
    },
}



def plain(value: Any) -> Any:
    """A numpy scalar (from a DataFrame row) as the Python number JSON expects."""
    return value.item() if hasattr(value, "item") else value


def _resolve_space(space: dict[str, Any], max_epochs: int, where: str) -> dict[str, dict[str, list]]:
    """Check the search space's keys and ranges and replace "max_epochs" bounds by the budget."""
    resolved = {}
    for key, spec in space.items():
        if key not in KNOBS or not KNOBS[key].searchable:
            raise UserError(f"{where}: search_space key {key!r} is not a searchable training setting")
        resolved[key] = Dimension.parse(key, spec, max_epochs, where).spec()
    return resolved


def baseline_point(keys: Any, max_epochs: int) -> dict[str, Any]:
    """The tutorial's setting (mnist's defaults) for `keys` at a budget of `max_epochs`: its StepLR step (20
    epochs) capped to the budget, so that the tutorial's decay happens within a short search too.

    The one place the baseline is made: trial 1 of every search, never stopped early, the point every summary
    compares against (resolved once into the experiment's "baseline"), and best.py's baseline at its own budget.
    """
    return {key: min(TRAIN_DEFAULTS[key], max_epochs) if key == "step_size" else TRAIN_DEFAULTS[key] for key in keys}


def is_baseline(baseline: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a trial's config (or its searched params) is the tutorial's setting: the one test the scheduler,
    the searcher, the summaries and the tracking share."""
    return all(key in config and config[key] == value for key, value in baseline.items())


def in_space(point: dict[str, Any], space: dict[str, dict[str, list]]) -> bool:
    """Whether every value of `point` lies inside its search-space range (or choices)."""
    return all(dimension.contains(point[key]) for key, dimension in dimensions(space).items())


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, "a key that is a list or a mapping",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_experiment_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except FileNotFoundError:
        raise UserError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not an experiment file (a YAML file such as experiments/cpu-quick.yaml)"
                        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserError(f"{path}: an experiment file must be a mapping of keys to values")
    return content


def resolve_experiment(file_values: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """EXPERIMENT_DEFAULTS <- file <- CLI overrides (None = not given), checked; `where` names the source."""
    experiment = copy.deepcopy(EXPERIMENT_DEFAULTS)
    unknown = sorted(str(key) for key in set(file_values) - set(SETTINGS))  # a YAML key may be a number or null
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(experiment)})")
    experiment.update(copy.deepcopy(file_values))
    if isinstance(file_values.get("train"), dict):  # laid over the default train settings (else the rule names it)
        experiment["train"] = {**copy.deepcopy(EXPERIMENT_DEFAULTS["train"]), **experiment["train"]}
    experiment.update({key: value for key, value in overrides.items() if value is not None})
    budget, factor = experiment["max_epochs"], experiment["reduction_factor"]
    if experiment["grace_period"] is None and all(is_int(v) and v >= 1 for v in (budget, factor)):
        experiment["grace_period"] = max(1, budget // factor)  # else _check_experiment names the bad one
    _check_experiment(experiment, where)
    experiment["search_space"] = _resolve_space(experiment["search_space"], experiment["max_epochs"], where)
    experiment["baseline"] = baseline_point(experiment["search_space"], experiment["max_epochs"])
    _check_baseline_inside(experiment, where)
    return experiment


def saved_experiment(folder: Path) -> dict[str, Any]:
    """The resolved experiment a search folder saved (experiment.json), as resolve_experiment made it; one line
    naming the file when settings are missing. Files of ccnet-hpo 0.1 lack two that came later (brackets,
    baseline): they are made here, until 0.3.0."""
    experiment = read_experiment_file(folder)["experiment"]
    experiment.setdefault("brackets", SETTINGS["brackets"].default)
    missing = sorted(set(SETTINGS) - set(experiment))
    if missing:
        raise UserError(f"{folder / EXPERIMENT_JSON}: not a resolved experiment (no {', '.join(missing)})")
    if "baseline" not in experiment:
        experiment["baseline"] = baseline_point(experiment["search_space"], experiment["max_epochs"])
    where = str(folder / EXPERIMENT_JSON)  # a file edited by hand is checked as a new one would be
    _check_experiment(experiment, where)
    experiment["search_space"] = _resolve_space(experiment["search_space"], experiment["max_epochs"], where)
    return experiment


def _check_baseline_inside(experiment: dict[str, Any], where: str) -> None:
    """Refuse a space that cannot hold the tutorial's setting: the baseline trial, its protection
    from early stopping and every comparison in the reports would silently vanish."""
    baseline = experiment["baseline"]
    for key, spec in experiment["search_space"].items():
        if not in_space({key: baseline[key]}, {key: spec}):
            raise UserError(f"{where}: search_space.{key} {spec} does not hold the tutorial's value {baseline[key]!r}, "
                            "the baseline of every comparison; widen it (a choice can list it)")


def _check_experiment(experiment: dict[str, Any], where: str) -> None:
    """Every setting against its rule in SETTINGS, then what ties settings together."""
    for key, setting in SETTINGS.items():
        value = experiment[key]
        if not setting.rule.check(value):
            raise UserError(f"{where}: {key} must be {setting.rule.text}, got {value!r}")
    if experiment["grace_period"] > experiment["max_epochs"]:
        raise UserError(f"{where}: grace_period ({experiment['grace_period']}) exceeds max_epochs ({experiment['max_epochs']})")
    reserved = sorted({"epochs", "seed", "threads"} & set(experiment["train"]))
    if reserved:
        raise UserError(f"{where}: train.{reserved[0]} is set by the search (use max_epochs, seed, cpus_per_trial)")
    try:
        trial_config(experiment, {})
    except UserError as error:
        raise UserError(f"{where}: train: {error}") from None


def trial_config(experiment: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """The full mnist config of one trial: the tutorial's defaults, the fixed `train` settings, the sample."""
    fixed = {"epochs": experiment["max_epochs"], "seed": experiment["seed"],
             "threads": int(math.ceil(experiment["cpus_per_trial"])),
             **baseline_point(["step_size"], experiment["max_epochs"])}
    return resolve_config({**fixed, **experiment["train"], **sampled})
