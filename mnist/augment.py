"""Augmentation on the device, batched: random translation, rotation and zoom of training images.

Every image's transform is drawn for a whole epoch at once from (seed, epoch) alone, so a
resumed run draws exactly what the uninterrupted one did. Whole-pixel shifts alone take an
exact integer path (`shift_images`, no resampling); rotation or zoom take one
`affine_grid` + `grid_sample` per batch, with the shifts folded into the same matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """The augmentation knobs of a training config (see mnist.config)."""
    shift: int = 0
    rotate: float = 0.0
    scale: float = 0.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Augmentation":
        return cls(shift=config["shift"], rotate=config["rotate"], scale=config["scale"])

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.scale)


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + stream)


def random_shifts(count: int, max_shift: int, seed: int, epoch: int) -> torch.Tensor:
    """(count, 2) integer (dy, dx) in [-max_shift, max_shift], fixed by (seed, epoch) so a resumed run draws the same."""
    return torch.randint(-max_shift, max_shift + 1, (count, 2), generator=_generator(seed, epoch, 500_009))


def random_affine(count: int, augmentation: Augmentation, seed: int, epoch: int) -> torch.Tensor:
    """(count, 2, 3) sampling matrices for `affine_grid`: each image's rotation, zoom and shift.

    The matrix maps an output pixel to where it reads in the input, in [-1, 1] coordinates:
    a digit zoomed by s and turned by a reads at R(-a)/s, and a shift (dy, dx) reads at -shift.
    """
    uniform = torch.rand((count, 2), generator=_generator(seed, epoch, 700_001)) * 2 - 1
    angle = uniform[:, 0] * math.radians(augmentation.rotate)
    zoom = 1 + uniform[:, 1] * augmentation.scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, sin, torch.zeros(count)], 1),
                         torch.stack([-sin, cos, torch.zeros(count)], 1)], 1)
    if augmentation.shift:
        shifts = random_shifts(count, augmentation.shift, seed, epoch).float()
        theta[:, 0, 2] = -2 * shifts[:, 1] / 28  # x is the column: dx; one pixel is 2/28 in [-1, 1]
        theta[:, 1, 2] = -2 * shifts[:, 0] / 28
    return theta


def shift_images(images: torch.Tensor, shifts: torch.Tensor, margin: int) -> torch.Tensor:
    """Translate each (B, 1, H, W) image by its own (dy, dx) pixels, each at most `margin`; what moves in is background (0).

    `margin` is given, not read off `shifts`, so that a batch costs no device-to-host sync.
    """
    if margin == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (margin, margin, margin, margin))
    shifts = shifts.to(images.device)
    # Output pixel (r, c) of image b reads padded pixel (r + margin - dy, c + margin - dx).
    rows = torch.arange(height, device=images.device) + margin - shifts[:, :1]
    cols = torch.arange(width, device=images.device) + margin - shifts[:, 1:]
    batch = torch.arange(len(images), device=images.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def affine_images(pixels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample float (B, 1, H, W) pixels in [0, 1] through each image's matrix; outside the frame is background (0)."""
    grid = F.affine_grid(theta.to(pixels.device, pixels.dtype), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
