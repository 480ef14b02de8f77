"""Draw a digit in the browser and see what CCNet reads.

    python -m mnist.reading.serve [--checkpoint FILE] [--port 8000] [--host 127.0.0.1]

A page with a canvas (mouse, pen and touch, a pen-width slider), a clear button and an image
upload. At the end of each stroke the drawing goes to the server, through the same MNIST-style
preprocessing as `python -m mnist.reading.predict` (mnist.reading.preprocess), and the page shows the digit
read (or "not sure: 4 or 9", from the checkpoint's calibration), the top-3 probabilities and
the steps: the image as read, the ink found, the 28x28 image the model saw. The default
model is the shipped reader (mnist.reading.shipped), as for predict; the page names it. Served by waitress, answering only
requests addressed to its own host (mnist.webserver).
"""
from __future__ import annotations

import argparse
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, render_template, request
from PIL import Image
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mnist.errors import run_cli
from mnist.reading.http_server import deadline_server
from mnist.reading.predict import ImageError, Predictor, answer, chosen_model, load_stages, model_name
from mnist.webserver import check_port_free, guarded

MAX_UPLOAD_MB = 16  # a phone photo is a few MB; more is not a digit worth reading
# Requests answered at once (waitress's worker threads; more wait in its queue).
SERVING_THREADS = 4
# Large images are read by two threads of their own: decoding one of mnist.reading.predict.MAX_PIXELS (70 MP)
# takes ~380 MB until it is shrunk, and the C allocator keeps what a thread freed for that thread's next
# use, so every thread that ever read one would hold its ~380 MB for good. Two readers bound it: the
# server stays under 1.5 GB under any load (`python -m benchmarks.serve_load` measures it); drawings and
# ordinary photos are read by the serving threads and never wait for a large one.
LARGE_IMAGE_PIXELS = 16_000_000
LARGE_IMAGE_READERS = 2
BACKLOG = 1024  # connections the kernel queues while every thread is busy (wsgiref's 5 dropped them)


STAGE_SIDE = 224  # the page shows the image as read and its ink at this size at most


def png_data_url(image: Image.Image | np.ndarray) -> str:
    """An image for the page, as an inline PNG."""
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(image: Image.Image | np.ndarray) -> Image.Image:
    small = (image if isinstance(image, Image.Image) else Image.fromarray(image)).convert("RGB")
    small.thumbnail((STAGE_SIDE, STAGE_SIDE))
    return small


def read_upload(data: bytes, name: str, predictor: Predictor) -> dict:
    """The page's answer for one uploaded or drawn image: digit (or "not sure"), top-3, and the steps:
    the image as read, the ink found, the 28x28 image seen."""
    if not data:
        raise ImageError(f"{name}: empty file")
    stages = load_stages(io.BytesIO(data), name)
    return {**answer(predictor.predict([stages.digit]), 0), "seen": png_data_url(stages.digit),
            "original": png_data_url(thumbnail(stages.original)), "ink": png_data_url(thumbnail(stages.ink))}


def pixels_of(data: bytes) -> int:
    """An image's pixel count from its header (nothing decoded); 0 when it is not one (read_upload says why)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # PIL raises many types on bad headers
        return 0


def create_app(predictor: Predictor, checkpoint: Path) -> Flask:
    """The page and its /predict endpoint, for one loaded model."""
    app = Flask(__name__)
    large_image_readers = ThreadPoolExecutor(LARGE_IMAGE_READERS, thread_name_prefix="large-image")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_MB * 2**20

    @app.get("/")
    def page() -> str:
        return render_template("draw.html", checkpoint=model_name(checkpoint), served_why=predictor.description,
                               max_upload_mb=MAX_UPLOAD_MB)

    @app.post("/predict")
    def predict() -> tuple:
        upload = request.files.get("image")
        if upload is None:
            return jsonify(error="no image in the request (form field 'image')"), 400
        name = Path(upload.filename or "drawing").name
        data = upload.read()
        try:
            if pixels_of(data) > LARGE_IMAGE_PIXELS:
                return jsonify(large_image_readers.submit(read_upload, data, name, predictor).result()), 200
            return jsonify(read_upload(data, name, predictor)), 200
        except ImageError as error:
            return jsonify(error=str(error), refused=error.refused), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> tuple:
        return jsonify(error=f"file too large (over {MAX_UPLOAD_MB} MB)"), 413

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple:  # the page reads JSON, never an HTML error page
        return jsonify(error=f"{error.code} {error.name}"), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple:
        app.logger.exception("unexpected error")
        return jsonify(error=f"the server could not read this image ({type(error).__name__})"), 500

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw a digit in the browser and see what a trained CCNet reads.")
    parser.add_argument("--checkpoint", default=None, help="model: a checkpoint, or an .onnx/.ts file from mnist.reading.export "
                                                           "(default: the shipped reader)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                            "only; 0.0.0.0 shows it to your network)")
    args = parser.parse_args(argv)
    check_port_free(args.port, args.host)  # the flags first: loading the model takes seconds
    checkpoint = chosen_model(args.checkpoint)
    app = create_app(Predictor(checkpoint), checkpoint)  # a bad checkpoint stops here, before listening
    # waitress: a production WSGI server (pure Python), a real backlog, a bounded number of threads, and deadlines
    # for slow clients (mnist.reading.http_server).
    server = deadline_server(app, args.host, args.port, SERVING_THREADS, BACKLOG, MAX_UPLOAD_MB * 2**20)
    server.application = guarded(app, args.host, server.effective_port)  # the port bound (0 = any free one)
    print(f"draw a digit: http://{args.host}:{server.effective_port}/  (model: {model_name(checkpoint)}; Ctrl-C to stop)",
          flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    run_cli(main)
