"""One epoch's training batches: seeded order, this worker's share, augmentation, model-ready tensors.

In the spirit of airbench: the uint8 dataset sits on the device once; a batch is an index slice
of a per-epoch permutation (no Dataset, no DataLoader). Everything random here is drawn from
(seed, epoch) alone, so a run resumed at any epoch sees exactly the batches it would have.

Data-parallel (a process group of N): every worker walks the same global batches of
`batch_size` and takes its 1/N share of each, so the global batch and the number of steps
per epoch are those of one process.
"""
from __future__ import annotations

from typing import Iterator

import torch

from mnist.augment import (Augmentation, affine_images, change_thickness, draw_epoch, epoch_generator, erase_boxes,
                           shift_images)
from mnist.corrupt import corrupt_batch
from mnist.data import normalize, to_model_input


def shuffle_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation depends on (seed, epoch) alone, so a resumed run shuffles the same."""
    return torch.randperm(count, generator=epoch_generator(seed, epoch, stream=0))


def steps_per_epoch(count: int, batch_size: int) -> int:
    return -(-count // batch_size)


class EpochBatches:
    """Iterable of (inputs, targets) for one epoch; len() is the number of steps."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, epoch: int,
                 augmentation: Augmentation = Augmentation(), rank: int = 0, world: int = 1) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.rank, self.world = rank, world
        self.order = shuffle_order(len(images), seed, epoch).to(images.device)
        self.augmentation = augmentation
        # Drawn per image of the dataset (not per batch), on the host, moved once.
        self.draw = draw_epoch(len(images), augmentation, seed, epoch, images.device)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.order), self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start:start + self.batch_size]
            if len(index) < self.world:  # a last global batch too small to give every worker a sample
                return
            index = index[self.rank::self.world]
            yield self.inputs(index), self.labels[index]

    def inputs(self, index: torch.Tensor) -> torch.Tensor:
        """The model's input for the images at `index`, augmented as this epoch drew them."""
        images, draw = self.images[index], self.draw
        if draw.shifts is not None:
            images = shift_images(images, draw.shifts[index], self.augmentation.shift)
        if draw.theta is None and not self.augmentation.ink:
            return to_model_input(images)
        pixels = images.float().div_(255)
        if draw.theta is not None:
            pixels = affine_images(pixels, draw.theta[index], None if draw.field is None else draw.field[index])
        if draw.thickness is not None:
            pixels = change_thickness(pixels, draw.thickness[index])
        if draw.erase is not None:
            pixels = erase_boxes(pixels, draw.erase[index])
        if draw.corruption is not None:
            pixels = corrupt_batch(pixels, draw.corruption[index], draw.corruption_parameters[index])
        return normalize(pixels)
