"""Digits drawn on the draw page's canvas in a real browser: the canvas set, and what the browser test draws.

    python -m tools.canvas_set [--out examples/handwriting/canvas] [--count 400] [--seed 0]

Each digit is drawn as a person would, stroke by stroke with the pointer (Selenium's pointer
actions in headless Chromium), from the stroke paths of mnist.reading.handwriting.digit_strokes at
several sizes, slants and pen widths; what the page's canvas then holds (the PNG it sends to
the server) is saved with its label, half to tune/ and half to report/.
"""
from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnist.reading.handwriting import SPLITS, digit_strokes, split_names, write_labels
from tools.browser import draw_stroke, free_port, headless_chromium, start_server, stop_process

WAIT_S = 30


def wait_for(browser, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_S).until(lambda _: condition(), message=f"waited {WAIT_S} s for {what}")


def draw_digit(browser, strokes: list[list[tuple[float, float]]], pen: int) -> tuple[str, bytes]:
    """Clear the pad, draw `strokes` with a pen `pen` px wide; (the page's answer to the last stroke, canvas PNG)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "clear").click()
    browser.execute_script("document.getElementById('pen').value = arguments[0];", pen)
    pad = browser.find_element(By.ID, "pad")
    before = int(browser.execute_script("return document.body.dataset.sent || 0"))
    for stroke in strokes:
        draw_stroke(browser, pad, stroke)
    # Each stroke's end sends the drawing (once the canvas is encoded); the last one's answer is shown.
    wait_for(browser, lambda: browser.execute_script(
        "const d = document.body.dataset; return Number(d.sent) >= arguments[0] && d.sent === d.answered;",
        before + len(strokes)), "the page's answer to the last stroke")
    shown = browser.find_element(By.ID, "digit").text
    png = browser.execute_script("return document.getElementById('pad').toDataURL('image/png');")
    return shown, base64.b64decode(png.split(",", 1)[1])


def draw_set(browser, url: str, count: int, seed: int) -> list[tuple[int, str, bytes]]:
    """(digit, the page's reading, canvas PNG) of `count` digits, 0..9 in turn, drawn from seeded stroke paths."""
    browser.get(url)
    rng = np.random.default_rng(seed)
    drawn = []
    for index in range(count):
        digit = index % 10
        strokes, pen = digit_strokes(digit, rng)
        shown, png = draw_digit(browser, strokes, pen)
        drawn.append((digit, shown, png))
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="examples/handwriting/canvas", help="folder (default examples/handwriting/canvas)")
    parser.add_argument("--count", type=int, default=400, help="digits to draw (default 400: 200 tune, 200 report)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of styles, sizes, slants, pens, wobble")
    parser.add_argument("--checkpoint", default=None, help="the model the page serves while drawing (default: the shipped reader)")
    args = parser.parse_args(argv)
    log = Path(tempfile.mkdtemp()) / "serve.log"
    model = ["--checkpoint", args.checkpoint] if args.checkpoint else []  # else the shipped reader
    server, url = start_server([sys.executable, "-m", "mnist.reading.serve", *model,
                                "--port", str(free_port())], "draw a digit:", log)
    browser = headless_chromium()
    try:
        drawn = draw_set(browser, url, args.count, args.seed)
    finally:
        browser.quit()
        stop_process(server)
    out = Path(args.out)
    split = split_names(len(drawn), args.seed)
    labels: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    for index, (digit, _, png) in enumerate(drawn):
        name = SPLITS[split[index]]
        (out / name).mkdir(parents=True, exist_ok=True)
        file = f"canvas_{index:04d}.png"
        (out / name / file).write_bytes(png)
        labels[name][file] = digit
    for name in SPLITS:
        write_labels(out / name, labels[name])
    print(f"wrote {out}: " + ", ".join(f"{name} {len(labels[name])}" for name in SPLITS))
    right = sum(shown == str(digit) for digit, shown, _ in drawn)
    unsure = sum(shown.startswith("not sure") for _, shown, _ in drawn)
    model_read = args.checkpoint or "the shipped reader"
    print(f"the page read {right} of {len(drawn)} right as they were drawn ({unsure} 'not sure'; model {model_read})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
