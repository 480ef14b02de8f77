"""Experiment files: defaults <- YAML <- flags, unknown keys refused, the tutorial's point always in."""
from __future__ import annotations

from pathlib import Path

import pytest

from hpo.experiment import EXPERIMENT_DEFAULTS, load_experiment_file, resolve_experiment, baseline_point, trial_config
from mnist.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def test_default_file_searches_the_design_cards_knobs_and_the_new_ones() -> None:
    experiment = resolve_experiment(load_experiment_file(EXPERIMENTS / "default.yaml"), {}, "default.yaml")
    assert experiment["num_samples"] == 50
    space = experiment["search_space"]
    assert space["lr"] == {"loguniform": [1e-5, 1e-2]} and space["batch_size"] == {"choice": [32, 64, 128, 256, 512]}
    assert space["dropout"] == {"uniform": [0.0, 0.7]} and space["gamma"] == {"uniform": [0.1, 1.0]}
    assert space["step_size"] == {"randint": [1, experiment["max_epochs"]]}
    assert {"schedule", "weight_decay", "label_smoothing", "rotate", "scale", "shift"} <= set(space)
    assert space == default_space_at(experiment["max_epochs"])  # one default space, not a copy
    # The budget-tied grace period: a quarter of the budget with reduction factor 4.
    assert experiment["grace_period"] == experiment["max_epochs"] // 4


def default_space_at(max_epochs: int) -> dict:
    return resolve_experiment({"max_epochs": max_epochs}, {}, "defaults")["search_space"]


def test_cpu_quick_searches_the_new_knobs() -> None:
    experiment = resolve_experiment(load_experiment_file(EXPERIMENTS / "cpu-quick.yaml"), {}, "cpu-quick.yaml")
    assert {"schedule", "weight_decay", "label_smoothing", "rotate", "scale"} <= set(experiment["search_space"])


@pytest.mark.parametrize("space, key", [
    ({"weight_decay": {"loguniform": [1e-5, 1e-2]}}, "weight_decay"),   # cannot hold 0
    ({"schedule": {"choice": ["cosine", "onecycle"]}}, "schedule"),
    ({"lr": {"loguniform": [1e-3, 1e-2]}}, "lr"),
    ({"step_size": {"randint": [1, 5]}}, "step_size"),                    # the budget is 10: baseline step 10
])
def test_a_space_without_the_tutorials_setting_is_refused(space: dict, key: str) -> None:
    with pytest.raises(UserError, match=f"exp.yaml: search_space.{key} .* does not hold the tutorial's value"):
        resolve_experiment({"max_epochs": 10, "search_space": space}, {}, "exp.yaml")


def test_a_space_that_holds_the_tutorials_setting_keeps_it_as_trial_one() -> None:
    experiment = resolve_experiment({"max_epochs": 10, "search_space": {
        "weight_decay": {"choice": [0, 1e-3]}, "rotate": {"uniform": [0, 10]}}}, {}, "exp.yaml")
    assert baseline_point(experiment["search_space"], 10) == {"weight_decay": 0.0, "rotate": 0.0}


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
    ({"gpus_per_trial": -1}, "gpus_per_trial must be 0, a fraction of one GPU (0.25) or a whole number of GPUs"),
    ({"gpus_per_trial": 2.5}, "gpus_per_trial must be 0, a fraction of one GPU (0.25) or a whole number of GPUs"),
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
    assert baseline_point(experiment["search_space"], 4) == {
        "lr": 2e-4, "batch_size": 32, "dropout": 0.5, "step_size": 4, "gamma": 0.8, "schedule": "step",
        "weight_decay": 0.0, "label_smoothing": 0.0, "rotate": 0.0, "scale": 0.0, "shift": 0, "shear": 0.0,
        "stretch": 0.0, "elastic": 0.0, "thickness": 0.0, "erase": 0.0}


def test_a_files_train_settings_are_laid_over_the_default_ones() -> None:
    """The experiments' fixed synthetic digits stay when a file sets other train keys, go when it sets 0, and
    reach every trial, the tutorial's included: MNIST's validation cannot select them, so they are not searched."""
    share = EXPERIMENT_DEFAULTS["train"]["synthetic"]
    assert share > 0 and "synthetic" not in EXPERIMENT_DEFAULTS["search_space"]
    experiment = resolve_experiment({"max_epochs": 4, "train": {"limit": 3000}}, {}, "x")
    assert experiment["train"] == {"synthetic": share, "limit": 3000}
    assert trial_config(experiment, experiment["baseline"])["synthetic"] == share
    assert resolve_experiment({"train": {"synthetic": 0}}, {}, "x")["train"] == {"synthetic": 0}
    assert resolve_experiment({}, {}, "x")["train"] == {"synthetic": share}
    with pytest.raises(UserError, match="synthetic"):
        resolve_experiment({"train": {"synthetic": 2}}, {}, "x")


def test_trial_config_is_a_full_mnist_config() -> None:
    experiment = resolve_experiment({"max_epochs": 4, "grace_period": 1, "cpus_per_trial": 2,
                                     "train": {"limit": 3000}}, {}, "x")
    config = trial_config(experiment, {"lr": 0.01})
    assert (config["epochs"], config["threads"], config["limit"], config["lr"]) == (4, 2, 3000, 0.01)
    with pytest.raises(UserError, match="lr must be > 0"):
        trial_config(experiment, {"lr": -1.0})


@pytest.mark.parametrize("space, message", [
    ({"batch_size": {"choice": [0, "abc"]}}, "search_space.batch_size.choice [0, 'abc']: batch_size must be an integer >= 1"),
    ({"dropout": {"uniform": [0.5, 1.5]}}, "search_space.dropout.uniform [0.5, 1.5]: dropout must be in [0, 1)"),
    ({"schedule": {"choice": ["step", "linear"]}}, "schedule must be one of step, cosine, onecycle, got 'linear'"),
    ({"rotate": {"uniform": [0, 90]}}, "rotate must be in [0, 45], got 90.0"),
])
def test_every_corner_and_choice_of_the_space_is_checked_before_ray(space: dict, message: str) -> None:
    with pytest.raises(UserError) as error:
        resolve_experiment({"search_space": space}, {}, "exp.yaml")
    assert message in str(error.value) and str(error.value).startswith("exp.yaml: ")


def test_a_one_epoch_budget_follows_from_the_defaults() -> None:
    experiment = resolve_experiment({}, {"max_epochs": 1}, "flags")
    assert experiment["grace_period"] == 1
    assert experiment["search_space"]["step_size"] == {"choice": [1]}  # randint [1, max_epochs] shrank to 1
    with pytest.raises(UserError, match="grace_period \\(3\\) exceeds max_epochs \\(1\\)"):
        resolve_experiment({"grace_period": 3}, {"max_epochs": 1}, "flags")  # set by the user: still refused
    with pytest.raises(UserError, match="needs 0 < low < high"):
        resolve_experiment({"search_space": {"step_size": {"randint": [2, 2]}}}, {}, "x")  # written so: refused


def test_a_dimension_knows_its_scale_domain_and_inside() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    from hpo.space import Dimension

    lr = Dimension("loguniform", (1e-5, 1e-2))
    decay = Dimension("choice", (0.0, 1e-4, 1e-3))
    steps = Dimension("randint", (1, 5))
    assert lr.log_scale and not decay.log_scale
    assert lr.format(2e-4) == "2.0e-04" and decay.format(1e-4) == "0.0001" and steps.format(3) == "3"
    assert lr.contains(1e-3) and not lr.contains(0.1) and decay.contains(0.0) and not decay.contains(0.5)
    assert isinstance(lr.domain(), Float) and isinstance(decay.domain(), Categorical)
    assert isinstance(steps.domain(), Integer) and steps.domain().upper == 6  # Tune's bound is exclusive
    assert lr.position(1e-5) == 0 and lr.position(1e-2) == pytest.approx(1) and lr.position(10 ** -3.5) == pytest.approx(0.5)
    assert lr.distribution().log and decay.distribution().choices == (0.0, 1e-4, 1e-3)


def test_parallel_coordinates_tell_99_3_from_99_4_beside_a_diverged_trial() -> None:
    import numpy as np

    from hpo.plots import error_colors

    colors, _ = error_colors(np.array([0.993, 0.994, 0.10]))
    close_pair = np.abs(colors[0, :3] - colors[1, :3]).sum()
    assert close_pair > 0.1  # a linear accuracy scale spanning 0.10..0.994 made these the same yellow
    assert np.abs(colors[1, :3] - colors[2, :3]).sum() > close_pair  # and the diverged one is further still
