"""Make any digit image look like an MNIST digit: the one preprocessing of predict, the page and every evaluation.

MNIST's digits are white ink on black, the longer side of the ink fitted into 20 px (aspect
kept), centred by mass in 28x28, drawn with strokes about 2.7 px wide. A person's photo or
drawing differs in paper and light, polarity, specks, slant, size, position and pen width.
Each difference has one step below, each switchable (`Steps`) so its effect can be measured:

    upright      EXIF orientation applied (a phone's JPEG is stored sideways, shown upright)
    light        a light page divided by its own smooth brightness (shadows are not ink)
    lines        printed rules and grid lines and a box drawn around the digit taken out; then the digit
                 chosen as a person would (digit-shaped, near the centre, not cut by the edge), broken
                 strokes joined; "no digit found" and "more than one digit" said as such
    contrast     the ink's gray levels stretched so that as much of it is white as in MNIST (blurred photos)
    despeckle    connected components apart from the digit dropped (specks, marks, grain)
    deskew       a slant MNIST rarely shows removed by image moments (as the MNIST-era papers did)
    stroke       a stroke width MNIST rarely shows eroded or dilated to the nearest one it has
    center       the centre of mass put where MNIST's lies (14.0, 14.0), not at the grid's middle (13.5, 13.5)

An image that is already a digit's field (small, or a square saved with its digit framed as MNIST's: MNIST's own
digits as PNG files, corrupted or not) is read whole: brought to 28x28, inverted if dark-on-light, nothing taken
out and nothing redrawn (`digit_field`); the model, trained on such fields with noise, bars, rules and
scribbles in them (mnist.corrupt), decides what is the digit.

Always on: grayscale, dark-on-light inverted (which side is the ink is read from the image: the pixels that
stand out from the page), the background cut at an Otsu threshold
(the ink keeps its gray levels), crop, fit into 20x20, centre by mass.

The target figures are MNIST's own (`python -m mnist.reading.preprocess` measures them again on
the training images; tests/test_preprocess.py checks the constants against it).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage
from skimage.morphology import skeletonize
from skimage.transform import hough_line, hough_line_peaks

from mnist.atomic import json_text
from mnist.errors import UserError, run_cli

DIGIT_BOX = 20  # MNIST: the digit's longer side is 20 px...
CANVAS = 28  # ...inside a 28x28 image, centred by its centre of mass
# Median stroke width of MNIST's training digits in pixels of the 20 px box (`digit_stroke_width`: ink
# area over skeleton length), and its 2nd and 98th percentiles: a width that 96% of MNIST's digits
# have is left alone; one outside is brought to the nearer end. (Narrower ranges, the 5th-95th or
# 10th-90th, cost 0.5-1 point on the scans' tune half: they redrew strokes the network reads well.)
# Measured on the 60,000 training images by `python -m mnist.reading.preprocess`.
MNIST_STROKE_WIDTH = 2.69
MNIST_STROKE_RANGE = (1.61, 4.73)
# Median share of an MNIST digit's ink (pixels > 0) that is full white (>= 250): 0.37 on the first 10,000
# training images (`python -m mnist.reading.preprocess` measures it again).
MNIST_WHITE_SHARE = 0.37
MIN_SIDE = 8  # smaller images cannot hold a legible digit
WORKING_SIZE = 512  # larger photos are scaled down to this longer side first: a digit needs far fewer
SUPERSAMPLE = 4  # strokes are measured and redrawn at 4x the final 20 px box, then scaled down (soft edges)
SPECK_SHARE = 0.02  # a component under 2% of the digit's ink is a speck, wherever it lies...
NEAR_SHARE = 0.25  # ...and one further than a quarter of the digit's size from it is a mark apart
MAX_SKEW = 1.0
# 10th and 90th percentiles of MNIST's own slant (mu11 / mu02; negative leans right), measured on the
# 60,000 training images (`python -m mnist.reading.preprocess`). Deskewing every digit to 0 instead cost 1.1
# points on the scans' tune half with an augmented model, and removing no slant cost 1.2 with a plain one.
MNIST_SKEW_RANGE = (-0.46, 0.23)
# Where MNIST's digits have their centre of mass: row 14.00 and column 14.01 on average over the 60,000
# training images (`python -m mnist.reading.preprocess`), i.e. between pixels 13 and 14 counted from 0 is not
# where it lies. Centring on 13.5 instead put every digit half a pixel up and left of MNIST's and cost
# 1.1 points on the scans' report half with the quick search's winner (94.0% -> 95.1%).
MNIST_CENTER = 14.0  # shear at most 45 degrees: beyond that the moments read a wide digit, not a slant


class ImageError(UserError):
    """One input image cannot be read as a digit; the other images go on. `refused` says why, for a program
    (predict --json, the page): "unreadable" (not an image, too small, blank), "no digit" or "several digits"."""

    def __init__(self, message: str, refused: str = "unreadable") -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Steps:
    """Which switchable steps run; all on by default. `Steps.before()` = the preprocessing before they existed."""
    upright: bool = True
    light: bool = True
    contrast: bool = True
    lines: bool = True
    despeckle: bool = True
    deskew: bool = True
    stroke: bool = True
    center: bool = True

    @classmethod
    def before(cls) -> "Steps":
        """What mnist.reading.predict did until 2026-12: light flattening only."""
        return cls(upright=False, contrast=False, lines=False, despeckle=False, deskew=False, stroke=False,
                   center=False)

    @classmethod
    def parse(cls, text: str) -> "Steps":
        """'all', 'none', 'before' or a comma list of the steps to turn off prefixed by '-' ("-deskew,-stroke")."""
        if text in ("all", ""):
            return cls()
        if text == "before":
            return cls.before()
        if text == "none":
            return cls(**{field.name: False for field in fields(cls)})
        names = {field.name for field in fields(cls)}
        off = [part.strip().lstrip("-") for part in text.split(",")]
        unknown = sorted(set(off) - names)
        if unknown:
            raise UserError(f"unknown preprocessing step(s) {', '.join(unknown)} (steps: {', '.join(sorted(names))})")
        return replace(cls(), **{name: False for name in off})


@dataclass
class Stages:
    """What the page shows: the image as read (upright), the ink found in it, the 28x28 digit the model sees."""
    original: Image.Image
    ink: np.ndarray  # uint8, white ink on black, at the working size
    digit: np.ndarray  # uint8 (28, 28)


# ---------------------------------------------------------------- light and ink

def otsu_threshold(gray: np.ndarray) -> float:
    """The gray level that best separates two classes of pixels (Otsu, 1979)."""
    histogram = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(histogram * levels) / np.maximum(weight_low, 1)
    mean_high = (np.sum(histogram * levels) - np.cumsum(histogram * levels)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between[:-1]))


def to_grayscale(image: Image.Image) -> np.ndarray:
    """uint8 gray; transparent pixels (drawings saved from paint programs) become white paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def flatten_lighting(gray: np.ndarray) -> np.ndarray:
    """Divide a light page by its own brightness, so shadows and uneven light do not pass for ink."""
    size = max(3, min(gray.shape) // 4) | 1  # wider than a pen stroke, odd for the filter
    # The page's brightness: a grey closing (the brightest pixel nearby, then the darkest of those) takes the
    # strokes, narrower than `size`, out and keeps a shadow's edge where it is (a blur of the brightest pixel
    # nearby moved it by `size`: the band between passed for ink); lightly smoothed. Both filters are separable.
    closed = ndimage.grey_closing(gray, size=(size, size), mode="nearest")
    page = np.asarray(Image.fromarray(closed).filter(ImageFilter.GaussianBlur(size / 4)), dtype=np.float32)
    return np.clip(gray / np.maximum(page, 1) * 255, 0, 255).astype(np.uint8)


INK_CONTRAST = 40  # grey levels between the page and what counts as ink, whichever side it lies on


BACKGROUND_SIDE = 32  # the local background is estimated on the image shrunk to this side: fast, and wider than ink


def local_background(gray: np.ndarray) -> np.ndarray:
    """The page's grey level around each pixel: the median of its neighbourhood (a third of the image wide),
    which ink, a minority of any neighbourhood, does not move; measured small, brought back to full size."""
    scale = min(1.0, BACKGROUND_SIDE / max(gray.shape))
    small_size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    small = np.asarray(Image.fromarray(gray).resize(small_size, Image.BILINEAR))
    background = ndimage.median_filter(small, size=max(3, min(small.shape) // 3) | 1, mode="nearest")
    return np.asarray(Image.fromarray(background).resize((gray.shape[1], gray.shape[0]), Image.BILINEAR),
                      dtype=np.float32)


def light_page(gray: np.ndarray) -> bool:
    """Whether the ink is darker than its page, decided from the image itself: each pixel against its local
    background, so that neither the page's grey level (a dim photo's page is grey 50-130) nor light falling
    across it (a shadow, a lamp to one side) decides. Ink stands out from the page around it; whether more
    pixels stand out darker or brighter tells the ink's side."""
    residual = gray.astype(np.float32) - local_background(gray)
    # A faint image (fog, a dim scan: ink 20-40 levels from its page) stands out by less than INK_CONTRAST.
    contrast = min(INK_CONTRAST, max(4.0, 0.3 * (int(gray.max()) - int(gray.min()))))
    darker = int((residual < -contrast).sum())
    brighter = int((residual > contrast).sum())
    return darker >= brighter


def working_gray(image: Image.Image, steps: Steps) -> tuple[np.ndarray, bool]:
    """Gray, at most WORKING_SIZE, white ink on black (a light page inverted), and whether it is a digit field
    (`digit_field`: then 28x28, read whole); else denoised, its light evened out."""
    gray = to_grayscale(image)
    if min(gray.shape) < MIN_SIDE:
        raise ImageError(f"image too small to hold a digit ({gray.shape[1]}x{gray.shape[0]} px, "
                         f"needs at least {MIN_SIDE}x{MIN_SIDE})")
    if max(gray.shape) > WORKING_SIZE:
        scale = WORKING_SIZE / max(gray.shape)
        size = (max(MIN_SIDE, round(gray.shape[1] * scale)), max(MIN_SIDE, round(gray.shape[0] * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.BILINEAR, reducing_gap=2.0))
    if int(gray.max()) - int(gray.min()) < UNIFORM_RANGE:
        raise ImageError("no ink found (the image is nearly uniform)", "no digit")
    white_on_black = 255 - gray if light_page(gray) else gray
    field = digit_field(white_on_black)
    if field is not None:
        return field, True
    if min(gray.shape) >= 2 * CANVAS:  # sensor noise and paper grain: specks that would widen the crop
        gray = np.asarray(Image.fromarray(gray).filter(ImageFilter.MedianFilter(3)))
    if light_page(gray):  # dark ink on a light page: make the ink the bright part, as in MNIST
        gray = 255 - (flatten_lighting(gray) if steps.light and min(gray.shape) >= 2 * CANVAS else gray)
    if int(gray.max()) - int(gray.min()) < UNIFORM_RANGE:
        raise ImageError("no ink found (the image is nearly uniform)", "no digit")
    return gray, False


UNIFORM_RANGE = 12  # grey levels: less between the darkest and the brightest pixel is no ink (a faint digit has 20+)


# ---------------------------------------------------------------- a digit field, read whole

FIELD_SIDE = 40  # an image this small is a digit's field already (MNIST, EMNIST, MNIST-C: 28 px): nothing to search
FIELD_SQUARE = 0.15  # a larger one is a field when it is square within 15%...
FIELD_FLAT = 0.5  # ...its background flat (half its pixels within FLAT_LEVELS of the commonest: drawn or saved by a
FLAT_LEVELS = 8  # program, not photographed)...
# ...and its digit framed as MNIST's: the longer side 17-21 px of 28 and the centre of mass within 1.5 px of
# (14, 14). MNIST's test digits saved at 56 px measure 18-20 px and at most 0.85 px off (2,000 of them).
FIELD_BOX = (17, 21)
FIELD_CENTRE = 1.5


def field_of(gray: np.ndarray) -> np.ndarray:
    """The image brought to 28x28 by area averaging, as saved from MNIST's own (a whole-pixel upscale comes back
    exactly)."""
    if gray.shape == (CANVAS, CANVAS):
        return gray
    return np.asarray(Image.fromarray(gray).resize((CANVAS, CANVAS), Image.BOX))


def digit_field(gray: np.ndarray) -> np.ndarray | None:
    """`gray` (white ink on black) at 28x28 where it is already a digit's field framed as MNIST's (read whole,
    nothing taken out), else None. A small image always is (there is no page in it to find a digit on, and any rule guessing what is
    ink there can only remove some of the digit: the model, trained on noisy, barred, ruled and scribbled
    fields, decides); a larger one when it is a square, flat-backgrounded field with its digit where MNIST's
    lies (an MNIST digit saved larger). A photo, a page or an off-centre drawing goes through the steps."""
    height, width = gray.shape
    if max(height, width) <= FIELD_SIDE:
        return field_of(gray)
    if abs(height - width) > FIELD_SQUARE * max(height, width):
        return None
    counts = np.bincount(gray.ravel(), minlength=256)
    mode = int(np.argmax(counts))
    if counts[max(0, mode - FLAT_LEVELS):mode + FLAT_LEVELS + 1].sum() < FIELD_FLAT * gray.size:
        return None
    field = field_of(gray)
    ink = ink_of(field)
    rows, columns = np.nonzero(ink)
    if rows.size == 0:
        return None
    side = max(np.ptp(rows), np.ptp(columns)) + 1
    framed = max(abs(c - MNIST_CENTER) for c in ndimage.center_of_mass(ink)) <= FIELD_CENTRE
    return field if FIELD_BOX[0] <= side <= FIELD_BOX[1] and framed else None


def ink_of(gray: np.ndarray) -> np.ndarray:
    """float ink: the gray levels above the Otsu threshold, background 0."""
    threshold = otsu_threshold(gray)
    return np.where(gray > threshold, gray.astype(np.float32) - threshold, 0.0)


# ---------------------------------------------------------------- lines on the page

RULE_SPAN = 0.6  # a straight line with ink along 60% of the image's width (height) is printed, not written
RULE_TILT = 8  # degrees off horizontal (vertical) a rule may lean in a photo taken a little from the side
RULE_HALF_WIDTH = 3  # pixels each side of a found line taken out (printed lines are 1-3 px at the working size)


def remove_rules(ink: np.ndarray) -> np.ndarray:
    """Printed rules and grid lines taken out of the ink: straight lines, a little tilted at most, along most
    of the image (Hough transform of the ink's skeleton). Where a stroke crosses a line the stroke is kept, so a
    7 on a rule keeps its stem."""
    binary = ink > 0
    if not binary.any():
        return ink
    skeleton = skeletonize(binary)
    height, width = binary.shape
    band = np.zeros_like(binary)
    rows, columns = np.indices(binary.shape)
    for angles, span in ((90 - np.arange(-RULE_TILT, RULE_TILT + 1), width), (np.arange(-RULE_TILT, RULE_TILT + 1), height)):
        votes, thetas, distances = hough_line(skeleton, theta=np.deg2rad(angles.astype(float)))
        for _, theta, distance in zip(*hough_line_peaks(votes, thetas, distances, threshold=RULE_SPAN * span,
                                                         min_distance=2 * RULE_HALF_WIDTH + 1, num_peaks=64)):
            band |= np.abs(columns * np.cos(theta) + rows * np.sin(theta) - distance) <= RULE_HALF_WIDTH
    if not band.any():
        return ink
    # Where a stroke crosses a line, the band's pixels next to the stroke's ink on either side stay: the stroke
    # goes on through the line.
    beyond = binary & ~band
    crossing = band & (ndimage.distance_transform_edt(~beyond) <= RULE_HALF_WIDTH + 1)
    return np.where(band & ~crossing, 0.0, ink).astype(np.float32)


FRAME_BAND = 0.2  # a frame's ink lies within 20% of its box's size from the box's edges...
FRAME_BORDER_SHARE = 0.8  # ...80% of it at least (a 5's body, a 2's, have far more inside)


def remove_frames(ink: np.ndarray) -> np.ndarray:
    """A box drawn around the digit taken out, closed or not (a ballpoint skips): a piece of ink lying along
    the edges of its own box, inside which lies most of the other ink, and a good deal of it (a 0 with a speck
    inside is not a frame)."""
    labels, count = digit_pieces(ink)
    if count < 2:
        return ink
    binary = ink > 0
    boxes = ndimage.find_objects(labels)
    mass = ndimage.sum_labels(binary, labels, index=np.arange(1, count + 1))
    cut = [index + 1 for index, box in enumerate(boxes) if touches_edge(box, ink.shape)]  # neighbours' edges
    binary = binary & ~np.isin(labels, cut)
    for index in np.argsort(-mass)[:3]:  # a frame is one of the largest pieces
        top, bottom, left, right = _box(boxes[index])
        piece = labels[top:bottom, left:right] == index + 1
        band_rows, band_columns = max(1, round(FRAME_BAND * (bottom - top))), max(1, round(FRAME_BAND * (right - left)))
        interior = np.zeros_like(piece)
        interior[band_rows:-band_rows, band_columns:-band_columns] = True
        on_border = 1 - (piece & interior).sum() / max(piece.sum(), 1)
        others = binary & (labels != index + 1)
        inside = others[top:bottom, left:right].sum()
        if on_border >= FRAME_BORDER_SHARE and inside >= 0.8 * others.sum() and inside >= 0.15 * mass[index]:
            return np.where(frame_pixels(labels == index + 1, ink), 0.0, ink).astype(np.float32)
    return ink


BOX_ZONE = 0.18  # a side of a box lies within 18% of its box's height (width) of the edge, bowed or tilted...
BOX_COVER = 0.75  # ...and is the first ink seen from that edge along 75% of it at least (a ballpoint skips)...
BOX_THIN = 0.15  # ...and is a line: at most 15% of the box across (a thick 1 or a blocky 0 is seen as sides too)
BOX_INSIDE = 0.15  # the digit inside holds at least 15% as much ink as the box (an empty box is not read)
# A side's thickness: the 25th percentile of its runs of ink, not the median, since where a digit touches its box
# (a 5's bar under the top side) the run goes on into the digit, along up to three quarters of the side.
SIDE_RUN_PERCENTILE = 25


def box_sides(piece: np.ndarray, ink: np.ndarray) -> np.ndarray | None:
    """The pixels of a box drawn around the digit and touching it (one piece with it: remove_frames finds
    only a box apart), or None where `piece` has no four sides. A side is the first ink met coming in from
    an edge of the piece's box, along most of that edge, near it and thin; seen that way a 0, a 7's bar or
    an 8 has two sides at most. What is taken out is the first run of ink met, twice the side's usual
    thickness at most, so a digit touching its box keeps its strokes; with a digit's worth of ink left inside."""
    rows, columns = np.nonzero(piece)
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    box = piece[top:bottom, left:right]
    if min(box.shape) < 8:
        return None
    sides = np.zeros_like(box)
    for turns in range(4):  # each edge seen as the top of a turned view; what it takes turned back
        taken = first_line(np.rot90(box, turns), BOX_COVER)
        if taken is None:
            return None
        sides |= np.rot90(taken, -turns)
    left_inside = (ink[top:bottom, left:right] > 0) & ~sides
    if left_inside.sum() < BOX_INSIDE * sides.sum():
        return None
    mask = np.zeros_like(piece)
    mask[top:bottom, left:right] = sides
    return mask


def first_line(view: np.ndarray, cover: float) -> np.ndarray | None:
    """The side seen from the top of `view`: the first ink met in each column, where it lies within BOX_ZONE of
    the top along `cover` of the columns and is thin (BOX_THIN); its first run, at most twice its usual
    thickness, so a stroke touching it keeps its own pixels. None where there is no such line."""
    has_ink = view.any(axis=0)
    first = np.argmax(view, axis=0)
    near = has_ink & (first < max(2, round(BOX_ZONE * view.shape[0])))
    if near.mean() < cover:
        return None
    runs = np.array([run_length(view[first[column]:, column]) for column in range(view.shape[1])])
    usual = float(np.percentile(runs[near], SIDE_RUN_PERCENTILE))
    if usual > BOX_THIN * view.shape[0]:
        return None
    taken = np.zeros_like(view)
    for column in np.flatnonzero(near):
        taken[first[column]:first[column] + int(min(runs[column], 2 * usual)), column] = True
    return taken


UNDERLINE_COVER = 0.85  # an underline runs along the digit's whole width...
UNDERLINE_BEYOND = 0.12  # ...and beyond the rest of the digit on both sides by 12% of its length (a 2's base does
# not), or wholly below it with a gap (under a digit as wide as itself)


def remove_underline(ink: np.ndarray) -> np.ndarray:
    """A line drawn under the digit taken out: the line the digit's box shows from below (first_line), apart from
    the digit's strokes (joined to them only as a broken stroke is) and reaching past them on both sides, or
    wholly below them (under a 7 as wide as itself); a 2's or a 1's base, drawn on from its stroke, stays."""
    rows, columns = np.nonzero(ink)
    if rows.size == 0:
        return ink
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    box = ink[top:bottom, left:right] > 0
    if min(box.shape) < 8:
        return ink
    line = first_line(np.rot90(box, 2), UNDERLINE_COVER)
    if line is None:
        return ink
    line = np.rot90(line, -2)
    rest = np.flatnonzero((box & ~line).any(axis=0))
    if rest.size == 0:
        return ink
    beyond = UNDERLINE_BEYOND * box.shape[1]
    past_both_sides = rest.min() >= beyond and rest.max() < box.shape[1] - beyond
    pieces, _ = ndimage.label(box, structure=np.ones((3, 3)))
    apart = not np.intersect1d(pieces[line], pieces[box & ~line]).size  # not one stroke with a 2's or a Z-7's base
    if not (apart and (past_both_sides or below_with_a_gap(line, box & ~line))):
        return ink
    cleared = ink.copy()
    cleared[top:bottom, left:right][line] = 0.0
    return cleared


def below_with_a_gap(line: np.ndarray, rest: np.ndarray) -> bool:
    """Whether `line` lies wholly below `rest`, an empty row between them: an underline under a digit as wide as
    itself (a 7's bar, a 3's top), never the base a 2's stroke comes down to (their rows overlap)."""
    line_rows, rest_rows = np.flatnonzero(line.any(axis=1)), np.flatnonzero(rest.any(axis=1))
    return bool(line_rows.size and rest_rows.size and line_rows.min() > rest_rows.max() + 1)


def run_length(column: np.ndarray) -> int:
    """How many pixels of ink a column starts with."""
    gaps = np.flatnonzero(~column)
    return int(gaps[0]) if gaps.size else len(column)


def remove_boxes(ink: np.ndarray) -> np.ndarray:
    """A box touching the digit taken out (see box_sides): looked for in the largest piece of ink."""
    labels, count = digit_pieces(ink)
    if count == 0:
        return ink
    largest = 1 + int(np.argmax(ndimage.sum_labels(ink > 0, labels, index=np.arange(1, count + 1))))
    sides = box_sides(labels == largest, ink)
    return ink if sides is None else np.where(sides, 0.0, ink).astype(np.float32)


def frame_pixels(piece: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """The pixels of a frame-shaped piece that are the frame: those within two line widths of the region it
    encloses (its gaps closed first), so that a digit touching its frame loses only where they meet."""
    thickness = stroke_width(piece & (ink > 0))
    gap = max(1, round(JOIN_GAP * max(ink.shape)))
    closed = ndimage.binary_closing(piece, iterations=2 * gap)
    enclosed = ndimage.binary_fill_holes(closed)
    depth = ndimage.distance_transform_edt(enclosed)
    return piece & (depth <= 2 * thickness + 2 * gap)


# ---------------------------------------------------------------- which piece is the digit

JOIN_GAP = 0.02  # pieces closer than 2% of the image's size are one (a ballpoint's skips, a stroke cut by a rule)
DIGIT_ASPECT = (0.25, 6.0)  # height over width of a digit's box: from a wide 0 or 4 to a thin 1, never an underline
SECOND_DIGIT = 0.5  # a second piece with half the digit's ink, digit-shaped, away from the edge: two digits


def digit_pieces(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the ink's pieces, pieces closer than JOIN_GAP joined (broken strokes, a 5's top bar)."""
    gap = max(1, round(JOIN_GAP * max(ink.shape)))
    joined = ndimage.binary_dilation(ink > 0, iterations=gap)
    labels, count = ndimage.label(joined, structure=np.ones((3, 3)))
    return np.where(ink > 0, labels, 0), count


def choose_digit(ink: np.ndarray) -> np.ndarray:
    """The ink of the digit a person would point at: among the joined pieces, the digit-shaped one (not a line,
    not cut by the image's edge where another lies whole) nearest the centre, weighed by its ink. Refuses in
    one line an image with no digit-shaped piece, or with two digits side by side."""
    labels, count = digit_pieces(ink)
    if count == 0:
        raise ImageError("no digit found (no ink after the page's lines and frames were taken out)", "no digit")
    height, width = ink.shape
    candidates = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is None:
            continue
        top, bottom, left, right = _box(box)
        piece_height, piece_width = bottom - top, right - left
        mass = float((labels[box] == index).sum())
        edge = touches_edge(box, ink.shape)
        shaped = DIGIT_ASPECT[0] <= piece_height / max(piece_width, 1) <= DIGIT_ASPECT[1] and \
            piece_height >= 0.08 * height
        centre = ((top + bottom) / 2 / height - 0.5, (left + right) / 2 / width - 0.5)
        candidates.append({"index": index, "mass": mass, "edge": edge, "shaped": shaped,
                           "score": mass * (1 - min(np.hypot(*centre), 0.7)) * (0.25 if edge else 1.0),
                           "columns": (left, right)})
    digits = [c for c in candidates if c["shaped"]] or candidates
    best = max(digits, key=lambda c: c["score"])
    if not best["shaped"] and best["mass"] < 0.002 * height * width:
        raise ImageError("no digit found (only specks or lines)", "no digit")
    rivals = [c for c in digits if c is not best and c["shaped"] and not c["edge"] and c["mass"] >= SECOND_DIGIT * best["mass"]
              and (c["columns"][0] >= best["columns"][1] or c["columns"][1] <= best["columns"][0])]
    if rivals and best["shaped"] and not best["edge"]:
        raise ImageError(f"more than one digit in the image ({len(rivals) + 1} side by side): crop it to one",
                         "several digits")
    return np.where(np.isin(labels, with_broken_strokes(labels, best["index"])), ink, 0.0).astype(np.float32)


def with_broken_strokes(labels: np.ndarray, chosen: int) -> list[int]:
    """The chosen piece and the pieces of the digit broken off it (a dry ballpoint's skip: a 9's stem apart from its
    loop, a 2's base): within NEAR_SHARE of its size and not specks (as drop_specks keeps them), grown a piece at a
    time so that a stroke broken twice comes back whole. Pieces cut by the image's edge are other digits; pieces
    that run along two sides of it or more together are an open box drawn around it, never joined."""
    keep = [chosen]
    boxes = ndimage.find_objects(labels)
    mass = ndimage.sum_labels(labels > 0, labels, index=np.arange(1, len(boxes) + 1))
    others = [index for index, box in enumerate(boxes, 1) if box is not None and index != chosen
              and mass[index - 1] >= SPECK_SHARE * mass[chosen - 1] and not touches_edge(box, labels.shape)]
    while others:
        digit = np.isin(labels, keep)
        rows, columns = np.nonzero(digit)
        reach = NEAR_SHARE * max(np.ptp(rows), np.ptp(columns))
        gaps = ndimage.minimum(ndimage.distance_transform_edt(~digit), labels, others)
        near = [index for index, gap in zip(others, np.atleast_1d(gaps)) if gap <= reach]
        digit_box = (rows.min(), rows.max() + 1, columns.min(), columns.max() + 1)
        sides = {index: sides_run_along(labels == index, digit_box) for index in near}
        if len(set().union(*sides.values())) >= 2:
            near = [index for index in near if not sides[index]]
        if not near:
            break
        keep += near
        others = [index for index in others if index not in near]
    return keep


def sides_run_along(piece: np.ndarray, box: tuple[int, int, int, int]) -> set[str]:
    """The sides of `box` (top, bottom, left, right) that `piece` runs along outside it, over BOX_COVER of the side."""
    top, bottom, left, right = box
    beyond = {"top": piece[:top, left:right].any(axis=0), "bottom": piece[bottom:, left:right].any(axis=0),
              "left": piece[top:bottom, :left].any(axis=1), "right": piece[top:bottom, right:].any(axis=1)}
    return {side for side, covered in beyond.items() if covered.size and covered.mean() >= BOX_COVER}


# ---------------------------------------------------------------- the switchable steps

def drop_specks(ink: np.ndarray) -> np.ndarray:
    """Keep the digit: the largest connected piece of ink, and the pieces near it that are not specks.

    A piece is kept when it holds at least SPECK_SHARE of the largest piece's ink and lies within
    NEAR_SHARE of the kept digit's size of its box (a 5's separate top bar, a 7's crossbar).
    """
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if count <= 1:
        return ink
    mass = ndimage.sum_labels(ink > 0, labels, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(labels)
    keep = {int(np.argmax(mass))}
    top, bottom, left, right = _box(boxes[next(iter(keep))])
    grew = True
    while grew:  # pieces join the digit one ring at a time: a broken stroke's parts chain together
        grew = False
        margin = NEAR_SHARE * max(bottom - top, right - left)
        for index, box in enumerate(boxes):
            if index in keep or mass[index] < SPECK_SHARE * mass.max():
                continue
            t, b, l, r = _box(box)
            if t <= bottom + margin and b >= top - margin and l <= right + margin and r >= left - margin:
                keep.add(index)
                top, bottom, left, right = min(top, t), max(bottom, b), min(left, l), max(right, r)
                grew = True
    return np.where(np.isin(labels, [index + 1 for index in keep]), ink, 0.0)


def touches_edge(box: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    top, bottom, left, right = _box(box)
    return top == 0 or left == 0 or bottom == shape[0] or right == shape[1]


def _box(box: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return box[0].start, box[0].stop, box[1].start, box[1].stop


def crop(ink: np.ndarray) -> np.ndarray:
    rows, columns = np.nonzero(ink)
    return ink[rows.min():rows.max() + 1, columns.min():columns.max() + 1]


def skew_of(ink: np.ndarray) -> float:
    """Horizontal shift per row of the ink's principal slant (mu11 / mu02 of its moments); 0 = upright."""
    rows, columns = np.indices(ink.shape)
    total = ink.sum()
    mean_row, mean_column = (rows * ink).sum() / total, (columns * ink).sum() / total
    mu02 = ((rows - mean_row) ** 2 * ink).sum() / total
    mu11 = ((rows - mean_row) * (columns - mean_column) * ink).sum() / total
    return float(np.clip(mu11 / mu02, -MAX_SKEW, MAX_SKEW)) if mu02 > 0 else 0.0


def deskew(ink: np.ndarray) -> np.ndarray:
    """Shear the rows so that the slant is gone: output column c of row r reads column c + skew * (r - centre).

    Only a slant that MNIST rarely shows (outside MNIST_SKEW_RANGE) is removed: the network learnt the
    slants its writers had, and the moments of an upright 2 or 7 read as a little slant too.
    """
    skew = skew_of(ink)
    if MNIST_SKEW_RANGE[0] <= skew <= MNIST_SKEW_RANGE[1]:
        return ink
    height, width = ink.shape
    pad = int(np.ceil(abs(skew) * height / 2)) + 1
    padded = np.pad(ink, ((0, 0), (pad, pad)))
    centre = (ink * np.arange(height)[:, None]).sum() / ink.sum()
    sheared = ndimage.affine_transform(padded, np.array([[1, 0], [skew, 1]]), offset=(0, -skew * centre), order=1)
    return crop(np.maximum(sheared, 0))


def stroke_width(binary: np.ndarray) -> float:
    """Mean stroke width in pixels: ink area over skeleton length (MNIST's measure, any resolution)."""
    length = skeletonize(binary).sum()
    return float(binary.sum() / length) if length else 0.0


def digit_stroke_width(ink: np.ndarray) -> float:
    """Stroke width in pixels of the digit fitted to MNIST's 20 px box, measured at SUPERSAMPLE x that size
    (at 20 px the skeleton of a thick stroke is too coarse to measure; MNIST's digits are measured alike)."""
    return stroke_width(fit_box(ink, DIGIT_BOX * SUPERSAMPLE) > 127) / SUPERSAMPLE


def normalize_stroke(ink: np.ndarray) -> np.ndarray:
    """Bring strokes outside MNIST's range of widths to its nearer end: eroded or dilated by distance
    transform at SUPERSAMPLE x the 20 px box, so the digit keeps its shape (and its loops, if open).

    The soft edge becomes MNIST's gray rim when the digit is scaled down to 20 px.
    """
    width = digit_stroke_width(ink)
    target = float(np.clip(width, *MNIST_STROKE_RANGE))
    if width == 0 or target == width:
        return ink
    box = DIGIT_BOX * SUPERSAMPLE
    # Pixels to take off (or, negative, to add) on each side of a stroke at the supersampled size. The
    # digit's box shrinks (grows) by as much and is fitted to the box again: solve
    # (width - 2 change) / (box - 2 change) = target / box, widths in supersampled pixels.
    change = (width - target) * SUPERSAMPLE / 2 * box / (box - target * SUPERSAMPLE)
    binary = np.pad(fit_box(ink, box) > 127, int(np.ceil(max(-change, 0))) + 2)
    if change > 0:
        depth = ndimage.distance_transform_edt(binary)
        # A blob (a blurred 1 is all stroke, no length) never thins to nothing: its core line stays.
        change = min(change, float(depth.max()) - 1)
        # Only the stroke's own pixels: outside it depth is 0, and a change under half a pixel would grey them all.
        return np.where(binary, np.clip(depth - change + 0.5, 0, 1), 0).astype(np.float32) * 255
    outside = ndimage.distance_transform_edt(~binary)
    return np.maximum(np.clip(-change + 0.5 - outside, 0, 1), binary).astype(np.float32) * 255


# ---------------------------------------------------------------- fit and centre

def fit_box(ink: np.ndarray, box: int) -> np.ndarray:
    """The ink's longer side scaled to `box` px (anti-aliased, aspect kept), stretched to 0..255."""
    ink = crop(ink)
    ink = ink / ink.max() * 255
    height, width = ink.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.clip(np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, Image.LANCZOS)), 0, 255)


def saturate_core(digit: np.ndarray) -> np.ndarray:
    """Stretch the ink's gray levels so that as large a share of it is full white as in MNIST.

    MNIST's strokes are white in their core and gray only at the rim; a blurred photo's strokes are
    gray throughout, and the network reads faint gray strokes poorly.
    """
    ink = digit[digit > 0]
    if ink.size == 0:
        return digit
    level = float(np.quantile(ink, 1 - MNIST_WHITE_SHARE))
    return np.clip(digit * (255 / max(level, 1.0)), 0, 255) if level < 255 else digit


def center_by_mass(digit: np.ndarray, center: float = MNIST_CENTER) -> np.ndarray:
    """Paste `digit` (at most 20x20) into 28x28 so that its centre of mass lies at (center, center), to
    the nearest whole pixel (by default where MNIST's do)."""
    center_row, center_column = ndimage.center_of_mass(digit)
    top = int(np.clip(round(center - center_row), 0, CANVAS - digit.shape[0]))
    left = int(np.clip(round(center - center_column), 0, CANVAS - digit.shape[1]))
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.round(canvas).astype(np.uint8)


# ---------------------------------------------------------------- the whole

def digit_without_page_lines(ink: np.ndarray) -> np.ndarray:
    """The digit, the page's rules, frames and boxes taken out first; where that leaves no digit and the "lines"
    were one stroke, or wider than a printed rule, they were the digit (a tightly cropped 1 is one straight
    stroke along the whole image): its ink is kept, and the model decides."""
    try:
        return choose_digit(remove_boxes(remove_frames(remove_rules(ink))))
    except ImageError as error:
        if error.refused != "no digit":
            raise
        # A ruled or squared page is many lines, across each other; one long stroke alone, or one wider than any
        # printed rule (RULE_HALF_WIDTH a side at the working size), is written: kept for the model to read.
        if not (one_stroke(ink) or stroke_width(ink > 0) > 2 * RULE_HALF_WIDTH + 1):
            raise
        return choose_digit(ink)


ONE_STROKE_SPREAD = 0.4  # one piece of ink whose box is at most 40% as wide as it is long: a single stroke


def one_stroke(ink: np.ndarray) -> bool:
    """Whether the ink is one piece, long and narrow (a 1), not a grid or several rules."""
    labels, count = digit_pieces(ink)
    if count != 1:
        return False
    rows, columns = np.nonzero(labels)
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    return min(height, width) <= ONE_STROKE_SPREAD * max(height, width)


def upright(image: Image.Image) -> Image.Image:
    """The image as viewers show it: EXIF orientation applied (phones store photos sideways and say so)."""
    return ImageOps.exif_transpose(image)


def preprocess_stages(image: Image.Image, steps: Steps = Steps()) -> Stages:
    """Every stage of making `image` an MNIST digit (see the module's docstring)."""
    original = upright(image) if steps.upright else image
    gray, whole_field = working_gray(original, steps)
    if whole_field:
        return Stages(original, gray, gray)
    ink = ink_of(gray)
    if steps.lines:
        ink = remove_underline(digit_without_page_lines(ink))
    if steps.despeckle:
        ink = drop_specks(ink)
    seen_ink = ink
    ink = crop(ink)
    if steps.deskew:
        ink = deskew(ink)
    if steps.stroke:
        ink = normalize_stroke(ink)
    digit = fit_box(ink, DIGIT_BOX)
    if steps.contrast:
        digit = saturate_core(digit)
    digit = center_by_mass(digit, MNIST_CENTER if steps.center else (CANVAS - 1) / 2)
    return Stages(original, np.clip(seen_ink / max(float(seen_ink.max()), 1e-6) * 255, 0, 255).astype(np.uint8), digit)


def preprocess(image: Image.Image, steps: Steps = Steps()) -> np.ndarray:
    """A user's digit image -> a 28x28 uint8 MNIST-style digit (white ink on black)."""
    return preprocess_stages(image, steps).digit


# ---------------------------------------------------------------- MNIST's own figures

def mnist_statistics(images: np.ndarray) -> dict[str, float]:
    """The figures the steps aim at, measured on MNIST digits (uint8, N x 28 x 28)."""
    widths, sides, masses, levels, whites, centers = [], [], [], [], [], []
    for image in images:
        widths.append(digit_stroke_width(image.astype(np.float32)))
        rows, columns = np.nonzero(image)
        sides.append(max(rows.max() - rows.min(), columns.max() - columns.min()) + 1)
        masses.append(image.sum() / 255)
        levels.append(image[image > 0].mean())
        whites.append((image >= 250).sum() / (image > 0).sum())
        centers.append(ndimage.center_of_mass(image.astype(np.float64)))
    return {"stroke_width_median": float(np.median(widths)),
            "stroke_width_p2_p98": [float(p) for p in np.percentile(widths, [2, 98])], "box_side_median": float(np.median(sides)),
            "ink_mass_median": float(np.median(masses)), "ink_level_median": float(np.median(levels)),
            "white_share_median": float(np.median(whites)),
            "center_of_mass_mean": [float(value) for value in np.mean(centers, axis=0)],
            "skew_p10_p90": [float(p) for p in np.percentile([skew_of(image.astype(np.float32)) for image in images],
                                                              [10, 90])]}


def main(argv: list[str] | None = None) -> int:
    from mnist.data import load_mnist

    parser = argparse.ArgumentParser(description="Measure the MNIST figures preprocessing aims at.")
    parser.add_argument("--count", type=int, default=60000, help="training images to measure (default all)")
    args = parser.parse_args(argv)
    images = load_mnist().train_images[:args.count]
    print(json_text({"images": len(images), **mnist_statistics(images), "steps": asdict(Steps())}))
    return 0


if __name__ == "__main__":
    run_cli(main)
