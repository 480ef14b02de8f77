"""Export a trained CCNet (or the winner's ensemble) for use outside this package: ONNX or TorchScript.

    python -m mnist.reading.export results/quick/best/ensemble.pt --format onnx          # -> results/quick/best/ensemble.onnx
    python -m mnist.reading.export results/train/RUN/best.pt --format torchscript --out ccnet.ts

The exported model is the whole contract, written into the file's metadata (ONNX `metadata_props`,
TorchScript's extra file `ccnet.json`) so that whoever loads it needs nothing from here:
  input  `image`: float32 (N, 1, 28, 28), pixel values in [0, 1] (uint8 / 255), a white digit on black,
         centred as MNIST's (photos and drawings: mnist.reading.preprocess first); N is free (a dynamic batch axis);
  output `logits`: float32 (N, 10), digits 0-9; probabilities = softmax(logits / temperature), the
         calibration's temperature in the metadata beside the "not sure" threshold.
The normalisation (MNIST's mean and std) is inside the exported graph.

After writing, the file is checked on the 10,000 test images against the checkpoint's own model
(onnxruntime for ONNX, torch.jit.load for TorchScript): identical predictions and a maximum absolute
logit difference under 1e-4, both printed; a file that fails the check is not left behind.
ONNX needs the `export` extra: pip install -e '.[export]'.
"""
from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnist.atomic import json_text, write_atomic
from mnist.checkpoint import check_calibration, load_checkpoint
from mnist.data import load_mnist, normalize
from mnist.errors import UserError, optional_module, run_cli
from mnist.layout import EXPORTS
from mnist.model import model_from_checkpoint
from mnist.reading.shipped import NAME, is_shipped, shipped_path

FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}  # format -> the suffix of the default --out
METADATA_FILE = "ccnet.json"  # TorchScript: the contract's extra file inside the archive
MAX_LOGIT_DIFFERENCE = 1e-4  # what "the same model" means after export: float32 rounding, nothing more
CHECK_BATCH = 512  # the parity check's batch: 10,000 = 19 x 512 + 272, so two batch sizes are run


class PixelsToLogits(nn.Module):
    """The exported graph: pixels in [0, 1] -> MNIST's normalisation -> the model's logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(image.clone()))  # normalize works in place: the caller's tensor stays


def contract(state: dict[str, Any], source: Path) -> dict[str, str]:
    """The metadata written into an exported file: what goes in, what comes out, where it came from."""
    calibration = state.get("calibration") or {}
    return {
        "input": "image: float32 (N, 1, 28, 28), pixel values in [0, 1] (uint8 / 255), white digit on black, "
                 "centred as MNIST's (photos and drawings: mnist.reading.preprocess first); normalisation is inside",
        "output": "logits: float32 (N, 10) for digits 0-9; probabilities = softmax(logits / temperature)",
        "temperature": str(float(calibration.get("temperature", 1.0))),
        "unsure_below": str(float(calibration.get("unsure_below", 0.0))),
        "members": str(state.get("members", 1)),
        "config": json_text(state["config"]),
        "git_commit": str(state.get("git_commit", "unknown")),
        "exported_from": source.name,
    }


def write_onnx(module: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    onnx = optional_module("onnx", "export", "--format onnx")
    optional_module("onnxscript", "export", "--format onnx")  # torch's ONNX exporter is written with it
    example = torch.rand(2, 1, 28, 28)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, verbose=False, input_names=["image"],
                                    output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    model = program.model_proto
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    write_atomic(path, lambda tmp: onnx.save_model(model, tmp))


def write_torchscript(module: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export, still what many load
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, torch.rand(2, 1, 28, 28))
        write_atomic(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files={METADATA_FILE: json_text(metadata)}))


def format_of(path: Path) -> str | None:
    """The export format a file's suffix names (.onnx, .ts), else None (a checkpoint)."""
    return next((fmt for fmt, suffix in FORMATS.items() if path.suffix == suffix), None)


class ExportedModel:
    """An exported file read back the way a user outside this package would: logits and the contract."""

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        self.path = path
        if (fmt or format_of(path)) == "onnx":
            runtime = optional_module("onnxruntime", "export", f"{path}: an ONNX model")
            try:
                self.session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            except Exception as error:  # onnxruntime raises its own types for a file that is not a model
                raise UserError(f"{path}: not an ONNX model onnxruntime can load ({str(error).splitlines()[0]})") from None
            self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        else:
            extra = {METADATA_FILE: ""}
            try:
                with warnings.catch_warnings():  # deprecated, still what TorchScript users call
                    warnings.simplefilter("ignore")
                    self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            except Exception as error:
                raise UserError(f"{path}: not a TorchScript file ({str(error).splitlines()[0]})") from None
            self.metadata = json.loads(extra[METADATA_FILE] or "{}")
        if "temperature" not in self.metadata:
            raise UserError(f"{path}: no CCNet contract in its metadata (not written by python -m mnist.reading.export)")
        self.temperature, self.unsure_below = check_calibration(self.metadata, f"{path}: metadata", as_text=True)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28) in [0, 1] -> float32 logits (N, 10)."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if hasattr(self, "session"):
            return self.session.run(["logits"], {"image": pixels})[0]
        with torch.inference_mode():
            return self.module(torch.from_numpy(pixels)).numpy()


def batched_logits(logits_of: Any, images: np.ndarray, batch_size: int = CHECK_BATCH) -> np.ndarray:
    """Logits of uint8 images (N, 28, 28) through `logits_of` (float pixels -> logits), batch by batch."""
    pixels = images[:, None].astype(np.float32) / 255
    return np.concatenate([logits_of(pixels[start:start + batch_size]) for start in range(0, len(pixels), batch_size)])


def parity(reference: nn.Module, exported: ExportedModel, images: np.ndarray) -> dict[str, float]:
    """How far the exported file's answers are from the checkpoint's model on `images`."""
    def eager(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return reference(torch.from_numpy(pixels)).numpy()

    expected, got = batched_logits(eager, images), batched_logits(exported.logits, images)
    return {"images": len(images), "max_abs_logit_difference": float(np.abs(expected - got).max()),
            "same_predictions": int((expected.argmax(1) == got.argmax(1)).sum())}


def export_checkpoint(checkpoint: Path, fmt: str, out: Path, test_images: np.ndarray) -> dict[str, float]:
    """Write `checkpoint`'s model as `fmt` to `out` and check it on `test_images`; the file is removed
    (a previous one at `out` kept) when its answers differ."""
    state = load_checkpoint(checkpoint)
    module = PixelsToLogits(model_from_checkpoint(state, torch.device("cpu"))).eval()
    staged = out.with_name(f".{out.name}.checking")  # checked before it takes `out`'s name
    try:
        (write_onnx if fmt == "onnx" else write_torchscript)(module, staged, contract(state, checkpoint))
        exported = ExportedModel(staged, fmt)
        check = parity(module, exported, test_images)
        calibration = state.get("calibration") or {"temperature": 1.0, "unsure_below": 0.0}
        if (exported.temperature, exported.unsure_below) != (calibration["temperature"], calibration["unsure_below"]):
            raise UserError(f"{out}: the calibration read back ({exported.temperature}, {exported.unsure_below}) "
                            f"is not {checkpoint}'s: not written")
        if check["same_predictions"] != check["images"] or check["max_abs_logit_difference"] >= MAX_LOGIT_DIFFERENCE:
            raise UserError(f"{out}: the exported model differs from {checkpoint} (max |logit difference| "
                            f"{check['max_abs_logit_difference']:.2e}, {check['same_predictions']}/{check['images']} "
                            "same predictions): not written")
        staged.replace(out)
    finally:
        staged.unlink(missing_ok=True)
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default=None, help="a CCNet checkpoint: a best.pt, a best/model.pt "
                                                                     "or best/ensemble.pt (default: the shipped reader)")
    parser.add_argument("--format", choices=list(FORMATS), required=True, help="onnx (onnxruntime and others) or "
                                                                                 "torchscript (torch.jit.load)")
    parser.add_argument("--out", default=None, help="the file to write (default: beside the checkpoint, its name "
                                                    f"with .onnx or .ts; the shipped reader's under {EXPORTS}/)")
    parser.add_argument("--data", default=None, help="MNIST for the parity check (default: the bundled copy)")
    args = parser.parse_args(argv)
    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_path()
    print(f"model: {NAME if is_shipped(checkpoint) else checkpoint}", flush=True)
    default_out = (Path(EXPORTS) if is_shipped(checkpoint) else checkpoint.parent) / checkpoint.name
    out = Path(args.out) if args.out else default_out.with_suffix(FORMATS[args.format])
    if not args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() == checkpoint.resolve():
        raise UserError(f"{out}: is the checkpoint itself; choose another --out")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder for --out")
    if out.is_dir():  # checked before the export's half minute, in the user's own words
        raise UserError(f"{out}: a folder; --out names the file to write (for example {out / checkpoint.with_suffix(FORMATS[args.format]).name})")
    check = export_checkpoint(checkpoint, args.format, out, load_mnist(args.data).test_images)
    print(f"wrote {out} ({args.format}, batch axis dynamic, contract in its metadata)")
    print(f"checked on the {check['images']:,} test images: {check['same_predictions']:,}/{check['images']:,} "
          f"identical predictions, max |logit difference| {check['max_abs_logit_difference']:.2e} "
          f"(limit {MAX_LOGIT_DIFFERENCE:g})")
    return 0


if __name__ == "__main__":
    run_cli(main)
