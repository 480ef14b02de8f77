"""Augmentation on the device, batched: the ways people's digits differ from MNIST's, applied to training images.

Geometry: translation, rotation, zoom, slant (shear), width (stretch) and elastic distortion
(Simard et al. 2003: a smooth random displacement field; here drawn on a coarse 4x4 grid per
image and interpolated bicubically, which is what a Gaussian-smoothed field amounts to at
28x28 and costs almost nothing). Ink: strokes thickened or thinned (a blend towards a 3x3
dilation or erosion) and a small box erased. Corruptions (mnist.corrupt): noise, blur, fog, rules,
bars, scribbles, hollow strokes and more, on a share of the images. Labels are never changed.

Every image's draw is made for a whole epoch at once from (seed, epoch) alone, so a resumed
run draws exactly what the uninterrupted one did. Whole-pixel shifts alone take an exact
integer path (`shift_images`, no resampling); any other geometry takes one `affine_grid` +
`grid_sample` per batch, with every transform folded into the same sampling grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from mnist.corrupt import draw_corruptions


@dataclass(frozen=True)
class Augmentation:
    """The augmentation knobs of a training config (see mnist.config)."""
    shift: int = 0
    rotate: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    stretch: float = 0.0
    elastic: float = 0.0
    thickness: float = 0.0
    erase: float = 0.0
    corrupt: float = 0.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Augmentation":
        # .get: configs and checkpoints from before a knob existed hold no key for it (= off).
        return cls(**{field.name: config.get(field.name, field.default) for field in fields(cls)})

    @property
    def affine(self) -> bool:
        """Whether the geometry needs resampling (anything but whole-pixel shifts)."""
        return bool(self.rotate or self.scale or self.shear or self.stretch or self.elastic)

    @property
    def ink(self) -> bool:
        return bool(self.thickness or self.erase or self.corrupt)


@dataclass
class EpochDraw:
    """Every training image's random transform of one epoch, indexed like the dataset, on the device."""
    theta: torch.Tensor | None = None  # (N, 2, 3) affine sampling matrices
    field: torch.Tensor | None = None  # (N, 2, 4, 4) coarse elastic displacements, in [-1, 1] units
    shifts: torch.Tensor | None = None  # (N, 2) whole-pixel shifts (the exact path, nothing else affine)
    thickness: torch.Tensor | None = None  # (N,) in [-1, 1]: towards erosion (< 0) or dilation (> 0)
    erase: torch.Tensor | None = None  # (N, 4) top, left, height, width of the erased box; height 0 = none
    corruption: torch.Tensor | None = None  # (N,) kind of mnist.corrupt.KINDS, NO_CORRUPTION for a clean image
    corruption_parameters: torch.Tensor | None = None  # (N, mnist.corrupt.PARAMETERS) its strengths, uniform


def draw_epoch(count: int, augmentation: Augmentation, seed: int, epoch: int,
               device: torch.device | str) -> EpochDraw:
    """Each image's transform for the epoch, from (seed, epoch) alone, drawn on the host and moved once."""
    draw = EpochDraw()
    if augmentation.affine:
        draw.theta = random_affine(count, augmentation, seed, epoch).to(device)
    elif augmentation.shift:
        draw.shifts = random_shifts(count, augmentation.shift, seed, epoch).to(device)
    if augmentation.elastic:
        field = torch.rand((count, 2, ELASTIC_GRID, ELASTIC_GRID), generator=epoch_generator(seed, epoch, 900_007)) * 2 - 1
        draw.field = (field * augmentation.elastic * 2 / 28).to(device)  # pixels -> [-1, 1] grid units
    if augmentation.thickness:
        draw.thickness = ((torch.rand(count, generator=epoch_generator(seed, epoch, 300_007)) * 2 - 1)
                          * augmentation.thickness).to(device)
    if augmentation.erase:
        draw.erase = random_boxes(count, augmentation.erase, seed, epoch).to(device)
    if augmentation.corrupt:
        kinds, parameters = draw_corruptions(count, augmentation.corrupt, epoch_generator(seed, epoch, 1_100_009))
        draw.corruption, draw.corruption_parameters = kinds.to(device), parameters.to(device)
    return draw


ELASTIC_GRID = 4  # control points per side: displacements vary smoothly over about 9 pixels
ERASE_SIDES = (3, 8)  # an erased box is 3 to 7 px a side: a gap in a stroke, not a missing digit


def random_boxes(count: int, probability: float, seed: int, epoch: int) -> torch.Tensor:
    """(count, 4) boxes (top, left, height, width) to erase; height 0 for the images left whole."""
    generator = epoch_generator(seed, epoch, 100_003)
    chosen = torch.rand(count, generator=generator) < probability
    sides = torch.randint(*ERASE_SIDES, (count, 2), generator=generator)
    # Inside MNIST's 20x20 digit box (from 4 to 24), where the strokes are: a box on the background erases nothing.
    corners = 4 + (torch.rand((count, 2), generator=generator) * (21 - sides)).long()
    return torch.cat([corners, sides * chosen[:, None]], dim=1)


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """The one seed formula of everything drawn per epoch: (seed, epoch) and a stream per kind of draw
    (0 = the batch order, mnist.batches; the augmentations' own numbers), so a resumed run draws the same."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + stream)


def random_shifts(count: int, max_shift: int, seed: int, epoch: int) -> torch.Tensor:
    """(count, 2) integer (dy, dx) in [-max_shift, max_shift], fixed by (seed, epoch) so a resumed run draws the same."""
    return torch.randint(-max_shift, max_shift + 1, (count, 2), generator=epoch_generator(seed, epoch, 500_009))


def random_affine(count: int, augmentation: Augmentation, seed: int, epoch: int) -> torch.Tensor:
    """(count, 2, 3) sampling matrices for `affine_grid`: each image's rotation, zoom and shift.

    The matrix maps an output pixel to where it reads in the input, in [-1, 1] coordinates:
    a digit zoomed by s and turned by a reads at R(-a)/s, and a shift (dy, dx) reads at -shift.
    """
    uniform = torch.rand((count, 2), generator=epoch_generator(seed, epoch, 700_001)) * 2 - 1
    angle = uniform[:, 0] * math.radians(augmentation.rotate)
    zoom = 1 + uniform[:, 1] * augmentation.scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, sin, torch.zeros(count)], 1),
                         torch.stack([-sin, cos, torch.zeros(count)], 1)], 1)
    if augmentation.shear or augmentation.stretch:  # drawn from their own stream: the draws above stay as they were
        more = torch.rand((count, 2), generator=epoch_generator(seed, epoch, 800_011)) * 2 - 1
        slant = torch.tan(more[:, 0] * math.radians(augmentation.shear))
        widen = 1 + more[:, 1] * augmentation.stretch
        # Output x reads input x / widen + slant * y: a slanted, wider or narrower digit.
        shape = torch.zeros((count, 2, 2))
        shape[:, 0, 0], shape[:, 0, 1], shape[:, 1, 1] = 1 / widen, slant, 1
        theta[:, :, :2] = theta[:, :, :2] @ shape
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


def affine_images(pixels: torch.Tensor, theta: torch.Tensor, field: torch.Tensor | None = None) -> torch.Tensor:
    """Resample float (B, 1, H, W) pixels in [0, 1] through each image's matrix and, given, its coarse elastic
    field; outside the frame is background (0)."""
    grid = F.affine_grid(theta.to(pixels.device, pixels.dtype), list(pixels.shape), align_corners=False)
    if field is not None:
        smooth = F.interpolate(field.to(pixels.dtype), size=pixels.shape[-2:], mode="bicubic", align_corners=True)
        grid = grid + smooth.permute(0, 2, 3, 1)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def change_thickness(pixels: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Blend each image towards its 3x3 dilation (amount > 0: thicker strokes) or erosion (< 0: thinner, at half
    the strength)."""
    thicker = F.max_pool2d(pixels, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-pixels, 3, stride=1, padding=1)
    amount = amount.to(pixels.dtype)[:, None, None, None]
    # Thinning goes half as far: an erosion takes a pixel off each side of strokes about 2.7 px wide,
    # so a full one would wipe out the thin digits rather than thin them.
    return pixels + amount.clamp(min=0) * (thicker - pixels) + (-amount).clamp(min=0) / 2 * (thinner - pixels)


def erase_boxes(pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Set each image's box (top, left, height, width) to background; a box of height 0 erases nothing."""
    rows = torch.arange(pixels.shape[-2], device=pixels.device)
    cols = torch.arange(pixels.shape[-1], device=pixels.device)
    top, left, height, width = (boxes[:, i, None] for i in range(4))
    inside_rows = (rows >= top) & (rows < top + height)
    inside_cols = (cols >= left) & (cols < left + width)
    mask = inside_rows[:, :, None] & inside_cols[:, None, :]
    return pixels.masked_fill(mask[:, None], 0.0)
