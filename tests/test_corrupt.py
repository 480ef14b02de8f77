"""Training-time corruptions (mnist.corrupt, the `corrupt` knob) and the corruption sets that measure a reader
(mnist.reading.corruptions): each kind changes the digit and stays an image; the same seed draws the same; the
sets are seeded, halved as the rules say, and made by code of their own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist.augment import Augmentation
from mnist.batches import EpochBatches
from mnist.config import resolve_config
from mnist.corrupt import KINDS, NO_CORRUPTION, PARAMETERS, corrupt_batch, draw_corruptions
from mnist.data import MnistData, device_images, device_labels
from mnist.reading.corruptions import CORRUPTIONS, HELD_OUT, write_corruption_set, write_mnist_png_set
from mnist.reading.handwriting import read_labels


def digits(mnist_data: MnistData, count: int = 16) -> torch.Tensor:
    return device_images(mnist_data.train_images[:count]).float().div(255)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_changes_every_digit_and_stays_an_image(kind: str, mnist_data: MnistData) -> None:
    clean = digits(mnist_data)
    kinds = torch.full((len(clean),), list(KINDS).index(kind))
    parameters = torch.rand((len(clean), PARAMETERS), generator=torch.Generator().manual_seed(3))
    corrupted = corrupt_batch(clean, kinds, parameters)
    assert corrupted.shape == clean.shape and corrupted.dtype == clean.dtype
    assert corrupted.min() >= 0 and corrupted.max() <= 1
    changed = (corrupted - clean).abs().flatten(1).amax(1)
    assert (changed > 0.05).all(), f"{kind} left {(changed <= 0.05).sum()} digits as they were"
    # The same draw, the same images (a resumed run corrupts as the uninterrupted one did).
    assert torch.equal(corrupted, corrupt_batch(clean, kinds, parameters))


def test_clean_images_stay_clean_and_the_share_is_what_the_knob_says(mnist_data: MnistData) -> None:
    kinds, parameters = draw_corruptions(20000, 0.4, torch.Generator().manual_seed(0))
    assert (kinds != NO_CORRUPTION).float().mean().item() == pytest.approx(0.4, abs=0.02)
    assert set(kinds.unique().tolist()) == {NO_CORRUPTION, *range(len(KINDS))}  # every kind is drawn
    clean = digits(mnist_data)
    mixed = kinds[:16].clone()
    mixed[::2] = NO_CORRUPTION
    out = corrupt_batch(clean, mixed, parameters[:16])
    assert torch.equal(out[::2], clean[::2])


def test_the_corrupt_knob_corrupts_training_batches_the_same_way_each_time(mnist_data: MnistData) -> None:
    images, labels = device_images(mnist_data.train_images[:256]), device_labels(mnist_data.train_labels[:256])
    config = resolve_config({"corrupt": 1.0})
    assert Augmentation.from_config(config).corrupt == 1.0
    inputs = lambda augmentation, epoch: next(iter(EpochBatches(images, labels, 64, 0, epoch, augmentation)))[0]  # noqa: E731
    corrupted, clean = inputs(Augmentation(corrupt=1.0), 1), inputs(Augmentation(), 1)
    assert not torch.allclose(corrupted, clean)
    assert torch.equal(corrupted, inputs(Augmentation(corrupt=1.0), 1))  # seeded by (seed, epoch)
    assert not torch.equal(corrupted, inputs(Augmentation(corrupt=1.0), 2))
    with pytest.raises(Exception, match="corrupt must be"):
        resolve_config({"corrupt": 1.5})


def test_a_corruption_set_is_seeded_and_halved_held_out_for_tune_and_test_for_report(tmp_path: Path,
                                                                                     mnist_data: MnistData) -> None:
    write_corruption_set(tmp_path / "a", "noise", mnist_data, per_digit=2)
    write_corruption_set(tmp_path / "b", "noise", mnist_data, per_digit=2)
    for half in ("tune", "report"):
        labels = read_labels(tmp_path / "a" / half / "labels.csv")
        assert sorted(labels.values()) == sorted(list(range(10)) * 2)
        for name in labels:
            assert (tmp_path / "a" / half / name).read_bytes() == (tmp_path / "b" / half / name).read_bytes()
    # Where each half's digits come from, seen on MNIST-png's 28 px files (the same source rule): exact copies.
    write_mnist_png_set(tmp_path / "png", mnist_data, per_digit=4)
    held_out = {image.tobytes() for image in mnist_data.train_images[-HELD_OUT:]}
    tests = {image.tobytes() for image in mnist_data.test_images}
    for half, pool in (("tune", held_out), ("report", tests)):
        files = [tmp_path / "png" / half / name for name in read_labels(tmp_path / "png" / half / "labels.csv")]
        small = [np.asarray(Image.open(file)) for file in files if Image.open(file).size == (28, 28)]
        assert small, "no 28 px file to check"
        for image in small:
            assert image.tobytes() in pool or (255 - image).tobytes() in pool


def test_the_sets_are_not_made_by_the_training_code() -> None:
    import inspect

    import mnist.reading.corruptions as sets_module

    assert "mnist.corrupt" not in {name for name, _ in inspect.getmembers(sets_module, inspect.ismodule)}
    assert "from mnist.corrupt" not in inspect.getsource(sets_module)
    assert len(CORRUPTIONS) >= 15
