"""Benchmark: the tutorial's training pipeline vs ours, same CCNet, same batches, one run.

(a) the tutorial's: a Dataset returning float64 images and one-hot labels item by item, a
    DataLoader, the ReLU+Softmax head, `.item()` after every step;
(b) ours: uint8 data in one tensor, randperm index slices, logits head, one sync per epoch.
Also the time to load the data: the bundled IDX files vs the tutorial's pandas CSV route, and what
the EMA of the weights (knob `ema`: one update after every optimizer step) costs of (b)'s throughput.

    python -m benchmarks.train_speed [--batches 300] [--threads N]
The last line is `speedup_vs_tutorial: X.XX` (images/s of ours over the tutorial's).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from mnist.batches import EpochBatches
from mnist.config import resolve_config
from mnist.data import MnistData, device_images, device_labels, load_mnist
from mnist.device import available_cpus, bf16_is_native
from mnist.errors import run_cli
from mnist.model import CCNet
from mnist.train import ema_of, per_step_updates, train_one_epoch

BATCH_SIZE = 32  # the tutorial's


class SeedDataset(Dataset):
    """A faithful copy of the tutorial's NumberDataset.__getitem__: float64 pixels, one-hot float64 labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images[:, None, :, :].astype(np.int64)  # the tutorial's CSV gave int64 arrays
        self.labels = labels.astype(np.int64)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        label_one_hot = np.zeros(10)
        label_one_hot[self.labels[index]] = 1
        return self.images[index] / 255.0, label_one_hot

    def __len__(self) -> int:
        return len(self.labels)


def tutorial_pipeline(data: MnistData, batches: int) -> float:
    """Images per second of the tutorial's training loop for `batches` batches."""
    torch.manual_seed(0)
    count = batches * BATCH_SIZE
    loader = DataLoader(SeedDataset(data.train_images[:count], data.train_labels[:count]), batch_size=BATCH_SIZE, shuffle=False)
    model = CCNet(head="tutorial")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    for image, label in loader:
        image, label = image.type(torch.float32), label.type(torch.float32)
        output = model(image)
        optimizer.zero_grad()
        loss = criterion(output, label)
        loss.backward()
        optimizer.step()
        _ = loss.item()
        _ = output.argmax(dim=1).eq(label.argmax(dim=1)).sum().item() / BATCH_SIZE
    return count / (time.perf_counter() - started)


def our_pipeline(data: MnistData, batches: int, amp: bool, ema: bool = False) -> float:
    """Images per second of `mnist.train.train_one_epoch` over the same number of images (with `ema`: the
    moving average of the weights updated after every step, as train() does)."""
    torch.manual_seed(0)
    count = batches * BATCH_SIZE
    images, labels = device_images(data.train_images[:count]), device_labels(data.train_labels[:count])
    model = CCNet().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    average = ema_of(model, resolve_config({"ema": ema}))
    started = time.perf_counter()
    train_one_epoch(model, optimizer, EpochBatches(images, labels, BATCH_SIZE, seed=0, epoch=1), amp,
                    after_step=per_step_updates(None, average, model))
    return count / (time.perf_counter() - started)


def ema_cost(data: MnistData, batches: int, amp: bool, rounds: int = 3) -> tuple[float, float]:
    """(images/s without, with the EMA): medians of `rounds` alternating runs, so that a busy moment of the
    machine falls on both."""
    without, with_ema = [], []
    for _ in range(rounds):
        without.append(our_pipeline(data, batches, amp))
        with_ema.append(our_pipeline(data, batches, amp, ema=True))
    return statistics.median(without), statistics.median(with_ema)


def load_times(data: MnistData) -> tuple[float, float]:
    """Seconds to load the bundled IDX files, and to read the tutorial's mnist_train.csv with pandas."""
    started = time.perf_counter()
    load_mnist()
    bundled = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist_train.csv"
        pixels = data.train_images.reshape(len(data.train_images), -1)
        pd.DataFrame(np.column_stack([data.train_labels, pixels])).to_csv(path, index=False, header=False)
        started = time.perf_counter()
        frame = pd.read_csv(path)  # the tutorial's call (which also took the first image for a header)
        np.array(frame.iloc[:, 1:]).reshape(-1, 1, 28, 28)
        csv = time.perf_counter() - started
    return bundled, csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seed pipeline vs ours: images/s and data load time.")
    parser.add_argument("--batches", type=int, default=300, help="batches of 32 trained by each pipeline")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all available)")
    parser.add_argument("--skip-csv", action="store_true", help="skip writing and reading the 60,000-row CSV")
    args = parser.parse_args(argv)
    threads = args.threads or available_cpus()
    torch.set_num_threads(threads)
    data = load_mnist()
    print(f"CPU threads {threads}, torch {torch.__version__}, {args.batches} batches of {BATCH_SIZE}")
    if not args.skip_csv:
        bundled, csv = load_times(data)
        print(f"data load: bundled IDX {bundled:.2f} s, tutorial's pandas CSV {csv:.2f} s ({csv / bundled:.1f}x)")
    amp = bf16_is_native(torch.device("cpu"))  # what mnist.train does by default here
    our_pipeline(data, min(20, args.batches), amp)  # warm-up: first-call kernel selection
    tutorial = tutorial_pipeline(data, args.batches)
    ours_fp32 = our_pipeline(data, args.batches, amp=False)
    ours = our_pipeline(data, args.batches, amp) if amp else ours_fp32
    print(f"tutorial pipeline:    {tutorial:.0f} images/s")
    print(f"our pipeline, fp32:   {ours_fp32:.0f} images/s ({ours_fp32 / tutorial:.2f}x)")
    print(f"our pipeline, {'bf16' if amp else 'fp32'} (default here): {ours:.0f} images/s")
    without, with_ema = ema_cost(data, args.batches, amp)
    print(f"EMA of the weights, batch {BATCH_SIZE}: {with_ema:.0f} vs {without:.0f} images/s without "
          f"(median of 3 alternating runs): ema_cost {100 * (1 - with_ema / without):.1f}% of throughput")
    print(f"speedup_vs_tutorial: {ours / tutorial:.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
