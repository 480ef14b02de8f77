"""python -m mnist.reading.export: ONNX and TorchScript files that answer as the checkpoint does, and serve the same page."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist.reading import export
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.data import load_mnist
from mnist.errors import UserError
from mnist.reading.export import ExportedModel, PixelsToLogits, export_checkpoint
from mnist.model import ensemble_weights, model_from_checkpoint
from mnist.reading.predict import Predictor
from mnist.reading.serve import create_app
from tests.test_serve import png_of_a_bar, post


@pytest.fixture(scope="module")
def exported(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """tiny_run's best.pt exported in both formats through the CLI: {format: (file, what it printed)}."""
    folder = tmp_path_factory.mktemp("exported")
    files = {}
    for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.ts")):
        out = folder / name
        files[fmt] = out
        assert export.main([str(tiny_run / "best.pt"), "--format", fmt, "--out", str(out)]) == 0
    return files


def reference_logits(checkpoint: Path, images: np.ndarray) -> np.ndarray:
    model = PixelsToLogits(model_from_checkpoint(load_checkpoint(checkpoint), torch.device("cpu"))).eval()
    with torch.inference_mode():
        return model(torch.from_numpy(images[:, None].astype(np.float32) / 255)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.slow
def test_the_exported_file_answers_as_the_checkpoint_for_any_batch(exported: dict, tiny_run: Path, fmt: str) -> None:
    images = load_mnist().test_images[:7]
    expected = reference_logits(tiny_run / "best.pt", images)
    model = ExportedModel(exported[fmt])
    for batch in (images[:1], images):  # exported with a batch of 2: the batch axis is dynamic
        got = model.logits(batch[:, None].astype(np.float32) / 255)
        assert got.shape == (len(batch), 10)
        np.testing.assert_allclose(got, expected[:len(batch)], atol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.slow
def test_the_contract_is_in_the_metadata(exported: dict, tiny_run: Path, fmt: str) -> None:
    state = load_checkpoint(tiny_run / "best.pt")
    metadata = ExportedModel(exported[fmt]).metadata
    assert float(metadata["temperature"]) == pytest.approx(state["calibration"]["temperature"])
    assert float(metadata["unsure_below"]) == pytest.approx(state["calibration"]["unsure_below"])
    assert "(N, 1, 28, 28)" in metadata["input"] and "[0, 1]" in metadata["input"]
    assert metadata["git_commit"] == state["git_commit"]


@pytest.mark.slow
def test_the_cli_prints_the_parity_on_the_test_images(tiny_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert export.main([str(tiny_run / "best.pt"), "--format", "torchscript", "--out", str(tmp_path / "m.ts")]) == 0
    printed = capsys.readouterr().out
    match = re.search(r"([\d,]+)/([\d,]+) identical predictions, max \|logit difference\| ([\d.e+-]+)", printed)
    assert match, printed
    assert match[1] == match[2] == "10,000" and float(match[3]) < 1e-4


@pytest.mark.slow
def test_an_ensemble_exports_as_one_graph(tiny_run: Path, tmp_path: Path) -> None:
    state = load_checkpoint(tiny_run / "best.pt")
    flipped = {name: -value if name == "fc.bias" else value for name, value in state["model"].items()}
    ensemble = {**state, "model": ensemble_weights([state["model"], flipped]), "members": 2}
    save_checkpoint(ensemble, tmp_path / "ensemble.pt")
    images = load_mnist().test_images
    check = export_checkpoint(tmp_path / "ensemble.pt", "onnx", tmp_path / "ensemble.onnx", images[:600])
    assert check == {"images": 600, "max_abs_logit_difference": pytest.approx(0, abs=1e-4), "same_predictions": 600}
    got = ExportedModel(tmp_path / "ensemble.onnx").logits(images[:5, None].astype(np.float32) / 255)
    single = reference_logits(tiny_run / "best.pt", images[:5])
    # The mean of the two members: the weights agree but fc.bias, which cancels out.
    np.testing.assert_allclose(got, single - state["model"]["fc.bias"].numpy(), atol=1e-4)


@pytest.mark.slow
def test_an_export_that_differs_is_not_written(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model.ts"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr(export, "MAX_LOGIT_DIFFERENCE", -1.0)  # no export can pass: the refusal path
    with pytest.raises(UserError, match="differs from .* not written"):
        export_checkpoint(tiny_run / "best.pt", "torchscript", out, load_mnist().test_images[:50])
    assert out.read_bytes() == b"the previous export" and sorted(p.name for p in tmp_path.iterdir()) == ["model.ts"]


@pytest.mark.slow
def test_a_missing_runtime_names_the_extra(monkeypatch: pytest.MonkeyPatch, exported: dict) -> None:
    real_import = importlib.import_module

    def without_onnxruntime(name: str, *args):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_onnxruntime)
    with pytest.raises(UserError, match=r"onnxruntime: pip install -e '\.\[export\]'"):
        ExportedModel(exported["onnx"])


@pytest.mark.parametrize("name", ["notes.onnx", "notes.ts"])
def test_a_file_that_is_not_an_export_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("not a model")
    with pytest.raises(UserError) as refusal:
        Predictor(tmp_path / name)
    assert str(refusal.value).startswith(f"{tmp_path / name}: not ") and "\n" not in str(refusal.value)


@pytest.mark.slow
def test_the_page_serves_the_onnx_file_with_the_same_answers(exported: dict, tiny_run: Path) -> None:
    answers = {}
    for checkpoint in (tiny_run / "best.pt", exported["onnx"]):
        response = post(create_app(Predictor(checkpoint), checkpoint).test_client(), png_of_a_bar())
        assert response.status_code == 200
        answers[checkpoint.suffix] = response.get_json()
    assert answers[".onnx"]["digit"] == answers[".pt"]["digit"]
    assert [t["digit"] for t in answers[".onnx"]["top3"]] == [t["digit"] for t in answers[".pt"]["top3"]]
    for onnx, pt in zip(answers[".onnx"]["top3"], answers[".pt"]["top3"]):
        assert onnx["probability"] == pytest.approx(pt["probability"], abs=1e-4)


def test_out_must_not_be_the_checkpoint(tiny_run: Path) -> None:
    checkpoint = str(tiny_run / "best.pt")
    with pytest.raises(UserError, match="is the checkpoint itself"):
        export.main([checkpoint, "--format", "torchscript", "--out", checkpoint])
