"""How much memory the draw page's server takes at its worst: many of the largest images it accepts at once.

    python -m benchmarks.serve_load [--checkpoint FILE] [--requests 12]

Starts `python -m mnist.reading.serve` on a free port, sends one image just under mnist.reading.predict's
MAX_PIXELS (and under the upload limit) to see one request's peak, then `--requests` of them
at once (more than the server's SERVING_THREADS, so some wait in its queue), and prints the
server's resident memory: idle, peak of one request (the baseline, same run), peak of the burst,
and their ratio. The bound mnist.reading.serve states is the figure to compare with.
"""
from __future__ import annotations

import argparse
import io
import math
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw

from mnist.errors import run_cli
from mnist.reading.predict import MAX_PIXELS, chosen_model
from mnist.reading.serve import SERVING_THREADS


def largest_accepted_png() -> bytes:
    """A digit on a page of just under MAX_PIXELS, as PNG (a flat page compresses far under the upload limit)."""
    side = math.isqrt(MAX_PIXELS - 1_000_000)
    page = Image.new("RGB", (side, side), (230, 230, 225))
    ImageDraw.Draw(page).line([(side // 3, side // 4), (side // 2, side * 3 // 4)], fill=(20, 20, 20), width=side // 40)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


def post_image(url: str, data: bytes, timeout: float = 600) -> int:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "predict", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak so far) of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident size (Linux 4.0+: writing 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model (default: the one mnist.reading.predict picks)")
    parser.add_argument("--requests", type=int, default=12, help="largest images sent at once (default 12)")
    args = parser.parse_args(argv)
    checkpoint = chosen_model(args.checkpoint)
    image = largest_accepted_png()
    server = subprocess.Popen([sys.executable, "-m", "mnist.reading.serve", "--checkpoint", str(checkpoint), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        time.sleep(1)
        idle = memory_mb(server.pid, "VmRSS")
        reset_peak(server.pid)
        assert post_image(url, image) == 200
        one = memory_mb(server.pid, "VmHWM")
        reset_peak(server.pid)
        with ThreadPoolExecutor(args.requests) as pool:
            statuses = list(pool.map(lambda _: post_image(url, image), range(args.requests)))
        burst = memory_mb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"image: {len(image) / 1e6:.1f} MB PNG of {MAX_PIXELS / 1e6:.0f} MP at most; server threads {SERVING_THREADS}")
    print(f"answered: {statuses.count(200)}/{args.requests}")
    print(f"rss_idle_mb: {idle:.0f}")
    print(f"rss_peak_one_request_mb: {one:.0f}")
    print(f"rss_peak_{args.requests}_at_once_mb: {burst:.0f}")
    print(f"peak_ratio_burst_vs_one: {burst / one:.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
