"""The search as a user runs it: `python hpo/search.py` then `python hpo/best.py`, on CPU, small."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import optuna
import pandas as pd
import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from scipy import stats

from hpo.searcher import SEARCHER_ATTR
from mnist.checkpoint import load_checkpoint
from mnist.data import MnistData
from mnist.evaluate import evaluate_model
from mnist.model import model_from_checkpoint
from mnist.reading.export import ExportedModel
from mnist.reading.corruptions import set_writers
from mnist.reading.predict import newest_trained_checkpoint
from tests.helpers import (PNG_MAGIC, ROOT, SMOKE_GROUP, metric_steps, mlflow_store, refused_process, run_script,
                           overlapping_trials, search_runs, stop_ray_start, wait_for_port)
from tools.browser import free_port

pytestmark = pytest.mark.slow  # Ray clusters and searches: minutes


@SMOKE_GROUP
def test_smoke_search_writes_its_results(smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, result = smoke_search
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 3
    assert {"lr", "batch_size", "dropout", "step_size", "gamma", "status", "epochs", "best_val_acc",
            "last_val_acc", "time_s", "device", "gpu_ids"} <= set(trials.columns)
    baseline_rows = trials[trials["baseline"]]
    assert len(baseline_rows) == 1
    baseline = baseline_rows.iloc[0]
    assert baseline["trial"] == 1  # the tutorial's setting is always trial 1
    assert (baseline["lr"], baseline["batch_size"], baseline["dropout"], baseline["step_size"], baseline["gamma"],
            baseline["schedule"], baseline["weight_decay"], baseline["rotate"]) == (2e-4, 32, 0.5, 2, 0.8, "step", 0, 0)
    assert baseline["epochs"] == 2  # the baseline always gets the full budget
    assert set(trials["device"]) == {"cpu"}
    best = json.loads((folder / "best.json").read_text())
    assert best["val_acc"] == pytest.approx(trials["best_val_acc"].max())
    assert (folder / best["checkpoint"] / "checkpoint.pt").is_file() and best["config"]["limit"] == 2000
    for name in ("search_history.png", "parallel_coordinates.png", "learning_curves.png", "importance.png",
                 "anytime.png"):
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC, name
    report = (folder / "report.md").read_text()
    assert "git_commit" in report and "hours saved" in report and "the tutorial's setting:" in report
    assert "![anytime](anytime.png)" in report and "tutorial's final val_acc" in report
    assert "top 3 of 3 trials" in result.stdout and "search beat the tutorial's setting by" in result.stdout


@SMOKE_GROUP
def test_the_tracked_search_is_one_parent_run_with_a_child_per_trial(
        smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, _ = smoke_search
    store = mlflow_store(folder.parent)
    parents, children = search_runs(store)
    (parent,) = [run for run in parents if run.info.run_name == "smoke"]
    assert parent.info.run_id == json.loads((folder / "mlflow.json").read_text())["parent_run_id"]
    assert parent.info.status == "FINISHED" and parent.data.tags["search_folder"] == str(folder)
    artifacts = {a.path for a in MlflowClient(store).list_artifacts(parent.info.run_id)}
    assert {"experiment.json", "trials.csv", "history.csv", "best.json", "report.md", "anytime.png"} <= artifacts
    trials = pd.read_csv(folder / "trials.csv").set_index("trial")
    history = pd.read_csv(folder / "history.csv")
    trial_runs = [run for run in children[parent.info.run_id] if "tune_trial_id" in run.data.tags]
    assert sorted(int(run.data.tags["trial"]) for run in trial_runs) == sorted(trials.index)
    for run in trial_runs:
        number = int(run.data.tags["trial"])
        # every epoch the trial trained, once, with the epoch as its step
        assert metric_steps(store, run) == sorted(history.loc[history["trial"] == number, "epoch"]), number
        assert run.data.tags["end"] == trials.loc[number, "status"]
        assert run.data.tags["tutorial_setting"] == str(bool(trials.loc[number, "baseline"])).lower()
        assert float(run.data.params["lr"]) == pytest.approx(trials.loc[number, "lr"])
        assert run.data.metrics["val_acc"] == pytest.approx(trials.loc[number, "last_val_acc"])


@SMOKE_GROUP
def test_the_console_shows_progress_not_rays_internals(smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, result = smoke_search
    progress = [line for line in result.stdout.splitlines() if "] trials " in line]
    assert progress and progress[-1].split("] ", 1)[1].startswith("trials 3/3 done")
    assert all("best val_acc" in line for line in progress[1:])
    console = result.stdout + result.stderr
    for internal in ("\x1b[", "Traceback", "/tmp/ray", "Trial status", "ERROR"):
        assert internal not in console, internal
    assert f"Ray's full log: {folder / 'search.log'}" in result.stdout
    log = (folder / "search.log").read_text()
    assert progress[-1] in log and "Checkpoint successfully created" in log  # Ray's own lines are kept there


@SMOKE_GROUP
def test_the_smoke_search_stops_a_trial(smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    """One trial at a time, so ASHA's decisions do not depend on which trial reports first: at the 1-epoch rung the
    sampled trials (seed 0) are far below the tutorial's setting, which is never stopped and trains to the budget."""
    folder, _ = smoke_search
    trials = pd.read_csv(folder / "trials.csv").set_index("trial")
    stopped = trials[trials["status"] == "stopped early"]
    assert len(stopped) >= 1 and (stopped["epochs"] < 2).all()
    assert trials.loc[1, "baseline"] and trials.loc[1, "status"] == "completed" and trials.loc[1, "epochs"] == 2


@SMOKE_GROUP
def test_stopped_trials_reach_optuna_as_pruned(smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, _ = smoke_search
    trials = pd.read_csv(folder / "trials.csv")
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{folder / 'optuna.db'}")
    states = sorted(trial.state.name for trial in study.trials)
    expected = sorted("PRUNED" if status == "stopped early" else "COMPLETE" for status in trials["status"])
    assert states == expected
    assert all(trial.intermediate_values for trial in study.trials)


@SMOKE_GROUP
def test_tensorboard_has_scalars_and_hparams_per_trial(smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    folder, _ = smoke_search
    trials = pd.read_csv(folder / "trials.csv")
    runs = sorted((folder / "tensorboard").iterdir())
    assert len(runs) == 3 and runs[0].name.startswith("trial_001 lr=2.0e-04 bs=32")
    for run, epochs in zip(runs, trials.sort_values("trial")["epochs"]):
        events = EventAccumulator(str(run))
        events.Reload()
        assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"} <= set(events.Tags()["scalars"])
        assert [event.step for event in events.Scalars("accuracy/val")] == list(range(1, epochs + 1))
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        searched = json.loads((folder / "experiment.json").read_text())["experiment"]["search_space"]
        assert set(hparams) == set(searched) >= {"lr", "batch_size", "dropout", "step_size", "gamma", "rotate"}


@SMOKE_GROUP
def test_a_stopped_retraining_continues_with_resume_exactly(
        smoke_search: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    """best.py killed in the middle of a run: without --resume it refuses (one line, the runs kept); with it, the
    run continues from its last epoch and ends with the model a run never stopped gives."""
    source, _ = smoke_search
    stopped, straight = tmp_path / "stopped", tmp_path / "straight"
    for copy in (stopped, straight):
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("best", ".best*", "*.lock"))
    flags = ["--epochs", "2", "--seeds", "1", "--no-baseline", "--calibration", "validation"]
    run = stopped / ".best.staging" / "runs" / "winner-seed0.pt"
    process = subprocess.Popen([sys.executable, str(ROOT / "hpo" / "best.py"), "--search", str(stopped), *flags],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not (run.exists() and len(load_checkpoint(run)["history"]) >= 1):
            time.sleep(0.2)  # polling the condition: the first epoch's checkpoint
        assert process.poll() is None, "best.py ended before it could be stopped"
        process.kill()  # mid-run: one epoch of two in its checkpoint
        process.wait()
    finally:
        process.kill()
    epochs_done = len(load_checkpoint(run)["history"])
    assert epochs_done == 1
    refused = run_script("best.py", ["--search", str(stopped), *flags])
    assert refused.returncode == 2 and "--resume" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert run.exists()
    resumed = run_script("best.py", ["--search", str(stopped), *flags, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"continuing from epoch {epochs_done}" in resumed.stdout
    assert run_script("best.py", ["--search", str(straight), *flags]).returncode == 0
    ours, theirs = load_checkpoint(stopped / "best" / "model.pt"), load_checkpoint(straight / "best" / "model.pt")
    assert all(torch.equal(ours["model"][name], theirs["model"][name]) for name in theirs["model"])
    assert [row["val_acc"] for row in ours["history"]] == [row["val_acc"] for row in theirs["history"]]
    assert not (stopped / "best" / "runs").exists() and not (stopped / ".best.staging").exists()


@SMOKE_GROUP
def test_best_retrains_and_compares_with_the_tutorials_setting(
        smoke_search: tuple[Path, subprocess.CompletedProcess], smoke_best: subprocess.CompletedProcess,
        mnist_data: MnistData) -> None:
    folder, _ = smoke_search
    result = smoke_best
    metrics = json.loads((folder / "best" / "metrics.json").read_text())
    assert 0.1 < metrics["test_accuracy"] <= 1 and metrics["test_count"] == 10000
    search = metrics["search"]
    assert search["selected_by"].startswith("highest val_acc at the trial's best validation epoch")
    comparison = json.loads((folder / "best" / "comparison.json").read_text())
    assert len(comparison["winner_test_acc"]) == len(comparison["baseline_test_acc"]) == 2
    assert comparison["winner_test_acc"] == search["winner"]["test_accuracies"]
    assert comparison["gain_points"] == pytest.approx(
        100 * (sum(comparison["winner_test_acc"]) - sum(comparison["baseline_test_acc"])) / 2)
    # The interval and p-value are scipy's paired t over the two seeds' accuracies, recomputed here from the file
    # (with no spread in the differences t is undefined: the interval is the point, as hpo.comparison says).
    winner, baseline = 100 * np.array(comparison["winner_test_acc"]), 100 * np.array(comparison["baseline_test_acc"])
    if np.ptp(winner - baseline) > 0:
        paired = stats.ttest_rel(winner, baseline)
        assert comparison["gain_ci95_points"] == pytest.approx(list(paired.confidence_interval(0.95)))
        assert comparison["p_value"] == pytest.approx(paired.pvalue)
    else:
        assert comparison["gain_ci95_points"] == pytest.approx([comparison["gain_points"]] * 2)
    assert comparison["time_to_accuracy"]["target_val_acc"] > 0.1
    assert (folder / "best" / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    assert (folder / "best" / "model.pt").exists() and (folder / "best" / "confusion_matrix.png").exists()
    assert (folder / "best" / "baseline" / "metrics.json").exists()
    assert "the tutorial's setting, same 1 epochs and seeds" in result.stdout and "gain " in result.stdout
    assert "95% CI" in result.stdout and comparison["verdict"] in result.stdout
    # The seeds' models as one ensemble: what predict and the page pick by default.
    ensemble, single = load_checkpoint(folder / "best" / "ensemble.pt"), load_checkpoint(folder / "best" / "model.pt")
    assert ensemble["members"] == 2 and ensemble["seeds"] == comparison["seeds"]
    assert all(torch.equal(ensemble["model"][f"members.0.{name}"], value) for name, value in single["model"].items())
    assert not torch.equal(ensemble["model"]["members.1.fc.weight"], single["model"]["fc.weight"])  # another seed
    model = model_from_checkpoint(ensemble, torch.device("cpu"))
    assert search["ensemble"]["test_accuracy"] == evaluate_model(model, mnist_data, torch.device("cpu"))["test_accuracy"]
    assert f"test accuracy {search['ensemble']['test_accuracy']:.4f}" in result.stdout
    assert newest_trained_checkpoint(folder.parent) == folder / "best" / "ensemble.pt"
    # Every model calibrated on MNIST validation and the real sets' tune halves, and saying so (--calibration sets).
    for state in (ensemble, single):
        fitted_on = state["calibration"]["fitted_on"]
        assert set(fitted_on) == {"mnist validation", "scans tune", "notebook tune", "drawings tune", "canvas tune",
                                  *(f"{name} tune" for name in set_writers())}
        assert fitted_on["scans tune"] == 20 and state["calibration"]["unsure_below"] == max(
            state["calibration"]["thresholds"].values())
    assert metrics["calibration"]["fitted_on"] == single["calibration"]["fitted_on"]


def test_gpus_asked_where_there_are_none_fails_fast(tmp_path: Path, smoke_flags: list[str]) -> None:
    # Fails fast: a trial asking for a GPU that does not exist would wait PENDING forever (the timeout would fail it).
    result = run_script("search.py", [*smoke_flags, "--gpus-per-trial", "1", "--storage-path", str(tmp_path)],
                        timeout=120, env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU for Ray, on a GPU host too
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "gpus_per_trial is 1, but the Ray cluster has no GPUs" in result.stderr


def test_fake_gpu_cluster_gives_each_trial_its_own_gpu(tmp_path: Path, smoke_flags: list[str]) -> None:
    # A cluster started with `ray start` that advertises 2 GPUs: Ray assigns them (CUDA_VISIBLE_DEVICES)
    # though torch sees none. Unasked, the search refuses them (a trial would hold a GPU and train on one
    # CPU thread); with HPO_FAKE_GPUS=1 the trials train on CPU and record the ids they were given.
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=2",
                             "--include-dashboard=false"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        flags = [*smoke_flags, "--num-samples", "2", "--storage-path", str(tmp_path), "--address", f"127.0.0.1:{port}"]
        if not torch.cuda.is_available():  # a CPU torch: the GPUs Ray offers are refused, naming the node
            refused = run_script("search.py", [*flags, "--name", "refused"], env={"RAY_AUTH_MODE": "disabled"})
            refused_process(refused)
            assert "gives trials GPUs, but its torch" in refused.stderr and "download.pytorch.org" in refused.stderr
            assert not (tmp_path / "refused" / "trials.csv").exists()
        result = run_script("search.py", [*flags, "--name", "gpus"],
                            env={"RAY_AUTH_MODE": "disabled", "HPO_FAKE_GPUS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert "each trial: 1 CPU, 1 GPU; up to 2 at once" in result.stdout
        trials = pd.read_csv(tmp_path / "gpus" / "trials.csv", dtype={"gpu_ids": str}).set_index("trial")
        assert set(trials["gpu_ids"]) <= {"0", "1"} and len(trials) == 2  # one of the two GPUs each
        for a, b in overlapping_trials(pd.read_csv(tmp_path / "gpus" / "history.csv")):  # at once: not the same one
            assert trials.loc[a, "gpu_ids"] != trials.loc[b, "gpu_ids"]
        if not torch.cuda.is_available():  # data-parallel retraining on those GPUs: refused alike
            retrain = run_script("best.py", ["--search", str(tmp_path / "gpus"), "--workers", "2",
                                             "--gpus-per-worker", "1", "--seeds", "1", "--epochs", "1",
                                             "--address", f"127.0.0.1:{port}"], env={"RAY_AUTH_MODE": "disabled"})
            refused_process(retrain)
            assert "gives trials GPUs, but its torch" in retrain.stderr
            assert not (tmp_path / "gpus" / "best").exists()
    finally:
        stop_ray_start(head)


@SMOKE_GROUP
def test_a_moved_search_folder_is_refused_on_resume_in_one_line(
        tmp_path: Path, smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, _ = smoke_search
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved / folder.name)
    before = sorted(p.relative_to(moved) for p in moved.rglob("*"))
    result = run_script("search.py", ["--resume", "--name", folder.name, "--storage-path", str(moved)])
    refused_process(result)
    assert "was moved or copied since" in result.stderr and str(folder) in result.stderr
    after = sorted(p.relative_to(moved) for p in moved.rglob("*") if p.name != f".{folder.name}.lock")
    assert after == before  # nothing written there (but the lock file beside the folder, which the resume took)


@SMOKE_GROUP
def test_a_finished_search_resumed_from_another_directory_keeps_its_paths(
        tmp_path: Path, smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    folder, _ = smoke_search
    trials_before = pd.read_csv(folder / "trials.csv")
    result = subprocess.run([sys.executable, str(ROOT / "hpo" / "search.py"), "--resume", "--name", folder.name,
                             "--storage-path", str(folder.parent)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # nothing landed in the working directory (results/, tensorboard/)
    assert result.stderr == "" and "Traceback" not in result.stdout and "ERROR" not in result.stdout
    pd.testing.assert_frame_equal(pd.read_csv(folder / "trials.csv"), trials_before)


@SMOKE_GROUP
def test_best_logs_the_comparison_under_the_search_and_registers_the_winner(
        smoke_search: tuple[Path, subprocess.CompletedProcess], smoke_best: subprocess.CompletedProcess) -> None:
    folder, _ = smoke_search
    store = mlflow_store(folder.parent)
    parents, children = search_runs(store)
    (parent,) = [run for run in parents if run.info.run_name == "smoke"]
    (retraining,) = [run for run in children[parent.info.run_id] if run.info.run_name == "smoke best.py"]
    comparison = json.loads((folder / "best" / "comparison.json").read_text())
    assert retraining.data.metrics["gain_points"] == pytest.approx(comparison["gain_points"])
    if comparison["gain_ci95_points"] is not None:
        assert [retraining.data.metrics["gain_ci95_low_points"], retraining.data.metrics["gain_ci95_high_points"]] == \
            pytest.approx(comparison["gain_ci95_points"])
        assert retraining.data.metrics["p_value"] == pytest.approx(comparison["p_value"])
    arms = {run.data.tags["arm"]: run for run in children[retraining.info.run_id]}
    assert set(arms) == {"winner", "baseline"}
    for arm in arms:
        accuracies = [m.value for m in sorted(MlflowClient(store).get_metric_history(arms[arm].info.run_id,
                                                                                      "test_accuracy"),
                                              key=lambda m: m.step)]
        assert accuracies == pytest.approx(comparison[f"{arm}_test_acc"])
    # The registered winner is the exported ensemble: it loads without this package and answers as the file does.
    (version,) = MlflowClient(store).search_model_versions("name='ccnet'")
    assert version.run_id == retraining.info.run_id and f"'ccnet' version {version.version}" in smoke_best.stdout
    model = mlflow.pyfunc.load_model(version.source)
    signature = model.metadata.signature.inputs.to_dict()[0]
    assert signature["tensor-spec"]["dtype"] == "float32" and list(signature["tensor-spec"]["shape"]) == [-1, 1, 28, 28]
    images = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(model.predict(images)["logits"],
                               ExportedModel(folder / "best" / "ensemble.onnx").logits(images), atol=1e-5)


@SMOKE_GROUP
def test_a_search_another_ray_optuna_or_searcher_saved_is_refused_on_resume(
        tmp_path: Path, smoke_search: tuple[Path, subprocess.CompletedProcess]) -> None:
    """Tune's state is Ray's pickle, the sampler Optuna's, the study our searcher's: a resume on another version,
    or of a study another searcher wrote, is one line, and nothing in the folder changes."""
    folder, _ = smoke_search
    copy = tmp_path / "smoke"
    shutil.copytree(folder, copy)
    saved = json.loads((copy / "experiment.json").read_text())
    assert saved["ray_version"] == ray.__version__ and saved["optuna_version"] == optuna.__version__
    other_ray = "2.44.1" if ray.__version__ != "2.44.1" else "2.60.0"  # the other end of the range
    other_optuna = "3.6.2" if optuna.__version__ != "3.6.2" else "5.1.0"
    cases = [({"ray_version": other_ray}, f"started with Ray {other_ray}, this is Ray {ray.__version__}"),
             ({"optuna_version": other_optuna},
              f"started with Optuna {other_optuna}, this is Optuna {optuna.__version__}")]
    for change, expected in cases:
        (copy / "experiment.json").write_text(json.dumps({**saved, **change}))
        before = {path: path.stat().st_mtime_ns for path in copy.rglob("*")}
        result = run_script("search.py", ["--resume", "--name", "smoke", "--storage-path", str(tmp_path)])
        assert expected in refused_process(result)
        assert {path: path.stat().st_mtime_ns for path in copy.rglob("*")} == before
    (copy / "experiment.json").write_text(json.dumps(saved))
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{copy / 'optuna.db'}")
    study.set_user_attr(SEARCHER_ATTR, "Ray's OptunaSearch")
    result = run_script("search.py", ["--resume", "--name", "smoke", "--storage-path", str(tmp_path)])
    assert "study 'smoke' was written by \"Ray's OptunaSearch\"" in refused_process(result)
