"""Knowing when it does not know: temperature scaling, the "not sure" threshold, where they are stored and used."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist.calibration import calibrate_logits, expected_calibration_error, fit_temperature, unsure_threshold
from mnist.checkpoint import load_checkpoint, save_checkpoint
from mnist.data import MnistData
from mnist.reading.corruptions import set_writers
from mnist.reading.handwriting import read_labels
from mnist.reading.predict import Prediction, Predictor, load_image, main
from tests.helpers import small_sets


def overconfident(count: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model right 80% of the time but nearly always ~100% sure: the case calibration fixes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    read = np.where(rng.random(count) < 0.8, labels, rng.integers(0, 10, count))
    logits = rng.normal(0, 1, (count, 10))
    logits[np.arange(count), read] += 12  # far too sure of whatever it read
    return logits, labels


def test_temperature_scaling_lowers_the_expected_calibration_error_of_an_overconfident_model() -> None:
    logits, labels = overconfident()
    result = calibrate_logits(logits, labels)
    assert result["temperature"] > 2  # softened
    assert result["val_ece_before"] > 0.15 and result["val_ece_after"] < result["val_ece_before"] / 3
    # The same predictions: dividing by T changes confidence, never the ranking.
    assert np.array_equal((logits / result["temperature"]).argmax(1), logits.argmax(1))


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (5000, 10))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in probabilities])  # labels drawn from the model itself
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)
    assert expected_calibration_error(probabilities, labels) < 0.03


def test_the_threshold_keeps_the_sure_answers_within_the_target_risk() -> None:
    confidence = np.linspace(0.3, 1.0, 1000)
    probabilities = np.zeros((1000, 10))
    probabilities[:, 0] = confidence
    probabilities[:, 1:] = ((1 - confidence) / 9)[:, None]
    labels = np.where(confidence < 0.6, 1, 0)  # everything below 0.6 is misread
    threshold = unsure_threshold(probabilities, labels, risk=0.0)
    assert 0.59 < threshold < 0.61
    assert unsure_threshold(probabilities, np.ones(1000, dtype=int), risk=0.0) == 1.0  # never right: never sure
    # Every answer right (or within the risk): no threshold at all, not the lowest confidence that happened to be seen.
    assert unsure_threshold(probabilities, probabilities.argmax(axis=1), risk=0.0) == 0.0
    assert unsure_threshold(np.array([[0.995, 0.005], [0.999, 0.001]]), np.array([0, 0]), risk=0.01) == 0.0


def test_unsure_answers_name_the_two_likeliest_digits() -> None:
    probabilities = np.array([[0.0, 0, 0, 0, 0.45, 0, 0, 0, 0, 0.55], [0.0, 0, 0, 0, 0, 0, 0, 0.99, 0, 0.01]])
    prediction = Prediction(probabilities.argmax(1), probabilities, np.array([True, False]))
    assert prediction.describe(0) == "not sure: 9 or 4" and prediction.describe(1) == "7"


@pytest.mark.slow
def test_training_stores_the_calibration_in_best_pt_and_predict_uses_it(tiny_run: Path, mnist_data: MnistData,
                                                                         tmp_path: Path, capsys) -> None:
    state = load_checkpoint(tiny_run / "best.pt")
    calibration = state["calibration"]
    assert calibration["val_count"] == 400 and calibration["temperature"] > 0
    assert calibration["val_ece_after"] <= calibration["val_ece_before"]
    # predict's --json carries the calibrated probabilities and the flag.
    for index in range(5):
        Image.fromarray(255 - mnist_data.test_images[index]).save(tmp_path / f"d{index}.png")
    main([str(tmp_path), "--checkpoint", str(tiny_run / "best.pt"), "--json"])
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 5 and all(set(a) >= {"digit", "unsure", "probabilities", "top3"} for a in answers)
    predictor = Predictor(tiny_run / "best.pt")
    digits = [np.asarray(Image.open(tmp_path / f"d{i}.png")) for i in range(5)]
    assert predictor.temperature == calibration["temperature"]
    for answer in answers:
        assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert answer["unsure"] == (max(answer["probabilities"]) < calibration["unsure_below"])
    # A checkpoint from before calibration existed reads as before: T = 1, never unsure.
    del state["calibration"]
    save_checkpoint(state, tmp_path / "old.pt")
    old = Predictor(tmp_path / "old.pt")
    assert old.temperature == 1.0 and not old.predict([255 - d for d in digits]).unsure.any()


@pytest.mark.slow
def test_the_field_report_reads_every_set_with_every_model(tiny_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """mnist.reading.field_report on small sets: each set and model in one table; an image refused (no digit)
    is a miss; the accuracy is what predict reads; two models are compared on the same images (McNemar)."""
    from mnist.reading.field_report import main as field_report_main
    from mnist.reading.handwriting import CANVAS_SET

    sets, scans, truth = small_sets(tmp_path)
    other = tmp_path / "other.pt"
    other.write_bytes((tiny_run / "best.pt").read_bytes())
    out = tmp_path / "field_report.json"
    field_report_main([f"first={tiny_run / 'best.pt'}", f"second={other}", "--sets", str(sets), "--out", str(out),
                       "--plots", str(tmp_path / "plots")])
    table = capsys.readouterr().out
    report = json.loads(out.read_text())["sets"]
    assert set(report) == {"first", "second"}
    for label in report:  # a reliability diagram and the confusion matrices of each model over the sets
        for plot in ("reliability_png", "confusion_png"):
            assert Path(report[label].pop(plot)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(report["first"]) == {"scans", "notebook", "drawings", "canvas", "mnist", *set_writers()}
    scans_read = report["first"]["scans"]
    assert scans_read["count"] == 21 and scans_read["refused_share"] == pytest.approx(1 / 21)
    assert report["first"]["notebook"]["count"] == 10 and report["first"]["drawings"]["count"] == 10
    assert report["first"]["canvas"]["count"] == len(read_labels(CANVAS_SET / "report" / "labels.csv"))
    assert report["first"]["mnist"]["count"] == 10000
    # The same model twice: the same answers, no difference to test.
    assert all(report["second"][name]["mcnemar_p_vs_first"] == 1.0 for name in report["second"])
    assert all(report["second"][name]["accuracy"] == report["first"][name]["accuracy"] for name in report["first"])
    # The accuracy is predict's, the refused image a miss.
    predictor = Predictor(tiny_run / "best.pt")
    read = predictor.predict([load_image(scans / f"s{i}.jpg")[1] for i in range(20)]).labels
    assert scans_read["accuracy"] == pytest.approx((read == truth).sum() / 21)
    matrix = np.array(scans_read["confusion_matrix"])  # true digit x digit read, of the 20 images answered
    assert matrix.sum() == 20 and np.trace(matrix) == (read == truth).sum()
    assert "models: [1] first; [2] second" in table  # side by side, the second paired against the first
    low, high = scans_read["accuracy_interval"]
    assert low < scans_read["accuracy"] < high or scans_read["accuracy"] in (0.0, 1.0)
    assert f"| scans | 21 | {100 * scans_read['accuracy']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]" in table
    mean = np.mean([report["first"][name]["accuracy"] for name in set_writers() if name.startswith("corrupt-")])
    assert f"| corruptions: mean | | {100 * mean:.1f}% | {100 * mean:.1f}% |" in table


@pytest.mark.slow
def test_calibration_on_the_real_sets_holds_on_each_and_says_what_it_was_fitted_on(tiny_run: Path,
                                                                                  tmp_path: Path) -> None:
    """mnist.reading.calibrate: one temperature, the threshold that holds on every set's tune half (the highest
    of theirs), written into the checkpoint with the images it was fitted on; what predict then uses."""
    from mnist.reading.calibrate import main as calibrate_main

    sets, _, _ = small_sets(tmp_path)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes((tiny_run / "best.pt").read_bytes())
    calibrate_main([str(checkpoint), "--sets", str(sets), "--risk", "0.05"])
    calibration = load_checkpoint(checkpoint)["calibration"]  # checked as it is read
    fitted_on = calibration["fitted_on"]
    assert set(fitted_on) == {"mnist validation", "scans tune", "notebook tune", "drawings tune",
                              "canvas tune", *(f"{name} tune" for name in set_writers())}
    assert fitted_on["scans tune"] == 20 and fitted_on["notebook tune"] <= 10  # the blank page takes no part
    assert calibration["unsure_below"] == max(calibration["thresholds"].values())
    assert calibration["target_risk"]["scans tune"] == 0.05 and calibration["target_risk"]["mnist validation"] == 0.002
    predictor = Predictor(checkpoint)
    assert (predictor.temperature, predictor.unsure_below) == (calibration["temperature"], calibration["unsure_below"])


@pytest.mark.slow
def test_a_checkpoint_without_a_validation_split_is_calibrated_on_the_real_sets_alone(tiny_run: Path,
                                                                                    tmp_path: Path) -> None:
    """Trained on every training image (best.py --full): no MNIST validation to fit on, so the real sets' tune
    halves alone, and the checkpoint says so."""
    from mnist.reading.calibrate import main as calibrate_main

    state = load_checkpoint(tiny_run / "best.pt")
    state["config"]["val_fraction"] = 0.0
    checkpoint = tmp_path / "full.pt"
    save_checkpoint(state, checkpoint)
    sets, _, _ = small_sets(tmp_path)
    calibrate_main([str(checkpoint), "--sets", str(sets)])
    calibration = load_checkpoint(checkpoint)["calibration"]
    assert set(calibration["fitted_on"]) == {"scans tune", "notebook tune", "drawings tune", "canvas tune",
                                             *(f"{name} tune" for name in set_writers())}
    assert calibration["unsure_below"] == max(calibration["thresholds"].values())
