"""Benchmark: people drawing on the draw page while slow clients hold connections open (slowloris).

    python -m benchmarks.slow_clients [--checkpoint FILE] [--slow 200] [--requests 200] [--users 4]

Starts `python -m mnist.reading.serve` on a free port. Normal users (--users at once) send --requests
drawings (a 280x280 PNG, as the page does); their times are measured first alone (the baseline, same
run), then while --slow clients each open a connection, send the start of a POST and then one header
byte a second, opening a new connection whenever the server closes theirs. Prints the normal users'
p50 and p99 times and failures in both phases, how many slow connections the server's deadlines
closed, and the last line `p99_ratio_with_slow_clients: X` (target: no failure, X <= 2).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.serve_load import post_image
from mnist.errors import UserError, run_cli
from mnist.reading.predict import chosen_model

REQUEST_TIMEOUT_S = 60  # a normal request not answered in a minute counts as failed


def drawing_png() -> bytes:
    """A digit as the page sends it: white ink on black, 280x280."""
    canvas = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(canvas).line([(100, 60), (180, 60), (120, 220)], fill=255, width=22)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def normal_users(url: str, image: bytes, requests: int, users: int) -> tuple[list[float], int]:
    """(seconds of each answered request, how many failed) for `requests` drawings from `users` at once."""
    def one(_: int) -> float | None:
        started = time.perf_counter()
        try:
            return time.perf_counter() - started if post_image(url, image, REQUEST_TIMEOUT_S) == 200 else None
        except OSError:
            return None

    with ThreadPoolExecutor(users) as pool:
        times = list(pool.map(one, range(requests)))
    answered = [seconds for seconds in times if seconds is not None]
    return answered, len(times) - len(answered)


class SlowClients:
    """`count` connections, each sending the start of a request and then a header byte a second, reopened when
    the server closes them; run in their own thread (asyncio) until stop()."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self.open_now = 0
        self.closed_by_server = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def run(self) -> None:
        await asyncio.gather(*(self.client() for _ in range(self.count)))

    async def client(self) -> None:
        while not self.stopping.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(1)
                continue
            self.open_now += 1
            try:
                writer.write(f"POST /predict HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-Slow: ".encode())
                while not self.stopping.is_set():
                    await writer.drain()
                    if reader.at_eof():
                        break
                    try:
                        await asyncio.wait_for(reader.read(1), timeout=1)  # b"" = closed by the server
                        break
                    except asyncio.TimeoutError:
                        writer.write(b"a")
            except OSError:
                pass
            finally:
                self.open_now -= 1
                writer.close()
            if not self.stopping.is_set():
                self.closed_by_server += 1

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def describe(label: str, times: list[float], failed: int) -> tuple[float, float]:
    p50, p99 = (float(np.percentile(times, q)) * 1000 if times else float("nan") for q in (50, 99))
    print(f"{label}: p50 {p50:.0f} ms, p99 {p99:.0f} ms, failed {failed}/{len(times) + failed}", flush=True)
    return p50, p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model (default: the one mnist.reading.predict picks)")
    parser.add_argument("--slow", type=int, default=200, help="slow clients holding connections (default 200)")
    parser.add_argument("--requests", type=int, default=200, help="drawings sent in each phase (default 200)")
    parser.add_argument("--users", type=int, default=4, help="normal users drawing at once (default 4)")
    parser.add_argument("--hold", type=float, default=15, help="seconds the slow clients run before the second "
                                                               "phase, so that deadlines have fired (default 15)")
    args = parser.parse_args(argv)
    if min(args.slow, args.requests, args.users) < 1:
        raise UserError("--slow, --requests and --users must be >= 1")
    checkpoint = chosen_model(args.checkpoint)
    server = subprocess.Popen([sys.executable, "-m", "mnist.reading.serve", "--checkpoint", str(checkpoint),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    slow = None
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
        image = drawing_png()
        normal_users(url, image, 10, args.users)  # warm-up: first-call kernel selection
        alone = describe("normal users alone", *normal_users(url, image, args.requests, args.users))
        slow = SlowClients(host, int(port), args.slow)
        slow.start()
        time.sleep(args.hold)
        held = slow.open_now
        crowded = describe(f"normal users beside {args.slow} slow clients ({held} connections open)",
                           *normal_users(url, image, args.requests, args.users))
    finally:
        if slow is not None:
            slow.stop()
        server.terminate()
        server.wait(timeout=30)
    print(f"slow connections closed by the server's deadlines: {slow.closed_by_server}")
    print(f"p99_ratio_with_slow_clients: {crowded[1] / alone[1]:.2f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
