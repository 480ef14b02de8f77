"""The README's screenshots, taken by the same headless Chromium the browser tests drive.

    python -m tools.screenshots [--checkpoint FILE] [--search results/reference] [--out docs]

Draws a 7 on the draw-a-digit page (`python -m mnist.reading.serve`) and opens the search's study in
optuna-dashboard (`python hpo/dashboard.py`), saving docs/browser-draw.png and docs/browser-dashboard.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mnist.reading.predict import chosen_model
from tools.browser import ROOT, draw_stroke, free_port, headless_chromium, start_server, stop_process

SEVEN = [(-60, -80), (0, -80), (60, -80), (40, -20), (20, 30), (0, 90)]


def shoot_draw_page(browser, checkpoint: Path, out: Path, log: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    process, url = start_server([sys.executable, "-m", "mnist.reading.serve", "--checkpoint", str(checkpoint),
                                 "--port", str(free_port())], "draw a digit:", log)
    try:
        browser.get(url)
        draw_stroke(browser, browser.find_element(By.ID, "pad"), SEVEN)
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "digit").text != "?")
        browser.save_screenshot(str(out))
    finally:
        stop_process(process)


def shoot_dashboard(browser, search: Path, out: Path, log: Path) -> None:
    process, url = start_server([sys.executable, str(ROOT / "hpo" / "dashboard.py"), str(search),
                                 "--port", str(free_port())], "dashboard of", log)
    try:
        browser.get(url + "studies/1")
        time.sleep(5)  # the plots draw after the data arrive
        browser.save_screenshot(str(out))
    finally:
        stop_process(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model of the draw page (default: as mnist.reading.predict)")
    parser.add_argument("--search", default="results/reference", help="search folder for the dashboard")
    parser.add_argument("--out", default="docs", help="folder for the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    browser = headless_chromium(1280, 800)
    try:
        shoot_draw_page(browser, chosen_model(args.checkpoint),
                        out / "browser-draw.png", out / "browser-draw.log")
        shoot_dashboard(browser, Path(args.search), out / "browser-dashboard.png", out / "browser-dashboard.log")
    finally:
        browser.quit()
        for log in out.glob("browser-*.log"):
            log.unlink()
    print(f"wrote {out / 'browser-draw.png'} and {out / 'browser-dashboard.png'}")


if __name__ == "__main__":
    main()
