"""Experiment files: defaults <- YAML <- flags, unknown keys refused, the seed's point always in."""
from __future__ import annotations

from pathlib import Path

import pytest

from hpo.experiment import EXPERIMENT_DEFAULTS, load_experiment_file, resolve_experiment, baseline_point, trial_config
from mnist.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def test_default_file_is_the_design_cards_search() -> None:
    experiment = resolve_experiment(load_experiment_file(EXPERIMENTS / "default.yaml"), {}, "default.yaml")
    assert experiment["num_samples"] == 50
    assert experiment["search_space"] == {
        "lr": {"loguniform": [1e-5, 1e-2]}, "batch_size": {"choice": [32, 64, 128, 256, 512]},
        "dropout": {"uniform": [0.0, 0.7]}, "step_size": {"randint": [1, experiment["max_epochs"]]},
        "gamma": {"uniform": [0.1, 1.0]}}


def test_cli_overrides_file_and_file_overrides_defaults() -> None:
    file_values = load_experiment_file(EXPERIMENTS / "cpu-quick.yaml")
    experiment = resolve_experiment(file_values, {"num_samples": 7, "seed": None}, "cpu-quick.yaml")
    assert experiment["num_samples"] == 7  # flag
    assert experiment["max_epochs"] == file_values["max_epochs"] != EXPERIMENT_DEFAULTS["max_epochs"]  # file
    assert experiment["seed"] == EXPERIMENT_DEFAULTS["seed"]  # default
    assert experiment["search_space"]["step_size"] == {"randint": [1, file_values["max_epochs"]]}


@pytest.mark.parametrize("values, message", [
    ({"num_sample": 3}, "unknown key(s) num_sample"),
    ({"train": {"lr_typo": 1}}, "unknown config key(s): lr_typo"),
    ({"train": {"epochs": 3}}, "train.epochs is set by the search"),
    ({"search_space": {"lr": {"normal": [0, 1]}}}, "search_space.lr must be one of"),
    ({"search_space": {"lr": {"loguniform": [0, 1]}}}, "needs 0 < low < high"),
    ({"search_space": {"momentum": {"uniform": [0, 1]}}}, "'momentum' is not a searchable"),
    ({"grace_period": 5, "max_epochs": 3}, "grace_period (5) exceeds max_epochs (3)"),
    ({"gpus_per_trial": -1}, "gpus_per_trial must be a number >= 0"),
])
def test_bad_experiment_is_refused(values: dict, message: str) -> None:
    with pytest.raises(UserError, match="exp.yaml: ") as error:
        resolve_experiment(values, {}, "exp.yaml")
    assert message in str(error.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("num_samples: [1, 2\n")
    with pytest.raises(UserError, match=f"{broken}: not valid YAML"):
        load_experiment_file(broken)
    with pytest.raises(UserError, match="no such experiment file"):
        load_experiment_file(tmp_path / "missing.yaml")


def test_yaml_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("search_space:\n  lr: {loguniform: [1e-5, 1e-2]}\n")  # PyYAML reads 1e-5 as a string
    experiment = resolve_experiment(load_experiment_file(path), {}, str(path))
    assert experiment["search_space"]["lr"] == {"loguniform": [1e-5, 1e-2]}


def test_baseline_point_is_the_tutorials_setting_capped_to_the_budget() -> None:
    experiment = resolve_experiment({"max_epochs": 4, "grace_period": 1}, {}, "x")
    assert baseline_point(experiment["search_space"], 4) == {"lr": 2e-4, "batch_size": 32, "dropout": 0.5,
                                                         "step_size": 4, "gamma": 0.8}


def test_trial_config_is_a_full_mnist_config() -> None:
    experiment = resolve_experiment({"max_epochs": 4, "grace_period": 1, "cpus_per_trial": 2,
                                     "train": {"limit": 3000}}, {}, "x")
    config = trial_config(experiment, {"lr": 0.01})
    assert (config["epochs"], config["threads"], config["limit"], config["lr"]) == (4, 2, 3000, 0.01)
    with pytest.raises(UserError, match="lr must be > 0"):
        trial_config(experiment, {"lr": -1.0})
