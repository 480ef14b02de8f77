"""Where training runs: the device, whether bf16 is native there, how many CPUs this process may use."""
from __future__ import annotations

import os

import torch

from mnist.errors import UserError


def available_cpus() -> int:
    """CPUs this process may run on (Ray and containers narrow it below os.cpu_count())."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# What --device takes in every CLI: "auto" is CUDA when torch sees a GPU, else the CPU.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for, but torch sees no CUDA GPU")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 matmuls and convolutions run in hardware here (else autocast would be slower)."""
    if device.type == "cuda":  # not counting emulation (V100, T4 say True and run bf16 slower than fp32)
        return torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_cuda_math(device: torch.device, exact: bool) -> str:
    """Choose CUDA's float32 math deliberately (the knob cuda_exact); returns what it is: "fp32" (exact:
    deterministic cuDNN kernels, no autotuning, no TF32) or "tf32" (autotuned kernels, TF32 matmuls and
    convolutions). CPU: "fp32", nothing changed."""
    if device.type != "cuda":
        return "fp32"
    torch.backends.cudnn.deterministic = exact
    torch.backends.cudnn.benchmark = not exact
    torch.backends.cuda.matmul.allow_tf32 = not exact
    torch.backends.cudnn.allow_tf32 = not exact
    return "fp32" if exact else "tf32"
