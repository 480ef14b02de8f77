"""Finding the digit as a person would (issue #30): page lines, boxes, neighbours, broken strokes, dim light, and
the images that hold no digit or several. Each case is an image made for it; the digit found must be the
digit drawn alone (their 28x28 inks overlap), whatever the model makes of it."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from mnist.reading.notebook import SUPER, draw_strokes, hand_box
from mnist.reading.preprocess import ImageError, Steps, first_line, light_page, preprocess

PAPER, INK = 232, 35


def digit_strokes(kind: str, left: float, top: float, size: float) -> list[list[tuple[float, float]]]:
    """A 7 (a bar and a stem), a 4 (an open cross) or a 0 (a ring), in a box of `size` at (left, top)."""
    if kind == "7":
        unit = [[(0.1, 0.05), (0.9, 0.05), (0.45, 1.0)]]
    elif kind == "4":
        unit = [[(0.6, 0.0), (0.1, 0.65), (0.9, 0.65)], [(0.65, 0.3), (0.65, 1.0)]]
    else:
        angles = np.linspace(0, 2 * np.pi, 40)
        unit = [[(0.5 + 0.3 * np.sin(a), 0.5 - 0.47 * np.cos(a)) for a in angles]]
    return [[(left + x * size, top + y * size) for x, y in stroke] for stroke in unit]


def photo(strokes: list, size: tuple[int, int] = (360, 300), pen: int = 6, paper: float = PAPER, ink: float = INK,
          rules: float | None = None, tilt: float = 0.0, skips: float = 0.0, seed: int = 0,
          rule_grey: float = 70, squared: bool = False) -> Image.Image:
    """Strokes written on paper (rules every `rules` px, of `rule_grey`, leaning by `tilt` degrees), as a gray photo:
    the rules as dark as the ink, as a dim photo of blue rules or a page ruled in pencil shows them."""
    rng = np.random.default_rng(seed)
    width, height = size
    mask = Image.new("L", (width * SUPER, height * SUPER), 0)
    draw_strokes(ImageDraw.Draw(mask), strokes, pen, skips, rng)
    darkness = np.asarray(mask.resize(size, Image.LANCZOS), np.float32) / 255
    pixels = np.full((height, width), paper, np.float32)
    if rules:
        lines = Image.new("L", size, 0)
        lean = np.tan(np.radians(tilt)) * width
        for y in np.arange(rules / 2, height + abs(lean), rules):
            ImageDraw.Draw(lines).line([(0, y), (width, y - lean)], fill=255, width=2)
        for x in np.arange(rules / 2, width, rules) if squared else []:
            ImageDraw.Draw(lines).line([(x, 0), (x, height)], fill=255, width=2)
        pixels -= np.asarray(lines, np.float32) / 255 * (paper - rule_grey)
    pixels = pixels * (1 - darkness) + ink * darkness
    noise = rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """How much two 28x28 digits' inks lie on each other, a pixel's difference in stroke width or place allowed:
    the smaller of the shares of each one's ink within a pixel of the other's."""
    a, b = first > 60, second > 60
    near_a, near_b = ndimage.binary_dilation(a), ndimage.binary_dilation(b)
    return float(min((a & near_b).sum() / max(a.sum(), 1), (b & near_a).sum() / max(b.sum(), 1)))


ALONE = {kind: preprocess(photo(digit_strokes(kind, 130, 70, 150))) for kind in ("7", "4", "0")}


@pytest.mark.parametrize("kind", ["7", "4", "0"])
@pytest.mark.parametrize("tilt", [0.0, 4.0])
def test_ruled_paper_lines_are_taken_out(kind: str, tilt: float) -> None:
    ruled = photo(digit_strokes(kind, 130, 70, 150), rules=34, tilt=tilt)
    assert overlap(preprocess(ruled), ALONE[kind]) >= 0.8


@pytest.mark.parametrize("kind", ["7", "4", "0"])
def test_squared_paper_lines_are_taken_out(kind: str) -> None:
    squared = photo(digit_strokes(kind, 130, 70, 150), rules=30, squared=True)
    assert overlap(preprocess(squared), ALONE[kind]) >= 0.8


@pytest.mark.parametrize("kind", ["7", "0"])
@pytest.mark.parametrize("closed", [True, False])
def test_a_box_drawn_around_the_digit_is_taken_out(kind: str, closed: bool) -> None:
    rng = np.random.default_rng(1)
    box = hand_box(95, 40, 290, 250, rng)
    if not closed:  # a gap at a corner, as a quick hand leaves
        box = [stroke[:-3] for stroke in box]
    boxed = photo(digit_strokes(kind, 130, 70, 150) + box)
    assert overlap(preprocess(boxed), ALONE[kind]) >= 0.7
    assert overlap(preprocess(boxed, Steps(lines=False)), ALONE[kind]) < 0.5


@pytest.mark.parametrize("kind", ["7", "4", "0"])
def test_a_box_touching_the_digit_is_taken_out(kind: str) -> None:
    """A box drawn tight around the digit, touching it: one piece of ink with it."""
    box = hand_box(128, 66, 283, 224, np.random.default_rng(2))
    boxed = photo(digit_strokes(kind, 130, 70, 150) + box)
    assert overlap(preprocess(boxed), ALONE[kind]) >= 0.7
    assert overlap(preprocess(boxed, Steps(lines=False)), ALONE[kind]) < 0.5


def test_a_side_with_a_digits_bar_running_along_most_of_it_is_still_a_side() -> None:
    """A box 45 px tall whose 3-px top side has a 5's bar against it along 60% of its length: runs of 12 px there,
    past a side's thinness (15% of the box), yet the side is found by its own thickness, and only twice that is
    taken where the bar runs along it."""
    view = np.zeros((45, 30), bool)
    view[:3, :] = True  # the side
    view[3:12, 6:24] = True  # the bar against it: 60% of the columns
    view[20:40, 10:13] = True  # more of the digit, inside
    side = first_line(view, 0.75)
    assert side is not None and side[:3].all()
    assert side[:, 6:24].sum(axis=0).max() <= 6 and not side[20:].any()


@pytest.mark.parametrize("width", [18, 40])
def test_a_thick_digit_is_not_taken_for_a_box(width: int) -> None:
    """A 1 drawn as a thick bar, a blocky 0: their outlines meet every edge of their box, as a box's do."""
    bar = photo([[(180, 60), (180, 240)]], pen=width)
    assert overlap(preprocess(bar), preprocess(bar, Steps(lines=False))) >= 0.9
    ring = photo([[(120, 60), (240, 60), (240, 240), (120, 240), (120, 60)]], pen=width)
    assert overlap(preprocess(ring), preprocess(ring, Steps(lines=False))) >= 0.9


def test_a_line_under_the_digit_is_taken_out_and_a_base_is_kept() -> None:
    """An underline just under the digit reaches past it on both sides; a 2's base, as wide, is the digit's own stroke."""
    underlined = photo(digit_strokes("7", 130, 70, 150) + [[(105, 228), (305, 230)]])
    assert overlap(preprocess(underlined), ALONE["7"]) >= 0.75
    assert overlap(preprocess(underlined, Steps(lines=False)), ALONE["7"]) < 0.6
    two = photo([[(150, 80), (260, 80), (150, 220), (265, 220)]])  # a Z-shaped 2
    assert overlap(preprocess(two), preprocess(two, Steps(lines=False))) >= 0.9
    two = photo([[(170, 80), (240, 80), (240, 150), (180, 220), (110, 220)], [(180, 220), (300, 220)]])
    assert overlap(preprocess(two), preprocess(two, Steps(lines=False))) >= 0.9


def test_a_line_under_a_digit_as_wide_as_itself_is_taken_out() -> None:
    """Under a 7 whose bar is as wide as the line: it does not reach past the 7, but lies wholly below it."""
    underlined = photo(digit_strokes("7", 130, 70, 150) + [[(145, 238), (265, 240)]])
    assert overlap(preprocess(underlined), ALONE["7"]) >= 0.75
    assert overlap(preprocess(underlined, Steps(lines=False)), ALONE["7"]) < 0.6


def test_the_edge_of_a_neighbouring_digit_is_not_the_digit() -> None:
    neighbour = digit_strokes("0", 300, 60, 170)  # mostly beyond the right edge: its left arc shows
    seen = photo(digit_strokes("7", 100, 70, 150) + neighbour)
    alone = preprocess(photo(digit_strokes("7", 100, 70, 150)))
    assert overlap(preprocess(seen), alone) >= 0.8


def test_a_stroke_broken_by_a_dry_ballpoint_is_kept_whole() -> None:
    strokes = digit_strokes("4", 130, 70, 150)
    broken = preprocess(photo(strokes, pen=4, skips=0.15, seed=3))
    assert overlap(broken, preprocess(photo(strokes, pen=4))) >= 0.6


NINE = [[(0.5 + 0.3 * np.sin(a), 0.3 - 0.28 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 30)],
        [(0.8, 0.3), (0.78, 1.0)]]
SEVEN = [[(0.1, 0.05), (0.9, 0.05)], [(0.9, 0.05), (0.45, 1.0)]]


@pytest.mark.parametrize("strokes", [NINE, SEVEN], ids=["9 stem", "7 bar"])
def test_a_part_of_the_digit_broken_off_by_a_wide_gap_is_joined(strokes: list) -> None:
    """A skip wider than the pieces' joining (2% of the image): the part beside the piece chosen is the digit's."""
    def placed(gap: float) -> list:
        second = [[(x, y + gap) for x, y in strokes[1]]]  # the second stroke moved down, away from the first
        return [[(130 + x * 150, 70 + y * 150) for x, y in stroke] for stroke in strokes[:1] + second]
    whole, broken = preprocess(photo(placed(0.0))), preprocess(photo(placed(0.16)))
    assert overlap(broken, whole) >= 0.6
    assert overlap(broken, preprocess(photo(placed(0.16)[:1]))) < 0.6  # not the first stroke alone


@pytest.mark.parametrize("paper, ink", [(126, 40), (110, 30), (232, 35)])
def test_the_page_is_told_from_the_ink_by_the_image_not_a_fixed_grey(paper: float, ink: float) -> None:
    dim = photo(digit_strokes("7", 130, 70, 150), paper=paper, ink=ink)
    assert light_page(np.asarray(dim))
    assert overlap(preprocess(dim), ALONE["7"]) >= 0.75
    drawing = photo(digit_strokes("7", 130, 70, 150), paper=0, ink=255)  # white ink on black, as the canvas sends
    assert not light_page(np.asarray(drawing))


@pytest.mark.parametrize("lit, shade", [(1.0, 0.35), (0.6, 0.6)])
def test_light_falling_across_the_page_is_not_the_ink(lit: float, shade: float) -> None:
    """Light from one side, a shadow over a corner, the whole page dim: the page's grey changes across the
    photo by more than the ink differs from it, and the ink is still what stands out from the page around it."""
    height, width = 300, 360
    light = np.linspace(lit, lit * (1 - shade), width)[None, :] * np.ones((height, 1))
    corner = np.hypot(*np.meshgrid(np.arange(width) - width, np.arange(height) - height)) < 150
    light = np.where(corner, light * (1 - shade), light)
    page = np.asarray(photo(digit_strokes("7", 100, 70, 150)), np.float32)
    seen = Image.fromarray(np.clip(page * light, 0, 255).astype(np.uint8))
    assert light_page(np.asarray(seen))
    assert overlap(preprocess(seen), preprocess(photo(digit_strokes("7", 100, 70, 150)))) >= 0.75
    flat_light = Image.fromarray(np.clip(np.asarray(photo(digit_strokes("7", 100, 70, 150), paper=0, ink=255),
                                                    np.float32) * light, 0, 255).astype(np.uint8))
    assert not light_page(np.asarray(flat_light))  # white ink on a dark page, lit the same way


def test_two_digits_side_by_side_are_said_to_be_two() -> None:
    pair = photo(digit_strokes("7", 20, 70, 150) + digit_strokes("4", 200, 70, 150), size=(380, 300))
    with pytest.raises(ImageError, match="more than one digit"):
        preprocess(pair)


@pytest.mark.parametrize("squared", [False, True])
def test_a_page_without_a_digit_says_so(squared: bool) -> None:
    with pytest.raises(ImageError, match="no digit found"):
        preprocess(photo([], rules=34, squared=squared))


# ---------------------------------------------------------------- issue #41: a rule never removes the digit

@pytest.mark.parametrize("size", [28, 40, 56, 100, 112, 280])
@pytest.mark.parametrize("resample", [Image.NEAREST, Image.BOX])
def test_mnists_own_digits_saved_as_png_of_any_size_read_as_the_tensors(size: int, resample: int,
                                                                     mnist_data) -> None:
    """MNIST's test digits saved larger, white on black or black on white, come back as the very tensors: the
    image is a digit field, read whole (nothing taken out, nothing redrawn, never refused)."""
    for index in range(0, 400, 7):
        digit = mnist_data.test_images[index]
        for pixels in (digit, 255 - digit):
            saved = Image.fromarray(pixels).resize((size, size), resample)
            assert np.array_equal(preprocess(saved), digit), (index, size)


def test_a_small_field_with_noise_bars_and_lines_is_read_whole_never_cut(mnist_data) -> None:
    """A 28 px digit with salt-and-pepper noise, white bars at its sides or a line through it: the field as it
    is, for the model (trained on such fields) to read; the digit's ink all there."""
    rng = np.random.default_rng(0)
    digit = mnist_data.test_images[1].astype(np.float32)
    noisy = np.where(rng.random(digit.shape) < 0.1, 255, digit)
    barred = digit.copy()
    barred[:, :4] = barred[:, -4:] = 255
    lined = digit.copy()
    lined[14, :] = 200
    for field in (noisy, barred, lined):
        read = preprocess(Image.fromarray(field.astype(np.uint8)))
        assert np.array_equal(read, field.astype(np.uint8))
        assert (read[digit > 0] > 0).all()  # every pixel of the digit's ink kept


@pytest.mark.parametrize("width, height, pen", [(50, 200, 4), (64, 256, 5), (30, 120, 3), (100, 400, 24)])
def test_a_tightly_cropped_photo_of_a_one_is_read_not_refused(width: int, height: int, pen: int) -> None:
    """A 1 cropped to its stroke runs along the whole image, as a printed rule does (thin pens were refused as
    "no digit found"); one stroke alone is written, not printed: kept whole (a tall stroke in the middle)."""
    image = Image.new("L", (width, height), PAPER)
    ImageDraw.Draw(image).line([(width // 2 + 2, 0), (width // 2 - 2, height)], fill=INK, width=pen)
    noise = np.random.default_rng(1).normal(0, 6, (height, width))
    digit = preprocess(Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8)))
    rows, columns = np.nonzero(digit > 127)
    assert np.ptp(rows) + 1 >= 18 and np.ptp(columns) + 1 <= 8  # a 1: as tall as MNIST's digits, narrow
