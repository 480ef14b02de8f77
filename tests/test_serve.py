"""The draw-a-digit server without a browser: its answers, its refusals, and the busy-port one-liners."""
from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from hpo.dashboard import main as dashboard_main
from hpo.search import main as search_main
from mnist.errors import run_cli
from mnist.reading.predict import Predictor
from mnist.reading import serve
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.reading.serve import LARGE_IMAGE_PIXELS, MAX_UPLOAD_MB, create_app
from mnist.reading.serve import main as serve_main


@pytest.fixture(scope="module")
def client(tiny_run: Path):
    checkpoint = tiny_run / "best.pt"
    return create_app(Predictor(checkpoint), checkpoint).test_client()


def png_of_a_bar() -> bytes:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(140, 40), (140, 240)], fill=0, width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def post(client, data: bytes, name: str = "drawing.png"):
    return client.post("/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_the_page_names_its_model_and_says_what_it_is(client, tiny_run: Path, tmp_path: Path) -> None:
    page = client.get("/").get_data(as_text=True)
    assert str(tiny_run / "best.pt") in page and '<canvas id="pad"' in page
    assert "one model; &#39;not sure&#39; below" in page and "fitted on mnist validation" in page
    # An ensemble calibrated on the real sets says so, and why it is the one served.
    state = load_checkpoint(tiny_run / "best.pt")
    weights = {f"members.{index}.{name}": value for index in range(2) for name, value in state["model"].items()}
    calibration = {**state["calibration"], "fitted_on": {"mnist validation": 400, "notebook tune": 500}}
    save_checkpoint({**state, "model": weights, "members": 2, "calibration": calibration}, tmp_path / "ensemble.pt")
    page = create_app(Predictor(tmp_path / "ensemble.pt"), tmp_path / "ensemble.pt").test_client().get("/")
    text = page.get_data(as_text=True)
    assert "2 seeds as one ensemble: measured by the field report" in text and "fitted on mnist validation, notebook tune" in text


def test_an_answer_holds_the_digit_its_top_three_and_the_image_seen(client) -> None:
    response = post(client, png_of_a_bar())
    assert response.status_code == 200
    answer = response.get_json()
    probabilities = [t["probability"] for t in answer["top3"]]
    assert answer["digit"] == answer["top3"][0]["digit"] and probabilities == sorted(probabilities, reverse=True)
    seen = Image.open(io.BytesIO(base64.b64decode(answer["seen"].split(",", 1)[1])))
    assert seen.size == (28, 28)


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "name", "status", "answer"), [
    (b"", "empty.png", 400, {"error": "empty.png: empty file", "refused": "unreadable"}),
    (b"not a picture", "notes.png", 400, {"error": "notes.png: not an image Pillow can read", "refused": "unreadable"}),
    (bytes((MAX_UPLOAD_MB + 1) * 2**20), "huge.png", 413, {"error": f"file too large (over {MAX_UPLOAD_MB} MB)"}),
    (png_of(Image.new("L", (200, 200), 255)), "blank.png", 400,
     {"error": "blank.png: no ink found (the image is nearly uniform)", "refused": "no digit"}),
], ids=["empty", "not-an-image", "too-large", "no-digit"])
def test_bad_uploads_get_a_one_line_error(client, data: bytes, name: str, status: int, answer: dict) -> None:
    response = post(client, data, name)
    assert (response.status_code, response.get_json()) == (status, answer)
    assert post(client, png_of_a_bar()).status_code == 200  # and the next one is read


def test_a_request_without_an_image_is_refused(client) -> None:
    response = client.post("/predict", data={}, content_type="multipart/form-data")
    assert response.status_code == 400 and "no image" in response.get_json()["error"]


def refusal(main, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """What a CLI prints when it refuses `argv` (exit code 2, no traceback)."""
    with pytest.raises(SystemExit) as exit:
        run_cli(main, argv)
    assert exit.value.code == 2
    return capsys.readouterr().err.strip()


def test_busy_ports_are_refused_in_one_line(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for main, argv in ((serve_main, ["--checkpoint", str(tiny_run / "best.pt"), "--port", str(port)]),
                           (search_main, ["--dashboard", str(port)]),  # refused before Ray starts
                           (dashboard_main, [str(tmp_path), "--port", str(port)])):
            assert refusal(main, argv, capsys) == (f"error: cannot listen on 127.0.0.1:{port}: Address already in "
                                                   "use; choose another --port")


def test_a_port_out_of_range_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert refusal(dashboard_main, [str(tmp_path), "--port", "70000"], capsys) == \
        "error: --port 70000: not a TCP port (0 to 65535)"


def test_the_dashboard_of_a_folder_without_a_search_is_refused_in_one_line(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert refusal(dashboard_main, [str(tmp_path), "--port", "0"], capsys) == \
        f"error: {tmp_path / 'optuna.db'}: missing or empty; is it a search's folder (results/<name>)?"


def http(url: str, method: str = "GET", host: str | None = None, data: bytes | None = None,
         headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of one request; `host` sets the Host header (what a rebinding DNS would send)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    if host:
        request.add_unredirected_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.slow
def test_the_dashboard_is_read_only_and_answers_only_its_own_host(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import optuna

    from hpo.dashboard import serve_dashboard
    from hpo.searcher import optuna_storage
    from tools.browser import free_port

    study = optuna.create_study(study_name="s", storage=optuna_storage(tmp_path))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    port = free_port()
    with serve_dashboard(tmp_path, port) as url:
        base = url.split("/dashboard")[0]
        with ThreadPoolExecutor(max_workers=200) as pool:  # 200 page loads at once: none dropped by the backlog
            assert list(pool.map(lambda _: http(url)[0], range(200))) == [200] * 200
        assert http(f"{base}/api/studies")[0] == 200
        assert http(f"{base}/api/studies", host=f"attacker.example:{port}")[0] == 403  # DNS rebinding
        status, body = http(f"{base}/api/studies/1", method="DELETE")
        assert status == 405 and b"read-only" in body
    assert [s.study_name for s in optuna.get_all_study_summaries(optuna_storage(tmp_path))] == ["s"]  # not deleted
    with serve_dashboard(tmp_path, free_port(), allow_edit=True) as url:
        assert http(url.split("/dashboard")[0] + "/api/studies/1", method="DELETE")[0] in (200, 204)


def test_a_large_photo_is_read_by_the_large_image_readers_and_reads_as_its_small_copy(
        client, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    readers = []
    read_upload = serve.read_upload

    def spy(*arguments):
        readers.append(threading.current_thread().name)
        return read_upload(*arguments)

    monkeypatch.setattr(serve, "read_upload", spy)
    small = png_of_a_bar()
    side = int((LARGE_IMAGE_PIXELS * 1.2) ** 0.5)
    buffer = io.BytesIO()
    Image.open(io.BytesIO(small)).resize((side, side)).save(buffer, format="PNG")
    answers = [post(client, data).get_json() for data in (small, buffer.getvalue())]
    assert not readers[0].startswith("large-image") and readers[1].startswith("large-image")  # the case
    assert answers[0]["digit"] == answers[1]["digit"] and answers[0]["top3"][0]["digit"] == answers[1]["top3"][0]["digit"]


def test_the_page_refuses_an_image_over_the_pixel_limit_before_decoding_it(client) -> None:
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000), 1).save(buffer, format="PNG")  # a few hundred KB, 144 megapixels
    response = post(client, buffer.getvalue(), "huge.png")
    assert response.status_code == 400 and "over the 70 megapixels" in response.get_json()["error"]


@pytest.mark.slow
def test_the_page_serves_many_loads_at_once_and_only_its_own_host(tiny_run: Path, tmp_path: Path) -> None:
    """waitress behind the page: 100 page loads, as many at once as this machine sensibly sends (16 per core), all
    answered; a foreign Host refused."""
    import os
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from tools.browser import free_port, start_server, stop_process

    process, url = start_server([sys.executable, "-m", "mnist.reading.serve", "--checkpoint", str(tiny_run / "best.pt"),
                                 "--port", str(free_port())], "draw a digit:", tmp_path / "serve.log")
    try:
        with ThreadPoolExecutor(max_workers=min(100, 16 * (os.cpu_count() or 1))) as pool:
            statuses = list(pool.map(lambda _: http(url)[0], range(100)))
        assert statuses == [200] * 100
        assert http(url, host="attacker.example")[0] == 403
        status, body = http(url + "predict", method="POST", data=b"x", headers={"Content-Type": "text/plain"})
        assert status == 400 and body.startswith(b"{")  # JSON, never an HTML error page
    finally:
        stop_process(process)
    assert process.returncode == 0


@pytest.mark.slow
def test_slow_and_greedy_clients_are_cut_off_while_people_are_served(tiny_run: Path, tmp_path: Path) -> None:
    """A request must bring its headers within the deadline (a byte now and then does not keep it open); more
    slow connections than waitress's default limit of 100 leave the page answering; a body over the upload
    limit is refused from its Content-Length, in JSON, before a byte of it is sent."""
    import json
    import sys
    import time

    from mnist.reading.http_server import HEADER_DEADLINE_S
    from tools.browser import free_port, start_server, stop_process

    process, url = start_server([sys.executable, "-m", "mnist.reading.serve", "--checkpoint", str(tiny_run / "best.pt"),
                                 "--port", str(free_port())], "draw a digit:", tmp_path / "serve.log")
    host, port = url.split("//")[1].rstrip("/").split(":")
    crowd = []
    try:
        slow = socket.create_connection((host, int(port)))
        slow.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode())
        for _ in range(150):  # more than waitress's default connection limit
            crowd.append(socket.create_connection((host, int(port))))
            crowd[-1].sendall(b"GET / HTTP/1.1\r\nHost: ")
        assert http(url)[0] == 200  # people are served meanwhile
        slow.settimeout(0.5)
        started, closed = time.monotonic(), False
        while not closed and time.monotonic() - started < 10 * HEADER_DEADLINE_S:  # a bound, not a timing
            try:
                closed = slow.recv(1) == b""
            except socket.timeout:
                slow.sendall(b"a")  # a byte now and then: waitress alone would keep it open
            except ConnectionResetError:
                closed = True
        assert closed, "a request dribbling its headers was never cut off"
        assert time.monotonic() - started >= HEADER_DEADLINE_S - 1  # not before its deadline
        greedy = socket.create_connection((host, int(port)))
        greedy.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
                       f"boundary=x\r\nContent-Length: {300 * 2**20}\r\n\r\n".encode())
        greedy.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = greedy.recv(4096)
            if not chunk:
                break
            answer += chunk
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 413") and b"application/json" in head
        assert json.loads(body)["error"] == f"file too large (over {MAX_UPLOAD_MB} MB)"
    finally:
        for connection in crowd:
            connection.close()
        stop_process(process)


@pytest.mark.slow
def test_the_slow_clients_bench_prints_both_phases_and_their_ratio(tiny_run: Path) -> None:
    from tests.helpers import run_module

    result = run_module("benchmarks.slow_clients", ["--checkpoint", str(tiny_run / "best.pt"), "--slow", "20",
                                                    "--requests", "12", "--users", "2", "--hold", "1"], timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    alone, crowded = (line for line in lines if line.startswith("normal users"))
    p99 = [float(line.split("p99 ")[1].split(" ms")[0]) for line in (alone, crowded)]
    assert "failed 0/12" in alone and "beside 20 slow clients" in crowded
    assert lines[-1].startswith("p99_ratio_with_slow_clients: ")
    # Printed in whole ms: each p99 is off by up to 0.5 ms, so the ratio by about 1 ms over the smaller.
    assert float(lines[-1].split()[1]) == pytest.approx(p99[1] / p99[0], rel=1.5 / min(p99) + 0.01)
