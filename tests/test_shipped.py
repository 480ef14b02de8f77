"""The shipped reader (mnist.reading.shipped, mnist.reading.train_reader): made by one resumable command, written
with its checksum, verified on every load, refused in one line when damaged; what predict, the page and export
read when no --checkpoint is given."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist.checkpoint import load_checkpoint
from mnist.data import MnistData
from mnist.errors import UserError
from mnist.model import Ensemble, model_from_checkpoint
from mnist.reading import shipped
from mnist.reading.predict import Predictor, main as predict_main
from mnist.reading.shipped import CHECKSUM, MAKER, NAME, WEIGHTS, shipped_path
from mnist.reading.train_reader import READER_RECIPE, build, train_member
from tests.helpers import refused, small_sets

TINY_RECIPE = {**READER_RECIPE, "epochs": 1, "warmup_epochs": 0.5, "limit": 1200, "batch_size": 64}


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two members of one epoch on 1,200 images, built into a folder of their own: (runs, shipped folder)."""
    root = tmp_path_factory.mktemp("reader")
    for seed in (0, 1):
        train_member(root / "runs", seed, threads=1, recipe=TINY_RECIPE)
    sets, _, _ = small_sets(root)
    build(root / "runs", 2, sets, root / "shipped")
    return root / "runs", root / "shipped"


@pytest.mark.slow
def test_the_built_reader_is_an_ensemble_of_its_members_calibrated_on_held_out_data(tiny_reader) -> None:
    runs, folder = tiny_reader
    state = load_checkpoint(shipped_path(folder))  # the checksum verified first
    assert state["members"] == 2 and state["made_by"] == MAKER
    assert isinstance(model_from_checkpoint(state, "cpu"), Ensemble)
    assert state["config"]["corrupt"] == READER_RECIPE["corrupt"] and state["config"]["val_fraction"] == 0.1
    fitted_on = state["calibration"]["fitted_on"]
    assert fitted_on["mnist validation"] == 120 and "corrupt-noise tune" in fitted_on  # held out, never the test
    for seed in (0, 1):
        member = load_checkpoint(runs / f"member-{seed}" / "best.pt")
        assert member["config"]["seed"] == seed
        assert all(np.array_equal(state["model"][f"members.{seed}.{name}"], value)
                   for name, value in member["model"].items())


@pytest.mark.slow
def test_a_finished_member_is_not_trained_again_and_another_recipe_is_refused(tiny_reader, capsys) -> None:
    runs, _ = tiny_reader
    last = runs / "member-0" / "last.pt"
    before = last.stat().st_mtime_ns
    train_member(runs, 0, threads=1, recipe=TINY_RECIPE)
    assert "member 0: trained already" in capsys.readouterr().out and last.stat().st_mtime_ns == before
    with pytest.raises(UserError, match=r"member-0/last.pt: trained with another recipe \(lr differ\)"):
        train_member(runs, 0, threads=1, recipe={**TINY_RECIPE, "lr": 1e-3})


@pytest.mark.slow
def test_an_unfinished_member_is_not_built_into_a_reader(tmp_path: Path, tiny_reader) -> None:
    runs, _ = tiny_reader
    shutil.copytree(runs / "member-0", tmp_path / "runs" / "member-0")
    with pytest.raises(UserError, match="member 1 is not trained"):
        build(tmp_path / "runs", 2, tmp_path / "sets", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_damaged_or_missing_shipped_file_is_refused_in_one_line(tiny_reader, tmp_path: Path, monkeypatch,
                                                                  capsys) -> None:
    _, folder = tiny_reader
    damaged = tmp_path / "shipped"
    shutil.copytree(folder, damaged)
    data = bytearray((damaged / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / WEIGHTS).write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "SHIPPED_FOLDER", damaged)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digit.png")
    line = refused(predict_main, [str(tmp_path / "digit.png")], capsys)
    assert f"{damaged / WEIGHTS}: does not match its checksum" in line and "reinstall" in line
    (damaged / WEIGHTS).unlink()
    line = refused(predict_main, [str(tmp_path / "digit.png")], capsys)
    assert f"{damaged / WEIGHTS}: the shipped reader's file is missing" in line and "--checkpoint" in line
    # A user's own model stays one flag away, and a missing one is one line, as ever.
    line = refused(predict_main, [str(tmp_path / "digit.png"), "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert f"{tmp_path / 'none.pt'}: no such checkpoint file" in line


@pytest.mark.slow
def test_predict_reads_with_the_shipped_reader_when_no_checkpoint_is_given(tiny_reader, tmp_path: Path,
                                                                          monkeypatch, capsys,
                                                                          mnist_data: MnistData) -> None:
    _, folder = tiny_reader
    monkeypatch.setattr(shipped, "SHIPPED_FOLDER", folder)
    for index in range(3):
        Image.fromarray(mnist_data.test_images[index]).save(tmp_path / f"d{index}.png")
    predict_main([str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert captured.err.startswith(f"model: {NAME} (2 CCNets trained on MNIST")
    answers = [json.loads(line)["digit"] for line in captured.out.splitlines()]
    # The same answers as the file named: a 28 px MNIST digit is read as it is.
    assert answers == Predictor(folder / WEIGHTS).predict(list(mnist_data.test_images[:3])).labels.tolist()


def test_the_package_ships_its_reader_and_its_checksum_holds() -> None:
    path = shipped_path()  # the committed file, verified
    assert path.parent == shipped.SHIPPED_FOLDER and (path.parent / CHECKSUM).is_file()
    state = load_checkpoint(path)
    assert state["made_by"] == MAKER and state["members"] >= 2 and state["calibration"]["unsure_below"] > 0
    assert path.stat().st_size < 8 * 2**20  # a few MB: it ships in the wheel
