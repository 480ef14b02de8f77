"""How fast an image is read: a 4000x3000 phone photo through the preprocessing, and the page's answer to a stroke.

    python -m benchmarks.preprocess_speed [--checkpoint FILE] [--repeats 7]

Prints the median seconds of each, with the preprocessing as it was before its new steps as
the baseline measured in the same run (targets: a photo under 0.3 s, a stroke under 0.5 s).
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnist.errors import run_cli
from mnist.reading.predict import Predictor, default_checkpoint, load_stages
from mnist.reading.preprocess import Steps


def phone_photo(path: Path, size: tuple[int, int] = (4000, 3000)) -> None:
    """A 12-megapixel photo of a digit on paper, with uneven light and sensor noise, as a phone saves it."""
    rng = np.random.default_rng(0)
    page = Image.new("L", size, 215)
    ImageDraw.Draw(page).line([(1700, 900), (2300, 900), (1900, 2200)], fill=40, width=60)  # a 7
    light = np.linspace(0.7, 1.0, size[0])[None, :] * np.ones((size[1], 1))
    pixels = np.asarray(page.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32) * light
    pixels += rng.normal(0, 5, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(path, quality=90)


def canvas_png() -> bytes:
    """What the page sends at a stroke's end: its 280x280 canvas as PNG."""
    image = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    ImageDraw.Draw(image).line([(90, 60), (190, 60), (120, 230)], fill=(0, 0, 0, 255), width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm: imports, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from mnist.reading.serve import create_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model the page serves (default: mnist.reading.predict's pick)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each (default 7)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo.jpg"
        phone_photo(photo)
        now = median_seconds(lambda: load_stages(photo), args.repeats)
        before = median_seconds(lambda: load_stages(photo, steps=Steps.before()), args.repeats)
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    client = create_app(Predictor(checkpoint), checkpoint).test_client()
    drawing = canvas_png()

    def stroke() -> None:
        response = client.post("/predict", data={"image": (io.BytesIO(drawing), "drawing.png")})
        assert response.status_code == 200, response.get_json()
    answer = median_seconds(stroke, args.repeats)
    print(f"photo 4000x3000 JPEG, read and preprocessed: {now:.3f} s (before the new steps: {before:.3f} s, "
          f"ratio {now / before:.2f})")
    print(f"page answer to a stroke (280x280 PNG, preprocess + model + the three images): {answer:.3f} s")
    print(f"photo_seconds: {now:.3f}")
    print(f"stroke_answer_seconds: {answer:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
