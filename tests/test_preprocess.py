"""Making any input look like MNIST: each step on constructed cases, measured against MNIST itself."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from mnist.data import MnistData
from mnist.errors import UserError
from mnist.reading.predict import Predictor, load_image
from mnist.reading.preprocess import (MNIST_CENTER, MNIST_SKEW_RANGE, MNIST_STROKE_RANGE, MNIST_STROKE_WIDTH, MNIST_WHITE_SHARE, Steps, digit_stroke_width,
                              mnist_statistics, normalize_stroke, preprocess, preprocess_stages, skew_of)


def page(size: tuple[int, int] = (400, 400)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", size, 235)
    return image, ImageDraw.Draw(image)


def ring_image(pen: int) -> Image.Image:
    image, draw = page()
    draw.ellipse([80, 30, 320, 370], outline=20, width=pen)
    return image


# Not square: a square page with its digit framed as MNIST's is a digit field, read whole (digit_field); the
# steps are for photos and pages.
PHOTO_PAGE = (480, 400)


def slanted_one(degrees: float) -> Image.Image:
    image, draw = page(PHOTO_PAGE)
    lean = math.tan(math.radians(degrees)) * 140
    draw.line([(200 - lean, 340), (200 + lean, 60)], fill=20, width=22)
    return image


def test_the_targets_are_mnists_own_figures(mnist_data: MnistData) -> None:
    measured = mnist_statistics(mnist_data.train_images[:5000])  # a sample: the tails within 0.2 px
    assert measured["stroke_width_median"] == pytest.approx(MNIST_STROKE_WIDTH, abs=0.1)
    assert measured["stroke_width_p2_p98"] == pytest.approx(MNIST_STROKE_RANGE, abs=0.25)
    assert measured["white_share_median"] == pytest.approx(MNIST_WHITE_SHARE, abs=0.03)
    assert measured["skew_p10_p90"] == pytest.approx(MNIST_SKEW_RANGE, abs=0.05)
    assert measured["box_side_median"] == 20  # the 20 px box MNIST fits its digits into
    assert measured["center_of_mass_mean"] == pytest.approx([MNIST_CENTER, MNIST_CENTER], abs=0.1)


def test_digits_land_where_mnists_centre_of_mass_lies(mnist_data: MnistData) -> None:
    """MNIST test digits photographed as dark ink on paper, off centre, come back centred as MNIST centres."""
    centers, grid_middle = [], []
    for index, digit in enumerate(mnist_data.test_images[:40]):
        paper = Image.new("L", (200, 160), 235)
        ink = Image.fromarray(255 - digit).resize((112, 112), Image.BILINEAR)
        paper.paste(ink, (index % 80, index % 40))
        centers.append(ndimage.center_of_mass(preprocess(paper).astype(np.float64)))
        grid_middle.append(ndimage.center_of_mass(preprocess(paper, Steps(center=False)).astype(np.float64)))
    assert np.mean(centers, axis=0) == pytest.approx([MNIST_CENTER, MNIST_CENTER], abs=0.15)
    assert np.mean(grid_middle, axis=0) == pytest.approx([13.5, 13.5], abs=0.15)  # the step turned off


def test_a_thick_stroked_zero_comes_out_at_mnists_stroke_width_and_still_reads_zero(tiny_run: Path) -> None:
    thick = ring_image(pen=95)
    before, after = preprocess(thick, Steps(stroke=False)), preprocess(thick)
    assert digit_stroke_width(before) > MNIST_STROKE_RANGE[1] + 0.5  # the case: far thicker than MNIST's
    assert MNIST_STROKE_RANGE[0] - 0.25 <= digit_stroke_width(after) <= MNIST_STROKE_RANGE[1] + 0.25
    hole = after[12:16, 12:16]  # the loop stays open: its middle is background
    assert hole.max() < 128
    assert Predictor(tiny_run / "best.pt").predict([after]).labels[0] == 0


def test_a_thin_stroke_is_thickened_and_a_usual_one_left_alone() -> None:
    thin, usual = ring_image(pen=3), ring_image(pen=45)
    assert digit_stroke_width(preprocess(thin, Steps(stroke=False))) < MNIST_STROKE_RANGE[0]
    assert digit_stroke_width(preprocess(thin)) >= MNIST_STROKE_RANGE[0] - 0.25
    assert np.array_equal(preprocess(usual), preprocess(usual, Steps(stroke=False)))


def test_a_faint_blurred_blob_thins_to_its_core_line_not_to_nothing() -> None:
    """A blurred photo of a short 1 is all stroke and no length: thinning it to MNIST's width once erased it."""
    blob = Image.new("L", (300, 170), 205)
    ImageDraw.Draw(blob).ellipse([130, 40, 175, 120], fill=160)
    blob = blob.filter(ImageFilter.GaussianBlur(10))
    assert digit_stroke_width(preprocess(blob, Steps(stroke=False))) > MNIST_STROKE_RANGE[1] + 2  # the case
    digit = preprocess(blob)
    assert digit.max() == 255 and (digit > 127).sum() >= 20  # a stroke is left


@pytest.mark.parametrize("degrees", [-30, 35])
def test_a_slanted_one_comes_out_upright_within_5_degrees(degrees: float) -> None:
    slanted = preprocess(slanted_one(degrees), Steps(deskew=False))
    upright = preprocess(slanted_one(degrees))
    assert abs(math.degrees(math.atan(skew_of(slanted.astype(np.float32))))) > 15  # the case
    assert abs(math.degrees(math.atan(skew_of(upright.astype(np.float32))))) <= 5


def test_a_slant_mnist_has_plenty_of_is_left_alone() -> None:
    mild = slanted_one(10)  # leaning a little to the right, as MNIST's writers did
    assert np.array_equal(preprocess(mild), preprocess(mild, Steps(deskew=False)))


def test_a_speck_far_from_the_digit_is_dropped_and_a_separate_stroke_of_the_digit_kept() -> None:
    clean, draw = page()
    draw.line([(150, 80), (150, 200), (260, 200), (250, 330)], fill=20, width=18)  # a 5's body...
    draw.line([(150, 80), (270, 80)], fill=20, width=18)
    speckled = clean.copy()
    ImageDraw.Draw(speckled).ellipse([370, 370, 382, 382], fill=20)  # a speck in the corner
    assert np.abs(preprocess(speckled).astype(int) - preprocess(clean).astype(int)).mean() < 1
    kept = Steps(lines=False, despeckle=False)  # both drop specks: choosing the digit, and despeckle after it
    assert np.abs(preprocess(speckled, kept).astype(int) - preprocess(clean).astype(int)).mean() > 5
    broken, draw = page()  # ...and a 5 whose top bar was drawn apart from it: kept
    draw.line([(150, 90), (150, 200), (260, 200), (250, 330)], fill=20, width=18)
    draw.line([(165, 70), (270, 70)], fill=20, width=18)
    stages = preprocess_stages(broken)
    assert stages.digit[:8].sum() > 0.05 * stages.digit.sum()  # the bar is in the top rows of the 28x28


def test_an_exif_rotated_jpeg_reads_as_its_upright_png(tmp_path: Path, tiny_run: Path) -> None:
    upright, draw = page((300, 400))
    draw.line([(80, 60), (220, 60), (120, 340)], fill=20, width=20)  # a 7
    upright.save(tmp_path / "upright.png")
    # A phone stores the pixels as the sensor saw them (sideways) and says "rotate 90 clockwise" (6).
    sideways = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(tmp_path / "phone.jpg", quality=95, exif=exif)
    _, expected = load_image(tmp_path / "upright.png")
    original, read = load_image(tmp_path / "phone.jpg")
    assert original.size == upright.size
    assert np.abs(read.astype(int) - expected.astype(int)).mean() < 6
    _, ignored = load_image(tmp_path / "phone.jpg", steps=Steps(upright=False))
    assert np.abs(ignored.astype(int) - expected.astype(int)).mean() > 15  # without the step: sideways
    predictor = Predictor(tiny_run / "best.pt")
    assert predictor.predict([read]).labels[0] == predictor.predict([expected]).labels[0]


def test_steps_are_named_and_a_wrong_name_is_refused() -> None:
    assert Steps.parse("all") == Steps() and Steps.parse("-deskew,-stroke") == Steps(deskew=False, stroke=False)
    assert Steps.parse("before") == Steps(upright=False, contrast=False, lines=False, despeckle=False, deskew=False,
                                          stroke=False, center=False)
    with pytest.raises(UserError, match="unknown preprocessing step.*deskw"):
        Steps.parse("-deskw")


def test_the_stages_are_what_the_page_shows() -> None:
    buffer = io.BytesIO()
    slanted_one(0).save(buffer, format="PNG")
    stages = preprocess_stages(Image.open(buffer))
    assert stages.digit.shape == (28, 28) and stages.ink.dtype == np.uint8
    assert stages.ink.max() == 255 and stages.ink[0].max() == 0  # white ink on black, the page's edge blank


def test_the_scans_are_scikit_learns_digits_on_photographed_paper(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from mnist.reading.handwriting import scan_photo, split_names

    digits = load_digits()
    rng = np.random.default_rng(0)
    photo = scan_photo(digits.images[0], rng)
    gray = np.asarray(photo.convert("L"), dtype=np.float32)
    assert photo.format == "JPEG" and min(photo.size) > 60  # upscaled from 8x8, JPEG-compressed
    assert np.median(gray) > 120 and gray.min() < np.median(gray) - 40  # dark ink on a light page
    seen = preprocess(photo)
    assert seen.shape == (28, 28) and seen.max() > 200
    split = split_names(1797, seed=0)
    assert split.sum() in (898, 899) and np.array_equal(split, split_names(1797, seed=0))  # halves, repeatable


def test_a_blurred_faint_stroke_gets_mnists_white_core() -> None:
    image, draw = page(PHOTO_PAGE)
    draw.ellipse([120, 60, 280, 340], outline=150, width=30)  # a pale pencil ring...
    blurred = image.filter(ImageFilter.GaussianBlur(12))  # ...photographed out of focus
    before, after = preprocess(blurred, Steps(contrast=False)), preprocess(blurred)
    white = lambda digit: (digit >= 250).sum() / (digit > 0).sum()  # noqa: E731
    assert white(before) < 0.2 and white(after) == pytest.approx(MNIST_WHITE_SHARE, abs=0.08)
    assert (after >= before).all()  # only brightened: the shape stays


@pytest.mark.parametrize("pen", [39, 40, 44])
def test_a_stroke_thinned_a_little_keeps_its_background_black(pen: int) -> None:
    """A ring whose strokes are just wider than MNIST's widest (thinned by under half a pixel a side): only the
    stroke's own pixels may be ink; its hole and the margin stay 0, not the grey of a rounding."""
    image = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(image).ellipse([30, 10, 170, 190], outline=255, width=pen)
    thinned = normalize_stroke(np.asarray(image, np.float32))
    height, width = thinned.shape
    assert thinned[height // 2, width // 2] == 0 and thinned[height // 2, 1] == 0
    assert (thinned > 0).mean() < 0.6
