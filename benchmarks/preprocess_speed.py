"""How fast an image is read: a 4000x3000 phone photo through the preprocessing, the page's answer to a stroke,
and predict's command on 1,000-px notebook photos (its start-up, and each photo after it).

    python -m benchmarks.preprocess_speed [--checkpoint FILE] [--repeats 7]

Prints the median seconds of each, with the preprocessing as it was before its new steps as
the baseline measured in the same run (targets: a photo under 0.3 s, a stroke under 0.5 s;
predict: each photo about 42 ms and the start-up about 4 s on 2 cores, as before the steps of
issue #30). Each photo is read and answered in this process (21 photos, the median of each one's
best of 3); the start-up is what a new `python -m mnist.reading.predict PHOTO` takes beyond that.
"""
from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnist.errors import run_cli
from mnist.reading.notebook import notebook_photo
from mnist.reading.predict import ImageError, Predictor, chosen_model, load_image, load_stages, model_name
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


def notebook_photos(folder: Path, count: int) -> None:
    """`count` notebook photos (mnist.reading.notebook) enlarged to 1,000 px on their longer side, as a phone's."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for index in range(count):
        photo, _ = notebook_photo(index % 10, rng)
        scale = 1000 / max(photo.size)
        photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC).save(
            folder / f"photo_{index:02d}.jpg", quality=90)


def predict_startup_seconds(photo: Path, checkpoint: Path, steps: str, repeats: int) -> float:
    """The median wall time of `python -m mnist.reading.predict PHOTO` as a new process (start-up + one photo)."""
    command = [sys.executable, "-m", "mnist.reading.predict", str(photo), "--checkpoint", str(checkpoint),
               "--steps", steps]
    return median_seconds(lambda: subprocess.run(command, capture_output=True, check=False), repeats)


def predict_figures(folder: Path, checkpoint: Path, steps: str, repeats: int) -> tuple[float, float]:
    """(start-up, seconds per photo) of predict over the photos in `folder`: each photo read and answered in
    this process (median over photos of the best of `repeats`), the start-up the rest of a new process's time."""
    files = sorted(folder.glob("*.jpg"))
    predictor, parsed = Predictor(checkpoint), Steps.parse(steps)

    def read(path: Path) -> None:
        try:
            predictor.predict([load_image(path, steps=parsed)[1]])
        except ImageError:  # refused ("more than one digit"): an answer too, timed as one
            pass
    read(files[0])  # warm
    per_photo = statistics.median(min(timed(lambda: read(path)) for _ in range(repeats)) for path in files)
    return predict_startup_seconds(files[0], checkpoint, steps, repeats) - per_photo, per_photo


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm: imports, caches
    return statistics.median(timed(call) for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    from mnist.reading.serve import create_app

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model the page serves (default: the shipped reader)")
    parser.add_argument("--compare", default=None, metavar="FILE",
                        help="another model whose predict figures are measured in the same run (today's served one)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of each (default 7)")
    args = parser.parse_args(argv)
    checkpoint = chosen_model(args.checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo.jpg"
        phone_photo(photo)
        now = median_seconds(lambda: load_stages(photo), args.repeats)
        before = median_seconds(lambda: load_stages(photo, steps=Steps.before()), args.repeats)
        notebook_photos(Path(folder) / "notebook", 21)
        predict_now = predict_figures(Path(folder) / "notebook", checkpoint, "all", 3)
        predict_before = predict_figures(Path(folder) / "notebook", checkpoint, "before", 3)
        compared = predict_figures(Path(folder) / "notebook", Path(args.compare), "all", 3) if args.compare else None
    client = create_app(Predictor(checkpoint), checkpoint).test_client()
    drawing = canvas_png()

    def stroke() -> None:
        response = client.post("/predict", data={"image": (io.BytesIO(drawing), "drawing.png")})
        assert response.status_code == 200, response.get_json()
    answer = median_seconds(stroke, args.repeats)
    print(f"photo 4000x3000 JPEG, read and preprocessed: {now:.3f} s (before the new steps: {before:.3f} s, "
          f"ratio {now / before:.2f})")
    print(f"page answer to a stroke (280x280 PNG, preprocess + model + the three images): {answer:.3f} s")
    print(f"predict on 1,000-px notebook photos: start-up {predict_now[0]:.2f} s, each photo "
          f"{1000 * predict_now[1]:.0f} ms (before the new steps: {predict_before[0]:.2f} s, "
          f"{1000 * predict_before[1]:.0f} ms; ratios {predict_now[0] / predict_before[0]:.2f}, "
          f"{predict_now[1] / predict_before[1]:.2f})")
    if compared:
        print(f"predict with {args.compare} beside it, the same photos: start-up {compared[0]:.2f} s, each photo "
              f"{1000 * compared[1]:.0f} ms (ratios {predict_now[0] / compared[0]:.2f}, {predict_now[1] / compared[1]:.2f})")
    print(f"model: {model_name(checkpoint)}")
    print(f"photo_seconds: {now:.3f}")
    print(f"predict_startup_seconds: {predict_now[0]:.2f}")
    print(f"predict_photo_ms: {1000 * predict_now[1]:.0f}")
    print(f"stroke_answer_seconds: {answer:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
