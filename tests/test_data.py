"""Data: the bundled copy, a user's IDX or CSV folder, the split, and every kind of broken file."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist.data import MnistData, load_mnist, split_train_val, to_model_input
from mnist.errors import UserError, run_cli
from mnist.data import main as data_main
from tests.helpers import write_csv


def run_data_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(data_main, args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_bundled_data_has_all_images_verified(mnist_data: MnistData) -> None:
    # The tutorial's CSV route lost the first image of each file (59,999 / 9,999).
    assert mnist_data.train_images.shape == (60000, 28, 28)
    assert mnist_data.test_images.shape == (10000, 28, 28)
    assert mnist_data.train_images.dtype == np.uint8
    assert mnist_data.checksums == "verified (md5)"
    assert np.bincount(mnist_data.train_labels, minlength=10).min() > 5000
    assert mnist_data.train_labels[0] == 5  # the famous first MNIST digit


def test_seed_split_keeps_last_fifth_for_validation(mnist_data: MnistData) -> None:
    split = split_train_val(mnist_data)
    assert (len(split.train_images), len(split.val_images)) == (48000, 12000)
    assert np.array_equal(split.val_images[0], mnist_data.train_images[48000])
    small = split_train_val(mnist_data, val_fraction=0.1, limit=1000)
    assert (len(small.train_images), len(small.val_images)) == (900, 100)
    assert np.array_equal(small.val_labels, mnist_data.train_labels[900:1000])


def test_model_input_is_normalised_float(mnist_data: MnistData) -> None:
    import torch

    batch = to_model_input(torch.from_numpy(np.array(mnist_data.train_images[:2000])))
    assert batch.shape == (2000, 1, 28, 28) and batch.dtype == torch.float32
    assert abs(batch.mean().item()) < 0.1 and abs(batch.std().item() - 1) < 0.1


def test_cli_prints_one_json_line(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_data_cli(["--limit", "1000"], capsys)
    summary = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert summary["train"] == 800 and summary["val"] == 200 and summary["test"] == 10000
    assert summary["checksums"] == "verified (md5)" and 0.1 < summary["pixel_mean"] < 0.16


@pytest.mark.parametrize("header", [False, True])
def test_csv_reads_every_row_with_or_without_header(tmp_path: Path, mnist_data: MnistData, header: bool) -> None:
    write_csv(tmp_path / "mnist_train.csv", mnist_data.train_images[:50], mnist_data.train_labels[:50], header)
    write_csv(tmp_path / "mnist_test.csv", mnist_data.test_images[:20], mnist_data.test_labels[:20], header)
    data = load_mnist(str(tmp_path))
    assert len(data.train_images) == 50 and len(data.test_images) == 20
    assert np.array_equal(data.train_images, mnist_data.train_images[:50])  # the first image too
    assert np.array_equal(data.test_labels, mnist_data.test_labels[:20])
    assert data.source.startswith("csv:")


def test_uncompressed_idx_folder_without_checksums(tmp_path: Path, idx_copy: Path, mnist_data: MnistData) -> None:
    for path in idx_copy.glob("t*-ubyte.gz"):
        (tmp_path / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    data = load_mnist(str(tmp_path))
    assert data.checksums.startswith("not checked")
    assert np.array_equal(data.test_images, mnist_data.test_images)


def _replace_line(path: Path, line_number: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def _cells(path: Path, line_number: int) -> list[str]:
    return path.read_text().splitlines()[line_number - 1].split(",")


@pytest.mark.parametrize("breakage, expected", [
    ("extra_column", "wrong column count: line 7 has 786 columns, expected 785"),
    ("missing_column", "line 7: wrong column count"),
    ("label_10", "line 7: label 10 is outside 0-9"),
    ("pixel_256", "line 7: pixel value 256 is outside 0-255"),
    ("non_numeric", "line 7, column 300: non-numeric cell"),
])
def test_broken_csv_cell_is_named(csv_folder: Path, capsys: pytest.CaptureFixture, breakage: str, expected: str) -> None:
    path = csv_folder / "mnist_train.csv"
    cells = _cells(path, 7)
    if breakage == "extra_column":
        cells.append("0")
    elif breakage == "missing_column":
        cells.pop()
    elif breakage == "label_10":
        cells[0] = "10"
    elif breakage == "pixel_256":
        cells[400] = "256"
    elif breakage == "non_numeric":
        cells[299] = "abc"
    _replace_line(path, 7, ",".join(cells))
    code, _, err = run_data_cli(["--data", str(csv_folder)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and str(path) in err and expected in err


def test_missing_csv_file_is_named(csv_folder: Path, capsys: pytest.CaptureFixture) -> None:
    (csv_folder / "mnist_test.csv").unlink()
    code, _, err = run_data_cli(["--data", str(csv_folder)], capsys)
    assert code == 2 and "mnist_test.csv: no such file" in err


def test_missing_folder_and_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_data_cli(["--data", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "nowhere: no such folder" in err
    code, _, err = run_data_cli(["--data", str(tmp_path)], capsys)
    assert code == 2 and "no MNIST files found" in err


def test_missing_idx_file_is_named(idx_copy: Path, capsys: pytest.CaptureFixture) -> None:
    (idx_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    code, _, err = run_data_cli(["--data", str(idx_copy)], capsys)
    assert code == 2 and "missing IDX file(s) for t10k-labels" in err


def test_truncated_gz_is_named(idx_copy: Path, capsys: pytest.CaptureFixture) -> None:
    path = idx_copy / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10000])
    code, _, err = run_data_cli(["--data", str(idx_copy)], capsys)
    assert code == 2 and f"{path}: truncated gzip file" in err


def test_idx_magic_mismatch_is_named(idx_copy: Path, capsys: pytest.CaptureFixture) -> None:
    # A labels file where the images should be: wrong magic number (and no checksum file in the way).
    (idx_copy / "MD5SUMS.uncompressed").unlink()
    images = idx_copy / "t10k-images-idx3-ubyte.gz"
    images.write_bytes((idx_copy / "t10k-labels-idx1-ubyte.gz").read_bytes())
    code, _, err = run_data_cli(["--data", str(idx_copy)], capsys)
    assert code == 2 and f"{images}: IDX magic number mismatch (expected 0x00000803, found 0x00000801)" in err


def test_checksum_mismatch_is_named(idx_copy: Path, capsys: pytest.CaptureFixture) -> None:
    path = idx_copy / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[100] = (content[100] + 1) % 10  # still a valid label: only the checksum can tell
    path.write_bytes(gzip.compress(bytes(content)))
    code, _, err = run_data_cli(["--data", str(idx_copy)], capsys)
    assert code == 2 and f"{path}: MD5 checksum mismatch" in err


def test_idx_label_out_of_range(tmp_path: Path, idx_copy: Path) -> None:
    (idx_copy / "MD5SUMS.uncompressed").unlink()
    path = idx_copy / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[8 + 3] = 12
    path.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(UserError, match="label 12 at index 3 is outside 0-9"):
        load_mnist(str(idx_copy))


@pytest.mark.slow
def test_bad_data_exits_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "mnist_train.csv").write_text("7,1,2\n")
    (tmp_path / "mnist_test.csv").write_text("7,1,2\n")
    result = subprocess.run([sys.executable, "-m", "mnist.data", "--data", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert "mnist_train.csv: wrong column count: 3 columns, expected 785" in result.stderr
