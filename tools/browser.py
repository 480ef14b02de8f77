"""Driving the project's servers and pages as a person would: a free port, a serving CLI started and
Ctrl-C'd in its own session, a headless Chromium from the system's packages, a stroke drawn with the
mouse. The browser tests, the canvas set's maker and the screenshots share them."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on now, for a test's own Ray cluster."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHROMIUM_INSTALL_HINT = ("install Debian's Chromium and its driver: sudo apt-get install -y chromium chromium-driver "
                         "(Ubuntu: chromium-browser chromium-chromedriver), and selenium: pip install -e '.[dev]'")


def headless_chromium(width: int = 1200, height: int = 900):
    """A headless Chromium driven by Selenium, from the system's chromium and chromedriver (nothing downloaded).

    Raises RuntimeError with the install hint when either is missing.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise RuntimeError(f"Chromium or chromedriver not found on PATH: {CHROMIUM_INSTALL_HINT}")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def as_in_a_terminal() -> None:
    """In the child, before it runs: Ctrl-C back to its default. A shell starts a background job (`cmd &`,
    `nohup`) with SIGINT ignored and its children inherit that, so a suite run in the background would start
    servers that no Ctrl-C can stop; the user this stands for runs them in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(command: list[str], ready: str, log: Path, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start a serving CLI in its own process, output to `log`; returns it and the URL on its line starting `ready`."""
    with open(log, "w") as output:  # a file, not a pipe: a chatty process never blocks on a full pipe
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True, cwd=ROOT, preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith(ready):
                return process, next(word for word in line.split() if word.startswith("http://"))
        time.sleep(0.2)
    stop_process(process)
    raise AssertionError(f"{' '.join(command[1:3])} did not print {ready!r}: {log.read_text()[-2000:]}")


# How long a Ctrl-C'd process may take to end before it is killed: a bound on waiting for the process to
# end, not a timing to meet (a server stops in about a second, but a busy 2-core machine can stretch that).
STOP_WAIT_S = 120


def stop_process(process: subprocess.Popen) -> None:
    """Ctrl-C a process started in its own session, as a user would, and wait for it to end; SIGKILL (exit -9)
    only if it has not ended after STOP_WAIT_S."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_WAIT_S)


def draw_stroke(browser, canvas, points: list[tuple[float, float]]) -> None:
    """Drag the mouse along `points` (pixels from the canvas's centre) with the button held: one stroke."""
    from selenium.webdriver.common.action_chains import ActionChains

    rounded = [(round(x), round(y)) for x, y in points]
    actions = ActionChains(browser, duration=5).move_to_element_with_offset(canvas, *rounded[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(rounded, rounded[1:]):
        actions.move_by_offset(x1 - x0, y1 - y0)
    actions.release().perform()
