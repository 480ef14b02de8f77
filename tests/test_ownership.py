"""One owner per folder, nothing half-written: a lock per experiment, folders swapped in whole, refusals leave nothing.

Each row of REFUSED is a member of a class: adding the next one is a line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpo.storage import ExperimentStore
from mnist.atomic import recover_folder, replace_folder
from mnist.errors import UserError
from tests.helpers import ROOT, read_only_folder, refused, refused_process, run_script

# (script, arguments with {tmp} for the test's folder, what the one line says) -- each refused with
# exit 2, one line, no traceback, before Ray starts, and nothing left in {tmp}/results.
REFUSED = [
    ("search.py", ["--name", "..", "--storage-path", "{tmp}/results"], "must name one folder inside --storage-path"),
    ("search.py", ["--name", "a/b", "--storage-path", "{tmp}/results"], "must name one folder inside --storage-path"),
    ("search.py", ["--name", "/abs", "--storage-path", "{tmp}/results"], "must name one folder inside --storage-path"),
    ("search.py", ["--name", "x", "--storage-path", "{tmp}/results", "--experiment", "{tmp}/val0.yaml"],
     "train.val_fraction is 0"),
    ("search.py", ["--name", "x", "--storage-path", "{tmp}/results", "--experiment", "{tmp}/baddata.yaml"],
     "mnist_train.csv"),
]


@pytest.fixture
def experiment_files(tmp_path: Path) -> Path:
    (tmp_path / "val0.yaml").write_text("num_samples: 2\nmax_epochs: 1\ntrain:\n  val_fraction: 0.0\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist_train.csv").write_text("not,a,digit\n")
    (tmp_path / "baddata.yaml").write_text(f"num_samples: 2\nmax_epochs: 1\ntrain:\n  data: {tmp_path / 'data'}\n")
    return tmp_path


@pytest.mark.parametrize("script, arguments, message", REFUSED)
def test_refused_in_one_line_before_any_work_leaving_nothing(experiment_files: Path, script: str,
                                                             arguments: list[str], message: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    from hpo.search import main as search_main
    from mnist.errors import run_cli

    tmp = experiment_files
    mains = {"search.py": search_main}
    with pytest.raises(SystemExit) as exit_info:  # in this process: no Ray may start for a refusal
        run_cli(mains[script], [argument.format(tmp=tmp) for argument in arguments])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
    leftovers = [p.name for p in (tmp / "results").glob("*") if not p.name.endswith(".lock")]
    assert leftovers == [], leftovers  # no stub folder, no log


@pytest.mark.slow
def test_a_second_driver_on_the_same_folder_is_refused_naming_the_first(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    from hpo.best import main as best_main
    from hpo.search import main as search_main

    store = ExperimentStore(str(tmp_path / "results"), "shared")
    (tmp_path / "results" / "shared").mkdir(parents=True)  # the running search's folder
    with store.lock("search.py"):  # another driver's lock (flock: another open file, even in this process)
        started = time.monotonic()
        search = run_script("search.py", ["--name", "shared", "--storage-path", str(tmp_path / "results"),
                                          "--num-samples", "2", "--max-epochs", "1", "--limit", "500"], timeout=120)
        others = [refused(best_main, ["--search", str(tmp_path / "results" / "shared")], capsys),
                  refused(search_main, ["--resume", "--name", "shared", "--storage-path", str(tmp_path / "results")],
                          capsys)]
    refused_process(search)
    for err in (search.stderr, *others):
        assert f"in use by search.py (pid {os.getpid()})" in err, err
    assert time.monotonic() - started < 60  # refused at once, Ray never started
    assert not any((tmp_path / "results" / "shared").iterdir())  # nothing touched in it


def test_the_lock_dies_with_its_process_even_by_sigkill(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hpo.storage import ExperimentStore\n"
        f"store = ExperimentStore({str(tmp_path)!r}, 'x')\n"
        "with store.lock('search.py'):\n    print('held', flush=True); time.sleep(600)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    store = ExperimentStore(str(tmp_path), "x")
    with pytest.raises(UserError, match=f"in use by search.py \\(pid {holder.pid}\\)"):
        with store.lock("best.py"):
            pass
    holder.kill()
    holder.wait(timeout=30)
    with store.lock("best.py"):  # no stale lock
        assert f"pid {os.getpid()}" in store.lock_file.read_text()


def test_a_folder_is_replaced_whole(tmp_path: Path) -> None:
    target, staging = tmp_path / "best", tmp_path / ".best.staging"
    target.mkdir()
    (target / "model.pt").write_text("old")
    (target / "comparison.json").write_text("old")
    staging.mkdir()
    (staging / "model.pt").write_text("new")
    replace_folder(staging, target)
    assert {p.name: p.read_text() for p in target.iterdir()} == {"model.pt": "new"}  # nothing of the old run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no staging, no .old left
    (tmp_path / "best").rename(tmp_path / ".best.old")  # killed between the two renames: best/ absent...
    recover_folder(target)  # ...until the next run brings the old one back
    assert (target / "model.pt").read_text() == "new"


def test_training_into_a_folder_that_holds_a_run_is_refused(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    from mnist.train import main as train_main

    before = (tiny_run / "best.pt").read_bytes()
    err = refused(train_main, ["-e", "1", "--limit", "500", "--out", str(tiny_run)], capsys)
    assert "holds a training run already" in err and "--resume" in err
    assert (tiny_run / "best.pt").read_bytes() == before  # never an overwritten best.pt


@pytest.mark.parametrize("spoil, message", [
    (lambda state: state["model"]["fc.weight"].fill_(float("nan")), "its weights are not finite (a run that diverged)"),
    (lambda state: state.update(model=torch.zeros(3)), "its model is not a table of weight tensors"),
    (lambda state: state["config"].update(dropout=5), "config: dropout must be in [0, 1)"),
    (lambda state: state.update(members=0), "its member count 0 is not a whole number >= 1"),
    (lambda state: state.update(members=10**9), "says 1000000000 ensemble members but its weights hold 0"),
])
def test_a_spoiled_checkpoint_is_one_line_in_predict_and_evaluate_and_skipped_by_the_default_pick(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, spoil, message: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist.checkpoint import load_checkpoint, save_checkpoint
    from mnist.errors import run_cli
    from mnist.evaluate import main as evaluate_main
    from mnist.reading.predict import newest_trained_checkpoint
    from mnist.reading.predict import main as predict_main

    state = load_checkpoint(tiny_run / "best.pt")
    spoil(state)
    spoiled = tmp_path / "results" / "train" / "new" / "best.pt"
    save_checkpoint(state, spoiled)
    for main, argv in ((predict_main, [str(tiny_run), "--checkpoint", str(spoiled)]),
                       (evaluate_main, [str(spoiled), "--out", str(tmp_path / "eval")])):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main, argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"{spoiled}: {message}" in err, err
    good = tmp_path / "results" / "train" / "old" / "best.pt"
    save_checkpoint(load_checkpoint(tiny_run / "best.pt"), good)
    os.utime(good, (1, 1))  # older than the spoiled one: the default pick passes over the newest
    assert newest_trained_checkpoint(tmp_path / "results") == good


@pytest.mark.slow
def test_a_time_budget_is_an_end_said_plainly_and_resume_says_so(tmp_path: Path) -> None:
    flags = ["--name", "short", "--storage-path", str(tmp_path), "--num-samples", "6", "--max-epochs", "2",
             "--limit", "2000"]
    ended = run_script("search.py", [*flags, "--time-budget", "3"], timeout=300)
    assert ended.returncode == 0 and "time budget reached (3 s)" in ended.stdout, ended.stderr[-2000:]
    again = run_script("search.py", ["--resume", "--name", "short", "--storage-path", str(tmp_path)], timeout=120)
    assert again.returncode == 2 and "ended by its time budget (3 s)" in again.stderr, again.stderr[-2000:]
    assert again.stderr.count("\n") == 1


# Experiment settings refused before any work, naming the key: (YAML text, CLI flags, what the line says).
BAD_SETTINGS = [
    ("max_epochs: '6'\n", [], "max_epochs must be an integer >= 1, got '6'"),
    ("max_epochs: [6]\n", [], "max_epochs must be an integer >= 1, got [6]"),
    ("train: [1, 2]\n", [], "train must be a mapping"),
    ("", ["--reduction-factor", "0"], "reduction_factor must be an integer >= 2, got 0"),
    ("", ["--seed", str(2**40)], "seed must be an integer in [0, 4294967295]"),
    ("", ["--gpus-per-trial", "nan"], "gpus_per_trial must be 0, a fraction of one GPU (0.25) or a whole number"),
    ("", ["--gpus-per-trial", "1.5"], "gpus_per_trial must be 0, a fraction of one GPU (0.25) or a whole number"),
    ("gpus_per_trial: -0.5\n", [], "gpus_per_trial must be 0, a fraction of one GPU (0.25) or a whole number"),
    ("", ["--wait-for-resources", "-1"], "--wait-for-resources must be a number of seconds >= 0"),
    ("", ["--time-budget", "nan"], "time_budget_s must be a number of seconds > 0"),
    ("search_space:\n  limit: {choice: [1000, 2000]}\n", [], "search_space key 'limit' is not a searchable"),
    ("num_samples: 2\nnum_samples: 3\n", [], "key 'num_samples' given twice"),
]


@pytest.mark.parametrize("yaml_text, flags, message", BAD_SETTINGS)
def test_bad_experiment_settings_are_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              yaml_text: str, flags: list[str], message: str) -> None:
    from hpo.search import main as search_main

    (tmp_path / "exp.yaml").write_text(yaml_text)
    err = refused(search_main, ["--experiment", str(tmp_path / "exp.yaml"), "--storage-path", str(tmp_path / "r"),
                              "--name", "x", *flags], capsys)
    assert message in err, err
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize("setup, flags, message", [
    (lambda tmp: (tmp / "folder.yaml").mkdir(), ["--experiment", "{tmp}/folder.yaml"], "a folder, not an experiment file"),
    (lambda tmp: (tmp / "latin.yaml").write_bytes(b"num_samples: 2 # \xe9t\xe9\n"), ["--experiment", "{tmp}/latin.yaml"],
     "not a text file (not UTF-8)"),
    (lambda tmp: None, ["--address", "localhost"], "--address 'localhost': not a Ray cluster address"),
])
def test_bad_files_and_addresses_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, setup, flags: list[str],
                                             message: str) -> None:
    from hpo.search import main as search_main

    setup(tmp_path)
    err = refused(search_main, [flag.format(tmp=tmp_path) for flag in flags] + ["--storage-path", str(tmp_path / "r")], capsys)
    assert message in err, err


def test_a_garbage_ray_address_in_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from hpo.search import main as search_main

    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    err = refused(search_main, ["--storage-path", str(tmp_path / "r")], capsys)
    assert "RAY_ADDRESS 'garbage': not a Ray cluster address" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_the_next_search_ends_what_a_killed_driver_left_and_sessions_are_removed(tmp_path: Path) -> None:
    import signal

    from hpo.ray_sessions import processes_of

    flags = ["--storage-path", str(tmp_path), "--num-samples", "2", "--max-epochs", "3", "--limit", "3000"]
    log = tmp_path / "killed.log"
    with open(log, "w") as output:
        driver = subprocess.Popen([sys.executable, str(ROOT / "hpo" / "search.py"), "--name", "killed", *flags],
                                  stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    record = tmp_path / ".killed.ray-session"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (record.exists() and "trials 0/2" in log.read_text()):
        assert driver.poll() is None, log.read_text()[-2000:]
        time.sleep(0.5)
    session = record.read_text().strip()
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its cluster lives on
    driver.wait(timeout=30)
    assert Path(session).is_dir()  # the case: the killed driver's session folder (and maybe processes) left behind
    result = run_script("search.py", ["--name", "next", *flags, "--num-samples", "1", "--max-epochs", "1"],
                        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert processes_of(Path(session).name) == [] and not Path(session).exists() and not record.exists()
    assert not (tmp_path / ".next.ray-session").exists()
    ray_sessions = [p for p in Path(session).parent.glob("session_*") if p.name.startswith("session_")]
    assert all(p.name != Path(session).name for p in ray_sessions)


def test_a_file_where_a_folder_is_wanted_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mnist.errors import run_cli
    from mnist.train import main as train_main

    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train_main, ["-e", "1", "--limit", "500", "--out", str(tmp_path / "taken" / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and str(tmp_path / "taken") in err, err


def test_malformed_pngs_are_one_line_each_and_the_other_images_are_still_read(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import struct
    import zlib

    from PIL import Image, ImageDraw

    from mnist.errors import run_cli
    from mnist.reading.predict import main as predict_main

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 50, 50, 8, 0, 0, 0, 0))
    for name, idat in (("a_garbage.png", b"not zlib at all"), ("b_short.png", zlib.compress(b"\0" * 10))):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    good = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(good).line([(50, 10), (50, 90)], fill=0, width=10)
    good.save(tmp_path / "c_good.png")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(predict_main, [str(tmp_path), "--checkpoint", str(tiny_run / "best.pt")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "Traceback" not in captured.err
    assert "a_garbage.png: broken data stream" in captured.err and "b_short.png: image file is truncated" in captured.err
    assert "c_good.png: " in captured.out  # the other image was read


@pytest.mark.parametrize("program, arguments", [
    ("search", ["--storage-path", "{ro}", "--name", "x"]),
    ("search", ["--storage-path", "{ro}/results", "--name", "x"]),
    ("train", ["-e", "1", "--limit", "500", "--out", "{ro}/run"]),
    ("predict", ["{images}", "--checkpoint", "{checkpoint}", "--sheet", "{ro}/sheet.png"]),
    ("predict", ["{images}", "--checkpoint", "{checkpoint}", "--labels", "{images}/labels.csv",
                 "--misread", "{ro}/misread.png"]),
])
def test_a_read_only_output_folder_is_one_line_naming_it(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         program: str, arguments: list[str]) -> None:
    from PIL import Image, ImageDraw

    from hpo.search import main as search_main
    from mnist.errors import run_cli
    from mnist.reading.predict import main as predict_main
    from mnist.train import main as train_main

    images = tmp_path / "images"
    images.mkdir()
    one = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(one).line([(50, 10), (50, 90)], fill=0, width=10)
    one.save(images / "one.png")
    (images / "labels.csv").write_text("file,label\none.png,7\n")  # misread on purpose: a misread sheet is due
    mains = {"search": search_main, "train": train_main, "predict": predict_main}
    with read_only_folder(tmp_path / "ro") as ro:
        argv = [argument.format(ro=ro, images=images, checkpoint=tiny_run / "best.pt") for argument in arguments]
        with pytest.raises(SystemExit) as exit_info:
            run_cli(mains[program], argv)
        err = capsys.readouterr().err  # predict says first which checkpoint it reads: one error line after it
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert exit_info.value.code == 2 and len(errors) == 1 and str(ro) in errors[0] and "Traceback" not in err, err
        assert list(ro.iterdir()) == []  # nothing half-written left in it
