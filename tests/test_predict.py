"""Predicting a user's own digit images: MNIST-style preprocessing, the round trip, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist.data import MnistData
from mnist.errors import run_cli
from mnist.reading.predict import Predictor, load_image, main
from mnist.reading.preprocess import MNIST_CENTER, preprocess
from mnist.train import main as train_main
from tests.helpers import PNG_MAGIC


def ink_box(digit: np.ndarray, level: int = 40) -> tuple[int, int]:
    """(height, width) of the pixels brighter than `level`."""
    rows, columns = np.nonzero(digit > level)
    return rows.max() - rows.min() + 1, columns.max() - columns.min() + 1


def center_of_mass(digit: np.ndarray) -> tuple[float, float]:
    rows, columns = np.indices(digit.shape)
    total = digit.sum()
    return (rows * digit).sum() / total, (columns * digit).sum() / total


def drawn_one(size: tuple[int, int], dark_on_light: bool) -> Image.Image:
    """A large '1' drawn near the right edge of a page."""
    paper, ink = (235, 25) if dark_on_light else (10, 240)
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    draw.line([(size[0] - 60, 15), (size[0] - 60, size[1] - 15)], fill=ink, width=16)
    draw.line([(size[0] - 95, 50), (size[0] - 60, 15)], fill=ink, width=12)
    return image


@pytest.mark.parametrize("dark_on_light", [True, False])
def test_off_centre_large_digit_is_centred_and_20px_tall(dark_on_light: bool) -> None:
    digit = preprocess(drawn_one((400, 300), dark_on_light))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    height, width = ink_box(digit)
    assert height in (20, 21) and width < height  # the longer side is 20 px, aspect kept
    row, column = center_of_mass(digit.astype(float))
    assert abs(row - MNIST_CENTER) <= 0.5 and abs(column - MNIST_CENTER) <= 0.5  # where MNIST's centres lie
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black background, as in MNIST


def test_both_polarities_give_the_same_digit() -> None:
    light, dark = preprocess(drawn_one((400, 300), True)), preprocess(drawn_one((400, 300), False))
    assert np.abs(light.astype(int) - dark.astype(int)).mean() < 8


def test_wide_digit_keeps_its_aspect_ratio() -> None:
    image = Image.new("L", (300, 120), 240)
    ImageDraw.Draw(image).line([(30, 60), (270, 60)], fill=0, width=20)  # a wide dash
    height, width = ink_box(preprocess(image))
    assert width in (20, 21) and height <= 4


def test_noise_and_uneven_light_do_not_widen_the_crop() -> None:
    rng = np.random.default_rng(0)
    clean = np.asarray(drawn_one((400, 300), True), dtype=np.float32)
    shade = np.linspace(0.55, 1.0, 400)[None, :]  # a shadow across the page
    photo = np.clip(clean * shade + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    digit = preprocess(Image.fromarray(photo))
    height, _ = ink_box(digit)
    assert height in (20, 21)
    assert abs(center_of_mass(digit.astype(float))[1] - 13.5) <= 1.0


def test_transparent_drawing_is_read_as_ink_on_paper() -> None:
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([40, 20, 160, 180], outline=(0, 0, 0, 255), width=14)
    digit = preprocess(image)
    assert ink_box(digit)[0] in (20, 21) and digit[14, 14] < 60  # a ring: dark in its middle


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("predict_model")
    train_main(["-e", "2", "--limit", "10000", "-b", "64", "-l", "2e-3", "--threads", "1", "--out", str(folder)])
    return folder / "best.pt"


@pytest.mark.slow
def test_round_trip_through_png_files(tmp_path: Path, mnist_data: MnistData, trained_model: Path) -> None:
    # MNIST test digits drawn large, dark on a light page, saved as PNG: read back, classified as the originals.
    originals = mnist_data.test_images[:200]
    for index, digit in enumerate(originals):
        page = Image.fromarray(digit).resize((140, 140), Image.BILINEAR).point(lambda v: 245 - v * 0.85)
        canvas = Image.new("L", (220, 180), 245)
        canvas.paste(page, (60 + index % 20, 20 + index % 15))
        canvas.save(tmp_path / f"digit_{index:03d}.png")
    predictor = Predictor(trained_model)
    reference = predictor.predict(list(originals)).labels
    round_trip = predictor.predict([load_image(tmp_path / f"digit_{i:03d}.png")[1] for i in range(200)]).labels
    assert (reference == round_trip).mean() >= 0.95


@pytest.mark.slow
def test_cli_reports_each_file_and_survives_bad_ones(tmp_path: Path, trained_model: Path, mnist_data: MnistData,
                                                     capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(255 - mnist_data.test_images[index]).resize((112, 112)).save(folder / f"good_{index}.png")
    (folder / "notes.png").write_text("this is not an image")
    Image.new("L", (100, 100), 255).save(folder / "blank.png")
    Image.new("L", (5, 5), 0).save(folder / "tiny.bmp")
    sheet = tmp_path / "sheet.png"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(folder), "--checkpoint", str(trained_model), "--json", "--sheet", str(sheet)])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2  # some files failed: bad input, the others still read
    # It says which model reads, what it is, and what its "not sure" was fitted on.
    assert f"model: {trained_model} (one model; 'not sure' below " in err and "fitted on mnist validation" in err
    lines = [json.loads(line) for line in out.splitlines()]
    # An image without a digit is said to be one, as a field a program reads, never a digit.
    refused = {Path(line["file"]).name: line["refused"] for line in lines if "error" in line}
    assert refused == {"notes.png": "unreadable", "blank.png": "no digit", "tiny.bmp": "unreadable"}
    assert all("digit" not in line for line in lines if "error" in line)
    lines = [line for line in lines if "error" not in line]
    assert [Path(line["file"]).name for line in lines] == ["good_0.png", "good_1.png", "good_2.png"]
    for line in lines:  # the digit said is the likeliest of the ten, and the top 3 are the three likeliest
        probabilities = line["probabilities"]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert line["digit"] == max(range(10), key=probabilities.__getitem__)
        top = [probabilities[entry["digit"]] for entry in line["top3"]]
        rest = [p for digit, p in enumerate(probabilities) if digit not in {entry["digit"] for entry in line["top3"]}]
        assert top == sorted(top, reverse=True) and min(top) >= max(rest)
    assert f"{folder / 'notes.png'}: not an image Pillow can read" in err
    assert f"{folder / 'blank.png'}: no ink found" in err
    assert f"{folder / 'tiny.bmp'}: image too small to hold a digit (5x5 px" in err
    assert sheet.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("make, message", [
    (lambda path: None, "no such checkpoint file"),
    (lambda path: path.write_bytes(b"junk"), "not a checkpoint, or truncated"),
])
def test_bad_checkpoint_stops_before_any_image(tmp_path: Path, capsys: pytest.CaptureFixture, make, message) -> None:
    checkpoint = tmp_path / "model.pt"
    make(checkpoint)
    Image.new("L", (50, 50), 255).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(tmp_path / "a.png"), "--checkpoint", str(checkpoint)])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and message in err and out == "" and err.count("\n") == 1


@pytest.mark.slow
def test_a_labelled_folder_is_scored_with_per_digit_accuracy_confusions_and_a_sheet_of_misreads(
        tmp_path: Path, trained_model: Path, mnist_data: MnistData, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    truth = mnist_data.test_labels[:60]
    for index, digit in enumerate(mnist_data.test_images[:60]):
        Image.fromarray(255 - digit).resize((84, 84)).save(folder / f"d{index:02d}.png")
    labels = dict(zip([f"d{i:02d}.png" for i in range(60)], truth))
    labels["d00.png"] = (truth[0] + 1) % 10  # one label the model will disagree with
    (folder / "labels.csv").write_text("file,label\n" + "".join(f"{f},{d}\n" for f, d in labels.items()))
    misread = tmp_path / "misread.png"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(folder), "--labels", str(folder / "labels.csv"), "--checkpoint", str(trained_model),
                       "--misread", str(misread)])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 0
    predicted = Predictor(trained_model).predict([load_image(folder / f)[1] for f in labels]).labels
    right = int((predicted == np.array(list(labels.values()))).sum())
    assert f"accuracy {right / 60:.4f} ({right}/60)" in out
    planted = labels["d00.png"]
    assert predicted[0] != planted  # the case: the model disagrees with the planted label
    assert "per digit: 0: " in out and f"{planted} read as {predicted[0]}" in out  # the planted misreading is listed
    assert misread.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("content, message", [
    ("name,digit\na.png,1\n", "needs a header row with the columns file,label"),
    ("file,label\na.png,seven\n", "line 2: label must be a digit 0-9, got 'seven'"),
    ("file,label\nnothere.png,1\n", "labels none of the 1 image(s) given"),
])
@pytest.mark.slow
def test_a_bad_labels_file_is_one_line_naming_it(tmp_path: Path, trained_model: Path, capsys, content: str,
                                                  message: str) -> None:
    Image.new("L", (50, 50), 255).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(tmp_path / "a.png"), "--labels", str(tmp_path / "labels.csv"), "--checkpoint",
                       str(trained_model)])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2 and f"labels.csv: {message}" in err and "Traceback" not in err
