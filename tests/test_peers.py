"""benchmarks.peers' measurements on hand-made epochs, its peers' pieces on a few hundred images, its flags.
The benchmark itself runs at a toy size in tests/test_bench.py (on that file's shared Ray cluster)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import peer_tools
from benchmarks.peer_tools import OutOfTime, PeerTask, config_space, not_installed, read_epoch_log, train_trial
from benchmarks.peers import (ARMS, best_so_far, chosen_arms, figures, minutes_to_pass, paired_curve, parse_flags,
                              task_experiment, worst_point)
from hpo.comparison import paired_gain
from hpo.space import dimensions
from mnist.errors import UserError


def epochs_at(started: float, *moments_and_values: tuple[float, float]) -> list[dict]:
    return [{"time": started + moment, "val_acc": value, "epoch_time_s": 10.0} for moment, value in moments_and_values]


def test_only_the_epochs_within_the_budget_count() -> None:
    row = figures(epochs_at(1000.0, (30, 0.9), (10, 0.8), (61, 0.99), (60, 0.95)), started=1000.0, budget_s=60,
                  workers=2, wall_s=75.0, tutorial_val_acc=0.93)
    assert [line[0] for line in row["epochs_log"]] == [10, 30, 60]  # in time order; the one at 61 s is out
    assert row["epochs"] == 3 and row["best_val_acc"] == 0.95 and row["train_s"] == 30.0
    assert row["train_share"] == pytest.approx(30 / (60 * 2)) and row["tutorial_val_acc"] == 0.93
    nothing = figures([], 0.0, 60, 2, 60.0, None)
    assert nothing["best_val_acc"] is None and nothing["epochs"] == 0 and nothing["train_share"] == 0


def test_the_anytime_curve_holds_the_best_so_far_and_nothing_before_the_first_epoch() -> None:
    row = figures(epochs_at(0.0, (10, 0.8), (30, 0.9), (50, 0.85)), 0.0, 60, 2, 60.0, None)
    curve = best_so_far(row, np.array([0, 9.9, 10, 29, 30, 60.0]))
    assert np.isnan(curve[:2]).all() and list(curve[2:]) == [0.8, 0.8, 0.9, 0.9]
    assert minutes_to_pass(row, 0.8) == pytest.approx(0.5)  # strictly above: the 0.9 at 30 s
    assert minutes_to_pass(row, 0.9) is None and minutes_to_pass(row, None) is None


def test_paired_differences_over_seeds_at_every_point_of_the_curve() -> None:
    ours = [np.array([np.nan, 0.90, 0.95]), np.array([0.80, 0.92, 0.96]), np.array([0.85, 0.91, 0.97])]
    theirs = [np.array([0.70, 0.91, 0.94]), np.array([0.70, 0.90, 0.94]), np.array([0.70, 0.90, 0.92])]
    points = paired_curve(ours, theirs)
    assert points[0] is None  # a seed without a value yet: no pair
    for index in (1, 2):
        expected = paired_gain([curve[index] for curve in ours], [curve[index] for curve in theirs])
        assert points[index] == expected and len(points[index]["gain_ci95_points"]) == 2
    assert worst_point(points) == 1  # the lower interval of the two


def test_an_unknown_or_uninstalled_arm_is_one_line_naming_it_and_its_install(monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(UserError, match=r"^--arms bohb: no such arm \(the arms: default, .*smac\)$"):
        chosen_arms(["default", "bohb"])
    monkeypatch.setitem(peer_tools.PEER_MODULES, "dehb", {"no_such_module_here": peer_tools.DEHB_INSTALL})
    assert not_installed("dehb") == "no module no_such_module_here; pip install --no-deps dehb"
    with pytest.raises(UserError, match=r"^--arms dehb: dehb is not installed \(no module no_such_module_here; "
                                        r"pip install --no-deps dehb\)$"):
        chosen_arms(["dehb"])
    # Not named: every installed arm runs, the others are skipped with the line that says why.
    arms = chosen_arms(None)
    assert "dehb" not in arms and set(arms) <= set(ARMS) and {"default", "optuna"} <= set(arms)
    assert "dehb: skipped, not installed (no module no_such_module_here; pip install --no-deps dehb)" in \
        capsys.readouterr().out
    assert chosen_arms(["optuna", "default", "optuna"]) == ["optuna", "default"]


@pytest.mark.parametrize("flags, message", [(["--budget", "0"], "--budget must be a number of seconds > 0, got 0.0"),
                                            (["--budget", "inf"], "--budget must be a number of seconds > 0, got inf"),
                                            (["--seeds", "1", "1"], "--seeds must differ, got [1, 1]")])
def test_bad_flags_are_one_line(flags: list[str], message: str) -> None:
    with pytest.raises(UserError) as error:
        parse_flags(flags)
    assert str(error.value) == message


def test_every_kind_of_the_default_space_maps_to_configspace_and_back_inside_ours() -> None:
    pytest.importorskip("ConfigSpace")
    experiment = task_experiment(0, "tpe", 9, 12000, 2, 360)
    space = config_space(experiment["search_space"], seed=0)
    ours = dimensions(experiment["search_space"])
    assert sorted(space.keys()) == sorted(ours)
    for sample in space.sample_configuration(200):
        assert all(ours[key].contains(value) for key, value in dict(sample).items()), dict(sample)
    for key, dimension in ours.items():  # the log scale where ours has one, the choices as ours
        hyperparameter = space[key]
        if dimension.kind == "choice":
            assert list(hyperparameter.choices) == list(dimension.values)
        else:
            assert (hyperparameter.lower, hyperparameter.upper) == dimension.values
            assert getattr(hyperparameter, "log", False) == dimension.log_scale


def test_a_peer_trial_trains_the_epochs_asked_of_its_run_and_stops_at_the_deadline(tmp_path: Path) -> None:
    experiment = task_experiment(0, "tpe", 3, 200, 2, 60)
    task = PeerTask(experiment, budget_s=3600, workers=2, log=tmp_path / "epochs.jsonl", started=time.time())
    values = train_trial(task, experiment["baseline"], 2, "a")
    lines = read_epoch_log(task.log)
    assert len(values) == 2 and [line["epoch"] for line in lines] == [1, 2] and {line["trial"] for line in lines} == {"a"}
    assert [line["val_acc"] for line in lines] == values
    late = PeerTask(experiment, budget_s=0.001, workers=2, log=tmp_path / "late.jsonl", started=time.time())
    with pytest.raises(OutOfTime):
        train_trial(late, experiment["baseline"], 3, "b")
    assert len(read_epoch_log(late.log)) == 1  # the epoch that ended after the deadline is logged, then it stops
    (tmp_path / "late.jsonl").write_text(json.dumps({"time": 1.0}) + "\n{\"time\": 2")  # a worker killed mid-line
    assert read_epoch_log(tmp_path / "late.jsonl") == [{"time": 1.0}]
