"""Property-based: experiment files and image files of any shape give a result, or one line naming what is
wrong (UserError: exit 2), never a traceback."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hpo.experiment import SETTINGS, load_experiment_file, resolve_experiment
from mnist.config import KNOBS
from mnist.errors import UserError, run_cli
from mnist.reading.preprocess import ImageError
from mnist.reading.predict import load_image

PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["max_epochs", "1e-3", "asha", "tpe", "cosine", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)
# Keys a user writes: the real ones (most of the time), a knob under train, and typos.
setting_keys = st.one_of(st.sampled_from(sorted(SETTINGS)), st.text(min_size=1, max_size=10))
dimension = st.one_of(
    st.dictionaries(st.sampled_from(["loguniform", "uniform", "randint", "choice", "normal"]),
                    st.lists(scalars, max_size=3), min_size=1, max_size=2),
    values)
space = st.dictionaries(st.one_of(st.sampled_from(sorted(KNOBS)), st.text(max_size=6)), dimension, max_size=4)
train = st.dictionaries(st.one_of(st.sampled_from(sorted(KNOBS)), st.text(max_size=6)), scalars, max_size=3)
experiments = st.fixed_dictionaries({}, optional={"search_space": space, "train": train}).flatmap(
    lambda fixed: st.dictionaries(setting_keys, values, max_size=5).map(lambda rest: {**rest, **fixed}))


def one_line_or_result(work: Callable[[], object], capsys: pytest.CaptureFixture) -> object:
    """What a CLI does with `work`: its result, or (a UserError) exit 2 and one line on stderr, nothing on stdout."""
    result: list = []
    try:
        run_cli(lambda argv: result.append(work()) and None)
    except SystemExit as exit_info:
        out, err = capsys.readouterr()
        if exit_info.code == 0:
            return result[0]
        assert exit_info.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and not out, err
    return None


def finite_yaml(value: object) -> str:
    """YAML text of `value` (NaN and infinities as YAML writes them: .nan, .inf)."""
    return yaml.safe_dump(value, allow_unicode=True)


@PROPERTY_SETTINGS
@given(experiments)
def test_any_experiment_file_resolves_or_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     experiment: dict) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(finite_yaml(experiment), encoding="utf-8")
    resolved = one_line_or_result(lambda: resolve_experiment(load_experiment_file(path), {}, str(path)), capsys)
    if resolved is None:
        return
    # What resolves is what a search can run: checked numbers, a space of known dimensions.
    assert resolved["num_samples"] >= 1 and resolved["max_epochs"] >= 1 and resolved["search_space"]
    for spec in resolved["search_space"].values():
        (kind, bounds), = spec.items()
        assert all(not isinstance(bound, float) or math.isfinite(bound) for bound in bounds)


@PROPERTY_SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_as_an_experiment_file_are_one_line_or_a_result(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                  content: bytes) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_bytes(content)
    one_line_or_result(lambda: resolve_experiment(load_experiment_file(path), {}, str(path)), capsys)


image_modes = st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "LA", "CMYK"])


@st.composite
def image_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """An image file as people and tools write them, or one that is broken: odd sizes and modes, flat or noisy
    pixels, PNG/JPEG/GIF/BMP/TIFF, truncated, or bytes that are no image at all."""
    kind = draw(st.sampled_from(["image", "image", "image", "truncated", "garbage"]))
    if kind == "garbage":
        return draw(st.sampled_from(["x.png", "x.jpg", "x.gif"])), draw(st.binary(max_size=300))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    mode = draw(image_modes)
    fill = draw(st.sampled_from(["flat", "noise", "stroke"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pixels = np.full((height, width), draw(st.integers(0, 255)), np.uint8)
    if fill == "noise":
        pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    elif fill == "stroke":
        pixels[:] = 230
        pixels[height // 4: 3 * height // 4 + 1, max(0, width // 2 - 2): width // 2 + 3] = 20
    image = Image.fromarray(pixels).convert(mode if mode != "I;16" else "I").convert(mode) if mode != "I;16" \
        else Image.fromarray(pixels.astype(np.uint16) * 257)
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF"]))
    if fmt == "JPEG" and image.mode not in ("L", "RGB", "CMYK"):
        image = image.convert("RGB")
    if fmt in ("GIF", "BMP", "PNG") and image.mode in ("I;16", "LA", "CMYK") and not (fmt == "PNG" and
                                                                               image.mode != "CMYK"):
        image = image.convert("L")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    data = buffer.getvalue()
    if kind == "truncated":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    return f"x.{fmt.lower()}", data


@PROPERTY_SETTINGS
@given(image_files())
def test_any_image_file_reads_as_a_digit_or_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        named: tuple[str, bytes]) -> None:
    name, data = named
    path = tmp_path / name
    path.write_bytes(data)
    try:
        load_image(path)
    except ImageError as error:  # predict goes on with the other images: the error names this one
        assert str(path) in str(error)
    read = one_line_or_result(lambda: load_image(path), capsys)
    if read is not None:
        _, digit = read
        assert digit.shape == (28, 28) and digit.dtype == np.uint8


@pytest.mark.parametrize("text", ["[1, 2", "a: [b", "{x: 1}: 2", "- - -\n  :", "\t\tx: 1"])
def test_broken_yaml_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        resolve_experiment(load_experiment_file(path), {}, str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)
