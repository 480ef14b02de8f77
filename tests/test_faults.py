"""The search under faults: a crashing trial, a diverging one, a killed driver, checkpoint retention."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import optuna
import pandas as pd

from hpo.checkpoints import drop_stale_checkpoints
from hpo.storage import ExperimentStore
from tests.helpers import ROOT, SMOKE_GROUP, metric_steps, mlflow_store, refused_process, run_script, search_runs

pytestmark = pytest.mark.slow  # Ray clusters and searches: minutes


def progress(folder: Path, trial: int) -> pd.DataFrame:
    (trial_folder,) = folder.glob(f"trial_{trial:03d}_*")
    return pd.read_csv(trial_folder / "progress.csv")


@SMOKE_GROUP
def test_crashed_trial_resumes_from_its_checkpoint(tmp_path: Path, smoke_search: tuple, smoke_flags: list[str]) -> None:
    undisturbed, _ = smoke_search
    result = run_script("search.py", [*smoke_flags, "--storage-path", str(tmp_path), "--name", "crash"],
                        env={"HPO_CRASH_ONCE_AT_EPOCH": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "crash"
    assert list(folder.glob("trial_001_*/crashed_once")), "the injected crash did not happen"
    crashed, calm = progress(folder, 1), progress(undisturbed, 1)
    # The tutorial's trial (same config, same seed in both searches) crashed after epoch 1, restarted from
    # that checkpoint and ended exactly where the undisturbed one did.
    assert crashed["epoch"].tolist() == calm["epoch"].tolist() == [1, 2]
    assert crashed["val_acc"].tolist() == calm["val_acc"].tolist()
    trials = pd.read_csv(folder / "trials.csv")
    assert trials.loc[trials["trial"] == 1, "status"].item() == "completed"


def test_diverging_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    experiment = tmp_path / "diverge.yaml"
    experiment.write_text("# lr 1e6 overflows the weights within an epoch\nmax_epochs: 2\ngrace_period: 1\n"
                          "search_space:\n  lr: {choice: [2.0e-4, 1.0e+6]}\n  batch_size: {choice: [32, 64]}\n")
    result = run_script("search.py", ["--experiment", str(experiment), "--num-samples", "4", "--limit", "1000",
                                      "--storage-path", str(tmp_path), "--name", "diverge"])
    assert result.returncode == 0, result.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "diverge" / "trials.csv")
    diverged = trials[trials["lr"] == 1e6]
    assert len(diverged) >= 1 and set(diverged["status"]) == {"diverged"}
    assert (diverged["epochs"] == 1).all()  # stopped at once, not retried
    assert set(trials.loc[trials["lr"] == 2e-4, "status"]) <= {"completed", "stopped early"}


def test_sigterm_to_the_whole_group_says_how_to_resume_and_leaves_nothing_running(
        tmp_path: Path, smoke_flags: list[str]) -> None:
    """What timeout, docker stop, systemd and Slurm do: SIGTERM to every process, Ray's included. The driver says
    how to resume (exit 130), ends what is left of its cluster, and the resumed search finishes."""
    from hpo.ray_sessions import processes_of

    flags = ["--storage-path", str(tmp_path), "--name", "grouped"]
    log = tmp_path / "driver.log"
    with open(log, "w") as output:
        driver = subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), *smoke_flags, "--num-samples", "4",
                                   "--limit", "6000", *flags], start_new_session=True, stdout=output,
                                  stderr=subprocess.STDOUT)
    record = tmp_path / ".grouped.ray-session"
    while driver.poll() is None and not (list((tmp_path / "grouped").glob("trial_001_*/checkpoint_*"))
                                         and record.exists()):
        time.sleep(0.2)  # until a trial has reported an epoch
    assert driver.poll() is None, log.read_text()[-3000:]
    session = record.read_text().strip()
    os.killpg(driver.pid, signal.SIGTERM)
    assert driver.wait(timeout=120) == 130, log.read_text()[-3000:]
    said = log.read_text()
    assert f"continue with: python hpo/search.py --resume --name grouped --storage-path {tmp_path}" in said
    assert not processes_of(Path(session).name) and not Path(session).exists() and not record.exists()
    result = run_script("search.py", ["--resume", *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(pd.read_csv(tmp_path / "grouped" / "trials.csv")["trial"]) == [1, 2, 3, 4]


# A driver that got SIGTERM on its own cluster, at the point where Tune has returned: it says how to resume and ends
# the cluster itself (its session folder goes) with exit 130, never reaching ray.shutdown. In a process of its own.
AFTER_SIGTERM = """
import os, signal, sys, time
from hpo.cluster import SigtermStop
stop = SigtermStop(sys.argv[1], lambda: print("how to resume", flush=True))
assert not stop.ends_the_search()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler turns the SIGTERM into Ctrl-C at once
except KeyboardInterrupt:
    pass
else:
    sys.exit('no Ctrl-C')
assert stop.ends_the_search()
stop.end_search()
print("after end_search")
"""


def test_after_a_sigterm_the_driver_ends_its_cluster_itself_and_says_how_to_resume(tmp_path: Path) -> None:
    session = tmp_path / "session_2026-12-03_00-00-00_000000_1"
    (session / "logs").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", AFTER_SIGTERM, str(session)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert (result.returncode, result.stdout) == (130, "how to resume\n"), result.stderr[-3000:]
    assert not session.exists()


# The driver after its cluster has ended, while it writes the results: a SIGTERM then still reaches its handler
# (Ray's shutdown sets SIGTERM back to its default beneath Python: the process died with exit -15, nothing said).
AFTER_SHUTDOWN = """
import os, signal, sys, time
from hpo.cluster import connect, end_private_cluster
session = connect(None)
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(42))
end_private_cluster(session)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
sys.exit("the SIGTERM was lost")
"""


def test_a_sigterm_after_the_cluster_has_ended_still_reaches_the_drivers_handler() -> None:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", AFTER_SHUTDOWN], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env=env)
    assert result.returncode == 42, result.stderr[-3000:]


def test_sigterm_to_the_group_while_ray_starts_is_an_interruption_with_nothing_left(
        tmp_path: Path, smoke_flags: list[str]) -> None:
    driver = subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), *smoke_flags, "--storage-path",
                               str(tmp_path), "--name", "early"], start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    driver.stdout.readline()  # "search early: ...": the data are read, Ray is starting
    os.killpg(driver.pid, signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err[-3000:]
    assert "Traceback" not in err and not (tmp_path / "early").exists()


def test_killed_driver_resumes_without_rerunning(tmp_path: Path, smoke_flags: list[str]) -> None:
    # 6,000 images: a trial's epoch lasts seconds, so the kill lands while trial 2 runs.
    store = mlflow_store(tmp_path)
    flags = [*smoke_flags, "--num-samples", "4", "--max-concurrent", "1", "--limit", "6000",
             "--storage-path", str(tmp_path), "--name", "killed", "--mlflow", store]
    driver = subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), *flags], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "killed"
    deadline = time.monotonic() + 180
    while not list(folder.glob("trial_002_*")) and time.monotonic() < deadline:  # trial 1 done, trial 2 started
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert list(folder.glob("trial_002_*")), "the first trial never finished"
    first_trial = progress(folder, 1)

    # Resumed with the same --mlflow (the search keeps its tracking anyway: the flag may only name the same store).
    result = run_script("search.py", ["--resume", "--name", "killed", "--storage-path", str(tmp_path), "--mlflow", store])
    assert result.returncode == 0, result.stderr[-3000:]
    trials = pd.read_csv(folder / "trials.csv")
    assert sorted(trials["trial"]) == [1, 2, 3, 4]
    assert set(trials["status"]) <= {"completed", "stopped early"}
    pd.testing.assert_frame_equal(progress(folder, 1), first_trial)  # finished before the kill: not rerun
    for trial in trials.itertuples():
        epochs = progress(folder, trial.trial)["epoch"].tolist()
        assert epochs == list(range(1, trial.epochs + 1)), (trial.trial, epochs)  # each epoch once
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{folder / 'optuna.db'}")
    # A suggestion made after the searcher's last save never ran: it is marked FAIL, not left RUNNING.
    ran = [t for t in study.trials if t.state.name != "FAIL"]
    assert sorted(t.state.name for t in ran) == sorted(
        "PRUNED" if status == "stopped early" else "COMPLETE" for status in trials["status"])
    # MLflow, read back: the same parent continued, one child per trial (none twice after the resume), each
    # child's history one value per epoch it trained, the tutorial's child tagged.
    parents, children = search_runs(store)
    assert [run.info.run_name for run in parents] == ["killed"] and parents[0].info.status == "FINISHED"
    runs = children[parents[0].info.run_id]
    assert sorted(int(run.data.tags["trial"]) for run in runs) == [1, 2, 3, 4]
    for run in runs:
        trial = trials.set_index("trial").loc[int(run.data.tags["trial"])]
        assert metric_steps(store, run) == list(range(1, trial.epochs + 1)), run.data.tags["trial"]
        assert run.data.tags["end"] == trial.status and run.info.status == "FINISHED"
    assert [run.data.tags["trial"] for run in runs if run.data.tags["tutorial_setting"] == "true"] == ["1"]


@SMOKE_GROUP
def test_a_resume_keeps_the_tracking_it_started_with(tmp_path: Path, smoke_search: tuple) -> None:
    folder, _ = smoke_search
    before = (folder / "mlflow.json").read_text()
    result = run_script("search.py", ["--resume", "--name", folder.name, "--storage-path", str(folder.parent),
                                      "--mlflow", mlflow_store(tmp_path)])
    assert "a resumed search keeps its tracking (drop --mlflow)" in refused_process(result)
    assert (folder / "mlflow.json").read_text() == before and not (tmp_path / "mlflow.db").exists()


def test_stopped_trial_keeps_only_its_best_checkpoint(tmp_path: Path) -> None:
    trial = tmp_path / "trial_002_x"
    for name in ("checkpoint_000000", "checkpoint_000001", "checkpoint_000002"):
        (trial / name).mkdir(parents=True)
    finished = tmp_path / "trial_001_y"
    for name in ("checkpoint_000000", "checkpoint_000001"):
        (finished / name).mkdir(parents=True)
    trials = pd.DataFrame([
        {"status": "stopped early", "checkpoint": "trial_002_x/checkpoint_000001"},
        {"status": "completed", "checkpoint": "trial_001_y/checkpoint_000000"},
    ])
    drop_stale_checkpoints(trials, ExperimentStore(str(tmp_path.parent), tmp_path.name))
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000001"]
    assert len(list(finished.iterdir())) == 2  # a finished trial keeps its best and its last


@SMOKE_GROUP
def test_smoke_search_stopped_trials_have_one_checkpoint(smoke_search: tuple) -> None:
    folder, _ = smoke_search
    trials = pd.read_csv(folder / "trials.csv")
    stopped = trials[trials["status"] == "stopped early"]
    assert len(stopped) >= 1  # the smoke search stops trials (test_search: test_the_smoke_search_stops_a_trial)
    for trial in stopped.itertuples():
        (trial_folder,) = folder.glob(f"trial_{trial.trial:03d}_*")
        assert [p.relative_to(folder) for p in trial_folder.glob("checkpoint_*")] == [Path(trial.checkpoint)]
