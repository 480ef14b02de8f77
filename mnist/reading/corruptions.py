"""Corrupted digits to measure a reader on, one set per kind, and MNIST's own digits saved as image files.

    python -m mnist.reading.sets [--sets results/handwriting]     # writes them with the other sets (seeded)

Each kind is one way images no one here made differ from MNIST's training digits (the classes of issue #41:
noise, blur, light, bars and page edges, rules and dotted lines, scribbles and marks, hollow and thin or thick
strokes, scale, shift, turn and slant). A set holds 200 digits a half (20 of each digit), saved as 28x28 PNG
files as MNIST's are, white on black:
    tune    from MNIST's last 6,000 training images (held out from the shipped reader's training: its calibration
            may look at them)
    report  from MNIST's test images (only ever reported)
They are made here with Pillow's drawing and filters and SciPy, at strengths of their own, never with
mnist.corrupt (what training draws): a model is measured on corruptions, not on the code that made its
training data.

`mnist-png` is MNIST's digits themselves as PNG files of 28 to 112 px, half of them black on white: what a person
gets saving MNIST's digits, read through predict's preprocessing (the tensors' figure is the `mnist` row).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from mnist.data import MnistData, load_mnist
from mnist.reading.handwriting import SPLITS, write_labels

PER_DIGIT = 20  # a half: 20 of each digit, 200 images
HELD_OUT = 6000  # MNIST's last training images: the shipped reader's held-out validation (train_reader.py)
SIDE = 28

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _draw(pixels: np.ndarray, paint: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    """Marks painted on a layer of their own, laid over the digit (the brighter wins)."""
    layer = Image.new("L", (SIDE, SIDE), 0)
    paint(ImageDraw.Draw(layer))
    return np.maximum(pixels, np.asarray(layer, dtype=np.float32))


def noise(pixels, rng):
    return pixels + rng.normal(0, rng.uniform(40, 100), pixels.shape)


def salt_and_pepper(pixels, rng):
    share = rng.uniform(0.05, 0.2)
    draw = rng.random(pixels.shape)
    return np.where(draw < share / 2, 255, np.where(draw > 1 - share / 2, 0, pixels))


def motion_blur(pixels, rng):
    length = int(rng.integers(4, 8))
    kernel = np.zeros((length, length))
    kernel[length // 2, :] = 1
    kernel = ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
    return ndimage.convolve(pixels, kernel / kernel.sum(), mode="constant")


def defocus_blur(pixels, rng):
    radius = rng.uniform(1.2, 2.2)
    span = np.arange(-3, 4)
    disk = (np.hypot(*np.meshgrid(span, span)) <= radius).astype(float)
    return ndimage.convolve(pixels, disk / disk.sum(), mode="constant")


def glass_blur(pixels, rng):
    rows, columns = np.indices(pixels.shape)
    jitter = rng.integers(-1, 2, (2, *pixels.shape))
    moved = pixels[np.clip(rows + jitter[0], 0, SIDE - 1), np.clip(columns + jitter[1], 0, SIDE - 1)]
    return np.asarray(_image(moved).filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32)


def low_contrast(pixels, rng):
    contrast = rng.uniform(0.2, 0.45)
    return pixels * contrast + rng.uniform(0, 255 * (1 - contrast) * 0.6)


def fog(pixels, rng):
    """Smooth clouds: noise whose spectrum falls as 1/f^2, over the whole field."""
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(SIDE), np.fft.fftfreq(SIDE)))
    spectrum = (rng.normal(size=(SIDE, SIDE)) + 1j * rng.normal(size=(SIDE, SIDE))) / np.maximum(frequency, 0.03) ** 2
    clouds = np.real(np.fft.ifft2(spectrum))
    clouds = (clouds - clouds.min()) / np.ptp(clouds)
    foggy = pixels + rng.uniform(100, 180) * clouds
    return foggy / max(foggy.max() / 255, 1)


def uneven_light(pixels, rng):
    """A lamp's spot off to one side."""
    rows, columns = np.indices(pixels.shape)
    centre = rng.uniform(-6, 34, 2)
    spot = np.exp(-((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2) / (2 * rng.uniform(6, 12) ** 2))
    return pixels * 0.8 + rng.uniform(90, 160) * spot


def border_bars(pixels, rng):
    width = int(rng.integers(2, 6))
    level = int(rng.uniform(150, 256))
    sides = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
    boxes = {0: (0, 0, width - 1, SIDE), 1: (SIDE - width, 0, SIDE, SIDE), 2: (0, 0, SIDE, width - 1),
             3: (0, SIDE - width, SIDE, SIDE)}
    return _draw(pixels, lambda draw: [draw.rectangle(boxes[int(side)], fill=level) for side in sides])


def page_edge(pixels, rng):
    corner = rng.choice(4)
    reach = rng.uniform(4, 9)
    points = [(0, 0), (reach * 2, 0), (0, reach * 2)]
    turned = [(x, y) if corner == 0 else (SIDE - x, y) if corner == 1 else (x, SIDE - y) if corner == 2
              else (SIDE - x, SIDE - y) for x, y in points]
    return _draw(pixels, lambda draw: draw.polygon(turned, fill=int(rng.uniform(120, 230))))


def ruled_lines(pixels, rng):
    gap = rng.uniform(6, 10)
    first = rng.uniform(0, gap)
    tilt = rng.uniform(-2, 2)
    level = int(rng.uniform(120, 230))

    def paint(draw):
        for y in np.arange(first, SIDE, gap):
            draw.line([(0, y - tilt), (SIDE, y + tilt)], fill=level, width=1)
    return _draw(pixels, paint)


def dotted_line(pixels, rng):
    angle = rng.uniform(0, np.pi)
    centre = rng.uniform(10, 18, 2)
    step = rng.uniform(2.5, 4)
    level = int(rng.uniform(180, 256))

    def paint(draw):
        for t in np.arange(-20, 20, step):
            x, y = centre[0] + t * np.cos(angle), centre[1] + t * np.sin(angle)
            draw.ellipse([x - 0.8, y - 0.8, x + 0.8, y + 0.8], fill=level)
    return _draw(pixels, paint)


def scribble(pixels, rng):
    points = [tuple(point) for point in rng.uniform(3, 25, (int(rng.integers(3, 6)), 2))]
    return _draw(pixels, lambda draw: draw.line(points, fill=int(rng.uniform(160, 256)), width=int(rng.integers(1, 3)),
                                                joint="curve"))


def stray_marks(pixels, rng):
    def paint(draw):
        for x, y in rng.uniform(1, 27, (int(rng.integers(3, 9)), 2)):
            radius = rng.uniform(0.6, 1.8)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=int(rng.uniform(160, 256)))
    return _draw(pixels, paint)


def outline(pixels, rng):
    """Only the stroke's edges: what an edge detector draws of the digit."""
    solid = _image(np.where(pixels > 100, 255, 0)).filter(ImageFilter.MaxFilter(3))
    return np.asarray(solid.filter(ImageFilter.FIND_EDGES), dtype=np.float32)


def thick_pen(pixels, rng):
    return np.asarray(_image(pixels).filter(ImageFilter.MaxFilter(int(rng.choice([3, 5])))), dtype=np.float32)


def thin_pen(pixels, rng):
    """A fine pen: the stroke's grey rim gone, its core kept at full white."""
    return np.where(pixels > rng.uniform(170, 235), 255.0, 0.0)


def scale_and_shift(pixels, rng):
    zoom = rng.uniform(0.65, 1.15)
    shift = rng.uniform(-2.5, 2.5, 2)
    centre = np.array([SIDE / 2, SIDE / 2])
    matrix = np.eye(2) / zoom
    return ndimage.affine_transform(pixels, matrix, offset=centre - matrix @ (centre + shift), order=1)


def rotation_and_shear(pixels, rng):
    angle, slant = np.radians(rng.uniform(-30, 30)), np.tan(np.radians(rng.uniform(-25, 25)))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.array([[1, 0], [slant, 1]])
    centre = np.array([SIDE / 2, SIDE / 2])
    return ndimage.affine_transform(pixels, matrix, offset=centre - matrix @ centre, order=1)


CORRUPTIONS: dict[str, Corruption] = {
    "noise": noise, "salt_and_pepper": salt_and_pepper, "motion_blur": motion_blur, "defocus_blur": defocus_blur,
    "glass_blur": glass_blur, "low_contrast": low_contrast, "fog": fog, "uneven_light": uneven_light,
    "border_bars": border_bars, "page_edge": page_edge, "ruled_lines": ruled_lines, "dotted_line": dotted_line,
    "scribble": scribble, "stray_marks": stray_marks, "outline": outline, "thick_pen": thick_pen,
    "thin_pen": thin_pen, "scale_and_shift": scale_and_shift, "rotation_and_shear": rotation_and_shear,
}
CORRUPTION_PREFIX = "corrupt-"  # a kind's set is <sets>/corrupt-<kind>
MNIST_PNG = "mnist-png"


def source_digits(data: MnistData, half: str, rng: np.random.Generator, per_digit: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_digit` images of each digit: from the held-out training images (tune) or the test images (report)."""
    images, labels = ((data.train_images[-HELD_OUT:], data.train_labels[-HELD_OUT:]) if half == "tune"
                      else (data.test_images, data.test_labels))
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == digit), per_digit, replace=False)
                             for digit in range(10)])
    return images[chosen], labels[chosen]


def write_images(folder: Path, images: list[Image.Image], labels: np.ndarray, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for index, (image, label) in enumerate(zip(images, labels)):
        name = f"{prefix}_{index:04d}.png"
        image.save(folder / name)
        names[name] = int(label)
    write_labels(folder, names)


def write_corruption_set(out: Path, kind: str, data: MnistData, seed: int = 0, per_digit: int = PER_DIGIT) -> None:
    """The kind's tune and report halves under `out` (seeded: the same files every time)."""
    corruption = CORRUPTIONS[kind]
    for number, half in enumerate(SPLITS):
        rng = np.random.default_rng([seed, number, list(CORRUPTIONS).index(kind)])
        images, labels = source_digits(data, half, rng, per_digit)
        corrupted = [_image(corruption(image.astype(np.float32), rng)) for image in images]
        write_images(out / half, corrupted, labels, "corrupt")


def write_mnist_png_set(out: Path, data: MnistData, seed: int = 0, per_digit: int = PER_DIGIT) -> None:
    """MNIST's digits as PNG files of 28 to 112 px (nearest, bilinear or bicubic), half of them black on white."""
    for number, half in enumerate(SPLITS):
        rng = np.random.default_rng([seed, number, 1000])
        images, labels = source_digits(data, half, rng, per_digit)
        saved = []
        for image in images:
            size = int(rng.choice([28, 28, 56, 64, 100, 112]))
            resample = [Image.NEAREST, Image.BILINEAR, Image.BICUBIC][int(rng.integers(3))]
            pixels = 255 - image if rng.random() < 0.5 else image
            saved.append(Image.fromarray(pixels).resize((size, size), resample))
        write_images(out / half, saved, labels, "mnist")


def set_writers(per_digit: int = PER_DIGIT) -> dict[str, Callable[[Path], None]]:
    """Each set's name -> what writes it under a folder (mnist.reading.sets writes them when missing)."""
    loaded: list[MnistData] = []  # MNIST read once, by the first set written

    def data() -> MnistData:
        if not loaded:
            loaded.append(load_mnist())
        return loaded[0]

    writers: dict[str, Callable[[Path], None]] = {
        MNIST_PNG: lambda out: write_mnist_png_set(out, data(), per_digit=per_digit)}
    for kind in CORRUPTIONS:
        writers[CORRUPTION_PREFIX + kind] = lambda out, kind=kind: write_corruption_set(out, kind, data(),
                                                                                         per_digit=per_digit)
    return writers
