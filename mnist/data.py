"""MNIST on disk -> uint8 arrays in memory: the bundled IDX files, a user's IDX folder, or the tutorial's Kaggle CSVs.

Images stay uint8 (the 60,000 training images are 47 MB) and are normalised batch by batch
on the device (`to_model_input`). The split is the tutorial's: the last `val_fraction` of the
60,000 training images are the validation set; the 10,000 t10k images are the test set, used
only to evaluate a finished model.

    python -m mnist.data [--data DIR]   # one JSON line: source, counts, pixel mean/std, checksums
"""
from __future__ import annotations

import argparse
import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mnist.atomic import json_text
from mnist.config import DEFAULTS
from mnist.errors import UserError, run_cli

BUNDLED_DIR = Path(__file__).parent / "bundled"
IMAGE_SIDE = 28
NUM_CLASSES = 10
# Mean and std of the 60,000 MNIST training pixels scaled to [0, 1] (the usual constants).
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
# Each role matches the original names and the common variants (train-images.idx3-ubyte, .gz or not).
IDX_PATTERNS = {
    "train_images": r"train-images[-.]idx3-ubyte(\.gz)?",
    "train_labels": r"train-labels[-.]idx1-ubyte(\.gz)?",
    "test_images": r"t10k-images[-.]idx3-ubyte(\.gz)?",
    "test_labels": r"t10k-labels[-.]idx1-ubyte(\.gz)?",
}
CSV_FILES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
CHECKSUM_FILES = ("MD5SUMS.uncompressed", "MD5SUMS")


@dataclass(frozen=True)
class MnistData:
    """The whole dataset as uint8 numpy arrays: images (N, 28, 28), labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    checksums: str


@dataclass(frozen=True)
class Split:
    """Train and validation parts of the training images, as uint8 arrays."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


# ---------------------------------------------------------------- IDX files

def _read_bytes(path: Path) -> bytes:
    """The (decompressed) content of `path`, with a one-line error for a broken file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    if not path.name.endswith(".gz"):
        return raw
    try:
        # zlib with gzip framing is ~2x faster than the gzip module on 10 MB.
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        content = decompressor.decompress(raw)
    except zlib.error as error:
        raise UserError(f"{path}: not a valid gzip file ({error})") from None
    if not decompressor.eof:
        raise UserError(f"{path}: truncated gzip file (compressed data ends early)")
    return content


def parse_idx(content: bytes, expected_magic: int, path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes, checking its magic number and size."""
    if len(content) < 8:
        raise UserError(f"{path}: too short to be an IDX file ({len(content)} bytes)")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise UserError(f"{path}: IDX magic number mismatch (expected 0x{expected_magic:08x}, found 0x{magic:08x})")
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + int(np.prod(shape))
    if len(content) != expected_size:
        raise UserError(f"{path}: IDX size mismatch (header says {shape}, needs {expected_size} bytes, file has {len(content)})")
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_checksums(folder: Path) -> dict[str, str] | None:
    """{file name: md5} from an MD5SUMS file in `folder`, or None when there is none."""
    for name in CHECKSUM_FILES:
        path = folder / name
        if path.exists():
            sums = {}
            for line in path.read_text().splitlines():
                if line.strip():
                    digest, _, file_name = line.strip().partition(" ")
                    sums[file_name.strip().lstrip("*")] = digest.lower()
            return sums
    return None


def _find_idx_files(folder: Path) -> dict[str, Path]:
    names = sorted(p.name for p in folder.iterdir())
    found = {}
    for role, pattern in IDX_PATTERNS.items():
        matches = [n for n in names if re.fullmatch(pattern, n)]
        if matches:
            found[role] = folder / matches[0]
    return found


def _check_labels(labels: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise UserError(f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside 0-9")


def load_idx_folder(folder: Path, files: dict[str, Path]) -> MnistData:
    """Read the four IDX files; verify their MD5 when the folder has an MD5SUMS file."""
    sums = _read_checksums(folder)
    arrays = {}
    for role, path in files.items():
        content = _read_bytes(path)
        if sums is not None:
            expected = sums.get(path.name.removesuffix(".gz"))
            actual = hashlib.md5(content).hexdigest()
            if expected is None:
                raise UserError(f"{path}: no checksum for it in the MD5SUMS file of {folder}")
            if actual != expected:
                raise UserError(f"{path}: MD5 checksum mismatch (expected {expected}, got {actual})")
        magic = IDX_IMAGES_MAGIC if role.endswith("images") else IDX_LABELS_MAGIC
        arrays[role] = parse_idx(content, magic, path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise UserError(f"{files[f'{split}_images']}: images are {images.shape[1:]}, expected 28x28")
        if len(images) != len(labels):
            raise UserError(f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images")
        _check_labels(labels, files[f"{split}_labels"])
    checksums = "verified (md5)" if sums is not None else "not checked (no MD5SUMS file)"
    return MnistData(**arrays, source=f"idx:{folder}", checksums=checksums)


# ---------------------------------------------------------------- Kaggle CSV files

def _has_header(path: Path) -> bool:
    """The tutorial's reader lost one image by taking the first data row as a header: look instead."""
    with open(path) as file:
        first_cell = file.readline().split(",")[0].strip().strip('"')
    return not first_cell.lstrip("-").isdigit()


def _first_bad_cell(frame: pd.DataFrame) -> tuple[int, int, object]:
    """(row, column, value) of the first cell that is not a number."""
    for column in frame.columns:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            return row, int(column), frame[column].iloc[row]
    raise AssertionError("no non-numeric cell found")


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) from a CSV of label + 784 pixels per row."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    header_lines = int(_has_header(path))
    columns = 1 + IMAGE_SIDE * IMAGE_SIDE
    try:
        frame = pd.read_csv(path, header=None, skiprows=header_lines, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty file") from None
    except pd.errors.ParserError as error:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        detail = f"line {found[2]} has {found[3]} columns, expected {found[1]}" if found else str(error).strip()
        raise UserError(f"{path}: wrong column count: {detail}") from None
    line_of = lambda row: row + 1 + header_lines  # noqa: E731 - 1-based line in the file
    if frame.shape[1] != columns:
        raise UserError(f"{path}: wrong column count: {frame.shape[1]} columns, expected {columns} (label + 784 pixels)")
    if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):
        row, column, value = _first_bad_cell(frame)
        raise UserError(f"{path}: line {line_of(row)}, column {column + 1}: non-numeric cell {value!r}")
    values = frame.to_numpy()
    missing_rows = np.flatnonzero(np.isnan(values).any(axis=1)) if values.dtype.kind == "f" else []
    if len(missing_rows):
        row = int(missing_rows[0])
        raise UserError(f"{path}: line {line_of(row)}: wrong column count (missing cells)")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        row = int(np.flatnonzero((values != np.round(values)).any(axis=1))[0])
        raise UserError(f"{path}: line {line_of(row)}: non-integer value")
    labels, pixels = values[:, 0], values[:, 1:]
    bad_labels = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad_labels.size:
        row = int(bad_labels[0])
        raise UserError(f"{path}: line {line_of(row)}: label {labels[row]:g} is outside 0-9")
    bad_rows = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if bad_rows.size:
        row = int(bad_rows[0])
        value = pixels[row][(pixels[row] < 0) | (pixels[row] > 255)][0]
        raise UserError(f"{path}: line {line_of(row)}: pixel value {value:g} is outside 0-255")
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return images, labels.astype(np.uint8)


def load_csv_folder(folder: Path) -> MnistData:
    train_images, train_labels = load_csv(folder / CSV_FILES["train"])
    test_images, test_labels = load_csv(folder / CSV_FILES["test"])
    return MnistData(train_images, train_labels, test_images, test_labels,
                     source=f"csv:{folder}", checksums="not checked (CSV)")


# ---------------------------------------------------------------- entry points

def load_mnist(data_dir: str | None = None) -> MnistData:
    """The bundled MNIST (default), or a folder of IDX files or of the Kaggle CSVs."""
    if data_dir is None:
        data = load_idx_folder(BUNDLED_DIR, _find_idx_files(BUNDLED_DIR))
        return MnistData(data.train_images, data.train_labels, data.test_images, data.test_labels,
                         source="bundled", checksums=data.checksums)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (--data takes a folder of IDX files or mnist_train.csv + mnist_test.csv)")
    if (folder / CSV_FILES["train"]).exists() or (folder / CSV_FILES["test"]).exists():
        return load_csv_folder(folder)
    files = _find_idx_files(folder)
    missing = [IDX_PATTERNS[role].split("[")[0] for role in IDX_PATTERNS if role not in files]
    if len(missing) == len(IDX_PATTERNS):
        raise UserError(f"{folder}: no MNIST files found (expected train-images-idx3-ubyte[.gz] and the other three "
                        "IDX files, or mnist_train.csv + mnist_test.csv)")
    if missing:
        raise UserError(f"{folder}: missing IDX file(s) for {', '.join(missing)}")
    return load_idx_folder(folder, files)


def split_train_val(data: MnistData, val_fraction: float = DEFAULTS["val_fraction"], limit: int | None = None) -> Split:
    """The tutorial's deterministic split: the last `val_fraction` of the (first `limit`) training images."""
    count = len(data.train_images) if limit is None else min(limit, len(data.train_images))
    first_val = int(round(count * (1 - val_fraction)))
    if first_val < 1 or (val_fraction > 0 and first_val >= count):
        raise UserError(f"val_fraction {val_fraction} leaves an empty split of {count} images")
    images, labels = data.train_images[:count], data.train_labels[:count]
    return Split(images[:first_val], labels[:first_val], images[first_val:], labels[first_val:])


def device_images(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, 28, 28) -> uint8 (N, 1, 28, 28) on `device`, copied (Ray's shared arrays are read-only)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1).to(device)


def device_labels(labels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Digit labels as the int64 tensor the loss wants, on `device`."""
    return torch.from_numpy(np.array(labels, dtype=np.int64)).to(device)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1], (B, 1, 28, 28) -> the model's normalised channels-last input, in place."""
    return images.sub_(PIXEL_MEAN).div_(PIXEL_STD).contiguous(memory_format=torch.channels_last)


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) or (B, 1, 28, 28) -> normalised float32 (B, 1, 28, 28), on the images' device."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return normalize(images.float().div_(255))


def summarize(data: MnistData, val_fraction: float = DEFAULTS["val_fraction"], limit: int | None = None) -> dict:
    split = split_train_val(data, val_fraction, limit)
    pixels = split.train_images.astype(np.float32) / 255
    return {
        "source": data.source,
        "train": len(split.train_images),
        "val": len(split.val_images),
        "test": len(data.test_images),
        "pixel_mean": round(float(pixels.mean()), 4),
        "pixel_std": round(float(pixels.std()), 4),
        "checksums": data.checksums,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load MNIST and print one JSON line describing it.")
    parser.add_argument("--data", default=None, help="folder of IDX or Kaggle CSV files (default: the bundled copy)")
    parser.add_argument("--val-fraction", type=float, default=DEFAULTS["val_fraction"],
                        help="share of the training images kept for validation")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    args = parser.parse_args(argv)
    print(json_text(summarize(load_mnist(args.data), args.val_fraction, args.limit)))
    return 0


if __name__ == "__main__":
    run_cli(main)
