"""Synthetic training digits (mnist.strokes, the `synthetic` knob): drawn as MNIST's are laid out, seeded, readable."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mnist.data import MnistData, device_images
from mnist.strokes import TRAINING_STYLES, synthetic_digits, with_synthetic_digits
from mnist.model import CCNet, predict_logits
from mnist.train import train


def test_synthetic_digits_are_balanced_and_laid_out_as_mnists() -> None:
    images, labels = synthetic_digits(200, seed=0)
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    for image in images:
        rows, columns = np.nonzero(image > 0)
        assert np.ptp(rows) <= 21 and np.ptp(columns) <= 21  # inside MNIST's 20x20 box (and the anti-aliased rim)
        centre = ndimage.center_of_mass(image.astype(float))
        assert np.allclose(centre, 14, atol=1.0)  # centred by mass, to the whole pixel
        assert image.max() >= 250  # full ink, not a grey smear


def test_the_same_seed_draws_the_same_digits_and_another_seed_others() -> None:
    first, labels = synthetic_digits(50, seed=4)
    again, labels_again = synthetic_digits(50, seed=4)
    other, _ = synthetic_digits(50, seed=5)
    assert np.array_equal(first, again) and np.array_equal(labels, labels_again)
    assert not np.array_equal(first, other)


def test_each_style_varies_its_shape() -> None:
    """A style draws its sizes and curls from ranges: two draws of one digit are two shapes, not one path."""
    rng = np.random.default_rng(0)
    for digit, style in TRAINING_STYLES.items():
        shapes = {tuple(np.round(np.concatenate([np.ravel(s) for s in style(rng)]), 2)) for _ in range(5)}
        assert len(shapes) == 5, digit


def test_with_synthetic_digits_appends_a_share_and_zero_changes_nothing() -> None:
    images = np.zeros((100, 28, 28), dtype=np.uint8)
    labels = np.full(100, 3, dtype=np.int64)
    same_images, same_labels = with_synthetic_digits(images, labels, 0.0, seed=0)
    assert same_images is images and same_labels is labels
    more_images, more_labels = with_synthetic_digits(images, labels, 0.25, seed=0)
    assert more_images.shape == (125, 28, 28) and more_labels.dtype == labels.dtype
    assert np.array_equal(more_images[:100], images) and np.array_equal(more_labels[:100], labels)
    assert more_images[100:].any() and set(more_labels[100:]) == set(range(10))


@pytest.mark.slow
def test_a_model_trained_on_mnist_alone_reads_most_synthetic_digits(mnist_data: MnistData) -> None:
    """The drawn digits are digits in MNIST's layout: a net that never saw one reads most of them (a digit drawn
    off centre, transposed or upside down would fall to chance). Not all: some are the styles MNIST lacks."""
    trained = {}
    train({"limit": 6000, "epochs": 2, "batch_size": 64, "lr": 2e-3, "threads": 1, "device": "cpu", "seed": 0},
          data=mnist_data, on_epoch=lambda metrics, state: trained.update(state))
    model = CCNet()
    model.load_state_dict(trained["model"])
    images, labels = synthetic_digits(500, seed=1)
    read = predict_logits(model.eval(), device_images(images), batch_size=250).argmax(1).numpy()
    assert (read == labels).mean() > 0.7


@pytest.mark.parametrize("share, expected", [(0.0, 1000), (0.5, 1500)])
def test_the_trainable_trains_on_the_added_digits(mnist_data: MnistData, share: float, expected: int) -> None:
    """1,250 images, the last 250 validation: 1,000 to train on, and `share` x 1,000 drawn ones beside them."""
    seen = {}
    train({"limit": 1250, "epochs": 1, "batch_size": 250, "lr": 1e-3, "threads": 1, "device": "cpu", "synthetic": share},
          data=mnist_data, on_epoch=lambda metrics, state: seen.update(state))
    assert seen["optimizer"]["state"][0]["step"].item() == expected / 250  # one optimizer step per batch
    assert seen["config"]["synthetic"] == share  # in the checkpoint: the run is reproduced from it
