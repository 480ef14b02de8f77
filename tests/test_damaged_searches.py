"""Hard cases round 4 (issue #42): a damaged search folder on --resume is one line naming the file before Ray
starts; a degenerate search (its trials tied, or one trial) still writes its report and says why a plot is
missing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hpo import trainable
from hpo.saved_state import check_saved_state
from hpo.search import main as search_main
from hpo.storage import ExperimentStore
from hpo.summary import write_summary
from mnist.layout import TRIAL_CHECKPOINT
from tests.helpers import SMOKE_GROUP, refused, search_tables

@pytest.fixture
def search_copy(tmp_path: Path, smoke_search: tuple) -> Path:
    folder, _ = smoke_search
    copy = tmp_path / "results" / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("best", ".best*", "*.lock"))
    return copy


def resume_refused(copy: Path, capsys: pytest.CaptureFixture) -> str:
    return refused(search_main, ["--resume", "--name", copy.name, "--storage-path", str(copy.parent)], capsys)


def newest(copy: Path, prefix: str) -> Path:
    return sorted(copy.glob(f"{prefix}*"))[-1]


@SMOKE_GROUP
@pytest.mark.slow
@pytest.mark.parametrize("damage, named", [
    (lambda path: path.unlink(), "experiment_state-*.json) is missing"),
    (lambda path: path.write_text(path.read_text()[: len(path.read_text()) // 2]), "not valid JSON"),
    (lambda path: path.write_bytes(b""), "empty"),
])
def test_tunes_experiment_state_removed_or_garbled_is_one_line_before_ray(
        search_copy: Path, capsys: pytest.CaptureFixture, damage, named: str) -> None:
    state = newest(search_copy, "experiment_state-")
    before = sorted(p.name for p in search_copy.iterdir())
    damage(state)
    err = resume_refused(search_copy, capsys)
    assert named in err and "another --name" in err and "hpo/best.py" in err
    assert sorted(p.name for p in search_copy.iterdir()) == [n for n in before if search_copy.joinpath(n).exists()]
    assert not list(search_copy.glob("trial_*/checkpoint_*/*.tmp"))


@SMOKE_GROUP
@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["searcher-state-", "search_gen_state-"])
def test_the_searchers_saved_state_garbled_is_one_line_on_the_console(
        search_copy: Path, capsys: pytest.CaptureFixture, prefix: str) -> None:
    state = newest(search_copy, prefix)
    content = state.read_bytes()
    state.write_bytes(content[: len(content) // 2])
    err = resume_refused(search_copy, capsys)
    assert state.name in err and ("not a whole pickle" in err or "not valid JSON" in err)


@SMOKE_GROUP
@pytest.mark.slow
def test_a_trial_checkpoint_cut_short_is_one_line_naming_it(search_copy: Path, capsys: pytest.CaptureFixture) -> None:
    trial = sorted(search_copy.glob("trial_*/result.json"))[-1].parent
    reported = json.loads((trial / "result.json").read_text().splitlines()[-1])["checkpoint_dir_name"]
    checkpoint = trial / reported / TRIAL_CHECKPOINT  # the one its resume starts from
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: len(content) // 3])
    err = resume_refused(search_copy, capsys)
    assert f"{checkpoint.parent.parent.name}/{checkpoint.parent.name}/{TRIAL_CHECKPOINT}" in err
    assert "cut short" in err


@SMOKE_GROUP
@pytest.mark.slow
def test_a_newer_checkpoint_no_report_names_is_left_to_tune(search_copy: Path) -> None:
    """A stop while a trial wrote its next checkpoint leaves a partial folder no report names: Tune resumes from
    the reported one and writes that folder again, so it is not a reason to refuse the resume."""
    trial = sorted(search_copy.glob("trial_*/result.json"))[-1].parent
    partial = trial / "checkpoint_000099"
    partial.mkdir()
    (partial / TRIAL_CHECKPOINT).write_bytes(b"PK\x03\x04 cut")
    check_saved_state(ExperimentStore(str(search_copy.parent), search_copy.name))  # no error


@pytest.mark.parametrize("scores, why", [
    ([0.0] * 6, "every trial scored the same (0.0000)"),  # --limit 10: nothing to learn, every trial 0.0
    ([0.97, 0.97, 0.97], "every trial scored the same (0.9700)"),
    ([0.95], "importance needs two trials"),
])
def test_a_degenerate_search_writes_its_report_and_says_why_a_plot_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture, scores: list[float], why: str) -> None:
    experiment, trials, history = search_tables(scores)
    write_summary(tmp_path, trials, history, experiment, {"cpu": 1, "gpu": 0}, ["hpo/search.py"])
    report = (tmp_path / "report.md").read_text()
    assert f"No hyperparameter importance: {why}" in report and "![importance]" not in report
    assert why in capsys.readouterr().out
    for name in ("trials.csv", "history.csv", "best.json", "search_history.png", "parallel_coordinates.png",
                 "learning_curves.png", "importance.png", "anytime.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_a_search_whose_scores_differ_still_plots_importance(tmp_path: Path) -> None:
    experiment, trials, history = search_tables([0.90, 0.95, 0.97, 0.93, 0.96])
    write_summary(tmp_path, trials, history, experiment, {"cpu": 1, "gpu": 0}, ["hpo/search.py"])
    assert "![importance](importance.png)" in (tmp_path / "report.md").read_text()


def test_a_trial_that_trained_before_and_has_no_checkpoint_says_it_starts_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    class Context:  # what Tune's context tells a restarted trial about itself
        def get_trial_dir(self) -> str:
            return str(tmp_path)

        def get_trial_name(self) -> str:
            return "trial_002_ab12"

    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(trainable.tune, "get_context", lambda: Context())
    assert trainable.restored_state() is None
    assert capsys.readouterr().out == ""  # a new trial: nothing to say
    (tmp_path / "result.json").write_text('{"epoch": 1}\n')
    assert trainable.restored_state() is None
    assert "trial_002_ab12: restarting from its first epoch" in capsys.readouterr().out
