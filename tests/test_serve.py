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
from mnist.predict import Predictor
from mnist.serve import MAX_UPLOAD_MB, create_app
from mnist.serve import main as serve_main


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


def test_the_page_names_its_model(client, tiny_run: Path) -> None:
    page = client.get("/").get_data(as_text=True)
    assert str(tiny_run / "best.pt") in page and '<canvas id="pad"' in page


def test_an_answer_holds_the_digit_its_top_three_and_the_image_seen(client) -> None:
    response = post(client, png_of_a_bar())
    assert response.status_code == 200
    answer = response.get_json()
    probabilities = [t["probability"] for t in answer["top3"]]
    assert answer["digit"] == answer["top3"][0]["digit"] and probabilities == sorted(probabilities, reverse=True)
    seen = Image.open(io.BytesIO(base64.b64decode(answer["seen"].split(",", 1)[1])))
    assert seen.size == (28, 28)


@pytest.mark.parametrize(("data", "name", "status", "message"), [
    (b"", "empty.png", 400, "empty.png: empty file"),
    (b"not a picture", "notes.png", 400, "notes.png: not an image Pillow can read"),
    (bytes((MAX_UPLOAD_MB + 1) * 2**20), "huge.png", 413, f"file too large (over {MAX_UPLOAD_MB} MB)"),
], ids=["empty", "not-an-image", "too-large"])
def test_bad_uploads_get_a_one_line_error(client, data: bytes, name: str, status: int, message: str) -> None:
    response = post(client, data, name)
    assert (response.status_code, response.get_json()) == (status, {"error": message})
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
                                                   "use; choose another port")


def test_a_port_out_of_range_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert refusal(dashboard_main, [str(tmp_path), "--port", "70000"], capsys) == \
        "error: port 70000: not a TCP port (0 to 65535)"


def test_the_dashboard_of_a_folder_without_a_search_is_refused_in_one_line(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert refusal(dashboard_main, [str(tmp_path), "--port", "0"], capsys) == \
        f"error: {tmp_path / 'optuna.db'}: missing or empty; is it a search's folder (results/<name>)?"
