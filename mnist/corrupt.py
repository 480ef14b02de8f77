"""Corruptions of training digits: what a reader meets in images no one here made, drawn on the device, batched.

Robustness comes from training data, not from rules: a model that has seen noisy, blurred, foggy, ruled,
scribbled, framed and hollow digits reads them; a preprocessing rule that tries to undo each one guesses, and a
wrong guess removes the digit. The `corrupt` knob (mnist.config) turns a share of each epoch's training images
into one of the `KINDS` below, each drawn with its own strength; the rest stay clean, so that clean digits are
still read as well as before.

Every image's kind and its strengths are drawn for the whole epoch from (seed, epoch) alone
(`draw_corruptions`), like the other augmentations; the per-pixel noise of a batch comes from a generator seeded
by the batch's own draw, so a resumed run corrupts exactly as the uninterrupted one did.

The pixels are MNIST's: (B, 1, 28, 28) floats in [0, 1], white ink on black. The sets that measure a reader on
corruptions (mnist.reading.corruptions) are made by other code (Pillow's drawing and filters) with other
strengths, so that they test what was learnt rather than the training code itself.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

PARAMETERS = 16  # uniform numbers drawn per image; each kind reads the ones it needs
SIDE = 28


def _grid(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre rows and columns, (1, 28, 28) each."""
    coordinates = torch.arange(SIDE, device=device, dtype=torch.float32)
    return coordinates[None, :, None].expand(1, SIDE, SIDE), coordinates[None, None, :].expand(1, SIDE, SIDE)


def segment_ink(start: torch.Tensor, end: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Anti-aliased segments from `start` to `end` ((B, 2) row, column) of `width` px: (B, 28, 28) in [0, 1]."""
    rows, columns = _grid(start.device)
    direction = end - start
    length2 = (direction ** 2).sum(1).clamp(min=1e-6)[:, None, None]
    t = ((rows - start[:, 0, None, None]) * direction[:, 0, None, None]
         + (columns - start[:, 1, None, None]) * direction[:, 1, None, None]) / length2
    t = t.clamp(0, 1)
    distance = torch.hypot(rows - start[:, 0, None, None] - t * direction[:, 0, None, None],
                           columns - start[:, 1, None, None] - t * direction[:, 1, None, None])
    return (width[:, None, None] / 2 + 0.5 - distance).clamp(0, 1)


def line_through(u: torch.Tensor, near_centre: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ends of a long straight line at a random angle: through the digit's region (near_centre) or
    anywhere; (B, 2) each, reaching beyond the frame."""
    angle = u[:, 0] * math.pi
    spread = 8.0 if near_centre else 13.0
    offset = (u[:, 1] * 2 - 1) * spread
    centre = torch.stack([14 + offset * torch.cos(angle), 14 - offset * torch.sin(angle)], 1)
    along = torch.stack([torch.sin(angle), torch.cos(angle)], 1) * 30
    return centre - along, centre + along


def blend_ink(pixels: torch.Tensor, ink: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Marks of brightness `level` (B,) drawn over the image where `ink` (B, 28, 28) says."""
    return torch.maximum(pixels, (ink * level[:, None, None])[:, None])


def per_image_blur(pixels: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with each image's own sigma (B,): one grouped, separable convolution."""
    radius = 4
    offsets = torch.arange(-radius, radius + 1, device=pixels.device, dtype=pixels.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None].clamp(min=0.1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    batch = len(pixels)
    flat = pixels.reshape(1, batch, SIDE, SIDE)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=batch)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=batch)
    return flat.reshape(batch, 1, SIDE, SIDE)


def resample(pixels: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None) -> torch.Tensor:
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def translation(batch: int, dy: torch.Tensor, dx: torch.Tensor, device: torch.device) -> torch.Tensor:
    theta = torch.zeros((batch, 2, 3), device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / SIDE, -2 * dy / SIDE
    return theta


def smooth_field(u: torch.Tensor, generator: torch.Generator, cells: int) -> torch.Tensor:
    """A smooth random field in [0, 1], (B, 1, 28, 28): uniform values on a coarse grid, bicubically enlarged."""
    coarse = torch.rand((len(u), 1, cells, cells), generator=generator, device=u.device)
    field = F.interpolate(coarse, size=(SIDE, SIDE), mode="bicubic", align_corners=True)
    low = field.amin((2, 3), keepdim=True)
    return (field - low) / (field.amax((2, 3), keepdim=True) - low).clamp(min=1e-6)


# ---------------------------------------------------------------- the kinds; u: (B, PARAMETERS) uniform in [0, 1)

def gaussian_noise(x, u, g):  # sensor noise
    return x + torch.randn(x.shape, generator=g, device=x.device) * (0.08 + 0.42 * u[:, :1, None, None])


def shot_noise(x, u, g):  # photon noise: the fewer photons, the noisier
    photons = (2 + 25 * u[:, :1, None, None])
    return torch.poisson(x * photons + 0.3 * u[:, 1:2, None, None], generator=g) / photons


def salt_and_pepper(x, u, g):
    share = 0.02 + 0.28 * u[:, :1, None, None]
    draw = torch.rand(x.shape, generator=g, device=x.device)
    salted = torch.where(draw < share / 2, torch.ones_like(x), x)
    return torch.where((draw >= share / 2) & (draw < share), torch.zeros_like(x), salted)


def motion_blur(x, u, g):
    angle, length = u[:, 0] * math.pi, 2 + 6 * u[:, 1]
    taps = 7
    total = torch.zeros_like(x)
    for tap in range(taps):
        step = (tap / (taps - 1) - 0.5) * length
        total += resample(x, translation(len(x), step * torch.sin(angle), step * torch.cos(angle), x.device))
    return total / taps


def defocus_blur(x, u, g):
    return per_image_blur(x, 0.6 + 1.4 * u[:, 0])


def glass_blur(x, u, g):  # frosted glass: every pixel read from a little way off, then softened
    jitter = torch.rand((len(x), SIDE, SIDE, 2), generator=g, device=x.device) * 2 - 1
    jitter = jitter * (0.6 + 1.0 * u[:, :1, None, None])
    eye = torch.eye(2, 3, device=x.device).expand(len(x), 2, 3)
    return per_image_blur(resample(x, eye, jitter * 2 / SIDE), 0.4 + 0.5 * u[:, 1])


def low_contrast(x, u, g):
    contrast = 0.12 + 0.5 * u[:, :1, None, None]
    return x * contrast + (1 - contrast) * 0.8 * u[:, 1:2, None, None]


def brightness(x, u, g):
    return x + 0.15 + 0.6 * u[:, :1, None, None]


def fog(x, u, g):
    thickness = 0.3 + 0.9 * u[:, :1, None, None]
    field = smooth_field(u, g, cells=3 + int(4 * float(u[0, 1])))
    foggy = x + thickness * field
    return foggy / foggy.amax((2, 3), keepdim=True).clamp(min=1)


def uneven_light(x, u, g):
    rows, columns = _grid(x.device)
    angle = u[:, 0] * 2 * math.pi
    ramp = ((rows - 14) * torch.sin(angle)[:, None, None] + (columns - 14) * torch.cos(angle)[:, None, None]) / 28 + 0.5
    light = (0.3 + 0.6 * u[:, 1:2, None]) * ramp.clamp(0, 1)
    return x * (1 - 0.5 * light[:, None]) + light[:, None] * 0.8


def border_bars(x, u, g):  # page edges, scanner bars, a neighbour's frame at the image's sides
    rows, columns = _grid(x.device)
    level = (0.5 + 0.5 * u[:, 0])[:, None, None]
    bars = torch.zeros((len(x), SIDE, SIDE), device=x.device)
    always = (u[:, 9] * 4).long()  # one side at least
    for side in range(4):
        present = ((u[:, 1 + side] < 0.45) | (always == side))[:, None, None]
        width = (1 + 5 * u[:, 5 + side])[:, None, None]
        distance = (rows, SIDE - 1 - rows, columns, SIDE - 1 - columns)[side]
        bars = torch.maximum(bars, (present & (distance < width)).float())
    return torch.maximum(x, (bars * level)[:, None])


def page_edge(x, u, g):  # the page ends inside the photo: what lies beyond is a flat other tone
    rows, columns = _grid(x.device)
    angle = u[:, 0] * 2 * math.pi
    reach = 9 + 5 * u[:, 1]  # from the centre; the digit's box reaches 10
    side = (rows - 14) * torch.sin(angle)[:, None, None] + (columns - 14) * torch.cos(angle)[:, None, None]
    beyond = (side - reach[:, None, None]).clamp(0, 1)
    return torch.maximum(x, (beyond * (0.4 + 0.6 * u[:, 2])[:, None, None])[:, None])


def ruled_lines(x, u, g):  # a notebook's rules or a grid, through the digit or beside it
    count = 1 + (u[:, 0] * 3).long()
    level, width = 0.35 + 0.65 * u[:, 1], 0.7 + 1.5 * u[:, 2]
    ink = torch.zeros((len(x), SIDE, SIDE), device=x.device)
    for line in range(3):
        start, end = line_through(u[:, 3 + 2 * line:5 + 2 * line], near_centre=False)
        ink = torch.maximum(ink, segment_ink(start, end, width) * (line < count)[:, None, None])
    return blend_ink(x, ink, level)


def dotted_line(x, u, g):
    start, end = line_through(u[:, :2], near_centre=True)
    ink = segment_ink(start, end, 1 + 1.5 * u[:, 2])
    rows, columns = _grid(x.device)
    period = 2.5 + 3 * u[:, 3]
    along = (rows - start[:, 0, None, None]) * (end - start)[:, 0, None, None] + \
        (columns - start[:, 1, None, None]) * (end - start)[:, 1, None, None]
    along = along / (end - start).norm(dim=1)[:, None, None]
    dots = (torch.cos(2 * math.pi * along / period[:, None, None]) > 0.2 - 0.8 * u[:, 4, None, None]).float()
    return blend_ink(x, ink * dots, 0.5 + 0.5 * u[:, 5])


def scribble(x, u, g):  # a zigzag or a scrawl over the digit
    corners = 3 + (u[:, 0] * 5).long()
    points = 2 + 24 * torch.rand((len(x), 8, 2), generator=g, device=x.device)
    width, level = 0.7 + 1.6 * u[:, 1], 0.45 + 0.55 * u[:, 2]
    ink = torch.zeros((len(x), SIDE, SIDE), device=x.device)
    for corner in range(7):
        ink = torch.maximum(ink, segment_ink(points[:, corner], points[:, corner + 1], width)
                            * (corner + 1 < corners)[:, None, None])
    return blend_ink(x, ink, level)


def stray_marks(x, u, g):  # ink spatter, specks, a pen's touch beside the digit
    rows, columns = _grid(x.device)
    centres = 1 + 26 * torch.rand((len(x), 12, 2), generator=g, device=x.device)
    radius = 0.5 + 1.8 * torch.rand((len(x), 12), generator=g, device=x.device)
    count = 2 + (u[:, 0] * 10).long()
    ink = torch.zeros((len(x), SIDE, SIDE), device=x.device)
    for mark in range(12):
        distance = torch.hypot(rows - centres[:, mark, 0, None, None], columns - centres[:, mark, 1, None, None])
        ink = torch.maximum(ink, (radius[:, mark, None, None] + 0.5 - distance).clamp(0, 1)
                            * (mark < count)[:, None, None])
    return blend_ink(x, ink, 0.5 + 0.5 * u[:, 1])


def outline(x, u, g):  # hollow strokes: only the stroke's edges drawn (an edge detector's output, a bubble font)
    thick = F.max_pool2d(x, 3, stride=1, padding=1) if float(u[0, 0]) < 0.5 else x
    solid = (thick > 0.35 + 0.3 * u[:, 1:2, None, None]).float()
    edge = F.max_pool2d(solid, 3, stride=1, padding=1) - solid
    return edge * (0.6 + 0.4 * u[:, 2:3, None, None])


def thick_pen(x, u, g):
    once = F.max_pool2d(x, 3, stride=1, padding=1)
    twice = F.max_pool2d(once, 3, stride=1, padding=1)
    return torch.where(u[:, :1, None, None] < 0.6, once, twice)


def thin_pen(x, u, g):  # a fine pen: only the stroke's core, its grey rim gone
    core = ((x - (0.4 + 0.4 * u[:, :1, None, None])) * 4).clamp(0, 1)
    return torch.where(core.flatten(1).sum(1)[:, None, None, None] > 10, core, x)


def strong_geometry(x, u, g):  # turned, slanted, small or filling the field, off centre: beyond MNIST's variation
    angle = (u[:, 0] * 2 - 1) * math.radians(35)
    zoom = 0.6 + 0.8 * u[:, 1]  # 12 to 28 px tall: a digit cut from a page fills its image (USPS, optdigits)
    slant = torch.tan((u[:, 2] * 2 - 1) * math.radians(30))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros((len(x), 2, 3), device=x.device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, sin + slant * cos, -sin, cos - slant * sin
    theta[:, 0, 2], theta[:, 1, 2] = (u[:, 3] * 2 - 1) * 0.3, (u[:, 4] * 2 - 1) * 0.3
    return resample(x, theta)


Corruption = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
# The kinds, in a fixed order (a kind's number is its index; append new ones at the end, so that a seed draws what
# it drew before). Each is one way images no one here made differ from MNIST's training digits.
KINDS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "salt_and_pepper": salt_and_pepper,
    "motion_blur": motion_blur, "defocus_blur": defocus_blur, "glass_blur": glass_blur,
    "low_contrast": low_contrast, "brightness": brightness, "fog": fog, "uneven_light": uneven_light,
    "border_bars": border_bars, "page_edge": page_edge, "ruled_lines": ruled_lines, "dotted_line": dotted_line,
    "scribble": scribble, "stray_marks": stray_marks, "outline": outline, "thick_pen": thick_pen,
    "thin_pen": thin_pen, "strong_geometry": strong_geometry,
}
NO_CORRUPTION = -1


def draw_corruptions(count: int, share: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's kind (NO_CORRUPTION for the clean ones, a `share` of them corrupted) and its PARAMETERS
    uniform numbers, from `generator` (the epoch's own stream)."""
    chosen = torch.rand(count, generator=generator) < share
    kinds = torch.randint(0, len(KINDS), (count,), generator=generator)
    parameters = torch.rand((count, PARAMETERS), generator=generator)
    return torch.where(chosen, kinds, torch.full_like(kinds, NO_CORRUPTION)), parameters


def corrupt_batch(pixels: torch.Tensor, kinds: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """The batch ((B, 1, 28, 28) or (B, 28, 28)) with each image corrupted as its kind says, clipped to [0, 1].
    The per-pixel noise is drawn from a generator seeded by the batch's own parameters: the same draw gives the
    same images."""
    if not bool((kinds != NO_CORRUPTION).any()):
        return pixels
    if pixels.dim() == 3:  # (B, 28, 28), as a batch of the dataset comes
        return corrupt_batch(pixels[:, None], kinds, parameters)[:, 0]
    seed = int(parameters[0, -1].item() * 2**31) + int(kinds.sum().item())
    generator = torch.Generator(device=pixels.device).manual_seed(seed)
    out = pixels.clone()
    for number, corruption in enumerate(KINDS.values()):
        chosen = torch.nonzero(kinds == number).flatten()
        if len(chosen):
            out[chosen] = corruption(pixels[chosen], parameters[chosen], generator).clamp(0, 1).to(out.dtype)
    return out
