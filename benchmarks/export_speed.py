"""Benchmark: images per second of one model as torch eager, TorchScript and onnxruntime, on this CPU, one run.

    python -m benchmarks.export_speed [--checkpoint FILE] [--threads N] [--seconds 3]

The same model (a checkpoint's, else a fresh CCNet: speed does not depend on the weights) is exported
with mnist.reading.export to a temporary folder and timed at batch 1 (one drawing on the page) and batch 512
(a folder of scans), each runtime held to the same number of threads. The last lines are
`<runtime>_batch<B>_images_per_s: X` and `<runtime>_vs_eager_batch<B>: X.XX`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.data import load_mnist
from mnist.device import available_cpus
from mnist.errors import optional_module, run_cli
from mnist.model import CCNet, model_from_checkpoint
from mnist.reading.export import ExportedModel, PixelsToLogits, export_checkpoint

BATCHES = (1, 512)


def images_per_second(logits_of: Callable[[np.ndarray], object], pixels: np.ndarray, seconds: float) -> float:
    """Calls of `logits_of` on `pixels` for about `seconds` (after two warm-up calls) -> images per second."""
    for _ in range(2):
        logits_of(pixels)
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        logits_of(pixels)
        calls += 1
    return calls * len(pixels) / elapsed


def runtimes(checkpoint: Path, folder: Path, threads: int) -> dict[str, Callable[[np.ndarray], object]]:
    """{runtime: float pixels -> logits} for the checkpoint's model, exported into `folder`."""
    test_images = load_mnist().test_images[:1000]  # export's own parity check; speed is what is measured here
    export_checkpoint(checkpoint, "torchscript", folder / "model.ts", test_images)
    export_checkpoint(checkpoint, "onnx", folder / "model.onnx", test_images)
    eager = PixelsToLogits(model_from_checkpoint(load_checkpoint(checkpoint), torch.device("cpu"))).eval()
    scripted = ExportedModel(folder / "model.ts")
    runtime = optional_module("onnxruntime", "export", "the onnxruntime benchmark")
    options = runtime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = runtime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

    def torch_eager(pixels: np.ndarray) -> object:
        with torch.inference_mode():
            return eager(torch.from_numpy(pixels)).numpy()

    return {"torch_eager": torch_eager, "torchscript": scripted.logits,
            "onnxruntime": lambda pixels: session.run(["logits"], {"image": pixels})[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a CCNet checkpoint (default: a fresh CCNet)")
    parser.add_argument("--threads", type=int, default=available_cpus(), help="threads of every runtime "
                                                                              "(default: the CPUs available)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per runtime and batch (default 3)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pixels = load_mnist().test_images[:max(BATCHES), None].astype(np.float32) / 255
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(args.checkpoint) if args.checkpoint else Path(tmp) / "fresh.pt"
        if not args.checkpoint:
            save_checkpoint({"model": CCNet().state_dict(), "config": {}}, checkpoint)
        timed = runtimes(checkpoint, Path(tmp), args.threads)
        speeds = {(name, batch): images_per_second(logits_of, pixels[:batch], args.seconds)
                  for batch in BATCHES for name, logits_of in timed.items()}
    print(f"{checkpoint if args.checkpoint else 'a fresh CCNet'}, {args.threads} thread(s), torch {torch.__version__}")
    for (name, batch), speed in speeds.items():
        print(f"{name}_batch{batch}_images_per_s: {speed:.0f}")
    for (name, batch), speed in speeds.items():
        if name != "torch_eager":
            print(f"{name}_vs_eager_batch{batch}: {speed / speeds['torch_eager', batch]:.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
