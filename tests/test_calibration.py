"""Calibration: temperatures fitted after training, kept in the checkpoint and the ONNX graph, ECE falling on an
over-confident model, raw probabilities on request, and checkpoints older than calibration still loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionattr.calibration import apply_temperature, calibrate, expected_calibration_error, fit_temperature
from fashionattr.checkpoint import load_checkpoint, save_checkpoint
from fashionattr.cli import main
from fashionattr.distributed import DistributedContext
from fashionattr.evaluation import Evaluation, evaluate_checkpoint
from fashionattr.inference import Predictor, load_predictor
from fashionattr.metrics import AttributePredictions
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI
from helpers import TrainedRun

QUICK = ["--workers", "0", "--batch-size", "4"]
OVERCONFIDENCE = 25.0


def simulated(sharpen: float, count: int = 4000, classes: int = 5, seed: int = 0) -> AttributePredictions:
    """Labels drawn from softmax(z); the 'model' says softmax(sharpen * z): over-confident when sharpen > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (count, classes))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    targets = np.array([rng.choice(classes, p=p) for p in truth])
    said = np.exp(sharpen * logits)
    return AttributePredictions(said / said.sum(1, keepdims=True), targets, np.zeros((count, classes), dtype=bool))


def test_temperature_undoes_overconfidence_and_keeps_every_argmax() -> None:
    overconfident = simulated(sharpen=4.0)
    temperature = fit_temperature(overconfident)
    assert temperature == pytest.approx(4.0, rel=0.15)
    scaled = apply_temperature(overconfident.probs, temperature)
    assert (scaled.argmax(1) == overconfident.probs.argmax(1)).all()
    before = expected_calibration_error(overconfident)
    after = expected_calibration_error(AttributePredictions(scaled, overconfident.targets, overconfident.maybe))
    assert before > 0.15 and after < 0.03, (before, after)
    underconfident = simulated(sharpen=0.4)
    assert fit_temperature(underconfident) < 0.6  # sharpened, not only softened


def test_calibrate_reports_scores_before_and_after_with_bp_unchanged() -> None:
    predictions = {"skirt_length_labels": simulated(4.0, classes=6, seed=1), "neck_design_labels": simulated(0.5)}
    result = calibrate(FASHIONAI, predictions).to_dict()
    assert set(result["temperatures"]) == set(predictions)
    assert result["before"]["basic_precision"] == result["after"]["basic_precision"]
    for entry in result["attributes"].values():
        assert entry["ece_after"] < entry["ece_before"]
        assert sum(entry["reliability_after"]["counts"]) == entry["count"]


def test_training_calibrates_the_best_checkpoint(trained_run: TrainedRun) -> None:
    run = RunDir(trained_run.run)
    temperatures = load_checkpoint(run.best)["temperatures"]
    assert set(temperatures) == set(FASHIONAI.names) and all(t > 0 for t in temperatures.values())
    record = json.loads(run.calibration.read_text())
    assert record["temperatures"] == pytest.approx(temperatures)
    assert run.reliability_plot.is_file()
    report = run.report.read_text()
    assert "## Calibration" in report and "reliability.png" in report


@pytest.fixture(scope="module")
def overconfident_run(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A copy of the trained run whose heads say everything 25 times louder, calibrated by `fashionattr calibrate`."""
    run = RunDir(tmp_path_factory.mktemp("overconfident") / "run")
    shutil.copytree(trained_run.run, run.path)
    payload = load_checkpoint(run.best)
    payload.pop("temperatures")
    for key, value in payload["model"].items():
        if key.startswith("heads."):
            payload["model"][key] = value * OVERCONFIDENCE
    save_checkpoint(run.best, payload)
    run.last.unlink()
    assert main(["calibrate", str(run.path), "--device", "cpu", *QUICK]) == 0
    return run


def test_calibrate_command_lowers_the_calibration_error_of_an_overconfident_model(overconfident_run: RunDir) -> None:
    record = json.loads(overconfident_run.calibration.read_text())
    for name, entry in record["attributes"].items():
        assert entry["temperature"] > 3, name
    # Five validation images an attribute: one attribute's ECE is noise, their mean is not.
    mean_before = np.mean([e["ece_before"] for e in record["attributes"].values()])
    mean_after = np.mean([e["ece_after"] for e in record["attributes"].values()])
    assert mean_after < mean_before / 2, (mean_before, mean_after)
    assert record["before"]["basic_precision"] == record["after"]["basic_precision"]
    assert "## Calibration" in overconfident_run.report.read_text()


def test_predictions_are_calibrated_unless_asked_for_raw(overconfident_run: RunDir, trained_run: TrainedRun) -> None:
    image = sorted((trained_run.data / "Images" / "skirt_length_labels").glob("*.jpg"))[0]
    calibrated = Predictor.from_path(overconfident_run.path, device="cpu")
    raw = Predictor.from_path(overconfident_run.path, device="cpu", calibrated=False)
    temperatures = load_checkpoint(overconfident_run.best)["temperatures"]
    batches = calibrated.load(image)
    with_t, _ = calibrated.probabilities([b.unsqueeze(0) for b in batches])
    without_t, _ = raw.probabilities([b.unsqueeze(0) for b in batches])
    for name, probs in without_t.items():
        expected = apply_temperature(probs, temperatures[name])
        np.testing.assert_allclose(with_t[name], expected, atol=1e-5)
        assert with_t[name].argmax() == probs.argmax()
        assert with_t[name].max() < probs.max()


def test_predict_command_shows_raw_probabilities_on_request(overconfident_run: RunDir, trained_run: TrainedRun, capsys):
    image = str(sorted((trained_run.data / "Images" / "neck_design_labels").glob("*.jpg"))[0])
    confidences = {}
    for name, extra in (("calibrated", []), ("raw", ["--no-calibration"])):
        assert main(["predict", str(overconfident_run.path), image, "--format", "json", *QUICK, *extra]) == 0
        [answer] = json.loads(capsys.readouterr().out)
        confidences[name] = {a: r["confidence"] for a, r in answer["attributes"].items()}
    for attribute, raw in confidences["raw"].items():
        assert confidences["calibrated"][attribute] < raw, attribute  # T > 3: softer


def test_checkpoints_older_than_calibration_answer_with_raw_probabilities(trained_run: TrainedRun, tmp_path: Path):
    payload = load_checkpoint(trained_run.checkpoint)
    payload.pop("temperatures")
    old = tmp_path / "old.pt"
    save_checkpoint(old, payload)
    image = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
    old_predictor = Predictor.from_path(old, device="cpu")
    raw = Predictor.from_path(trained_run.checkpoint, device="cpu", calibrated=False)
    assert old_predictor.models[0].temperatures == {}
    first = old_predictor.predict_letterboxed([old_predictor.load(image)])[0]
    second = raw.predict_letterboxed([raw.load(image)])[0]
    for name, result in first.attributes.items():
        assert result.probabilities == pytest.approx(second.attributes[name].probabilities, abs=1e-6)


def test_onnx_graph_carries_the_temperatures(overconfident_run: RunDir, tmp_path: Path, capsys) -> None:
    calibrated_onnx, raw_onnx = tmp_path / "calibrated.onnx", tmp_path / "raw.onnx"
    assert main(["export", str(overconfident_run.path), "--out", str(calibrated_onnx)]) == 0
    assert main(["export", str(overconfident_run.path), "--out", str(raw_onnx), "--no-calibration"]) == 0
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for onnx_file, calibrated in ((calibrated_onnx, True), (raw_onnx, False)):
        torch_probs, _ = Predictor.from_path(overconfident_run.path, device="cpu", calibrated=calibrated).probabilities(
            [images]
        )
        onnx_probs, _ = load_predictor(onnx_file).probabilities([images])
        for name in FASHIONAI.names:
            np.testing.assert_allclose(onnx_probs[name], torch_probs[name], atol=1e-4)
    capsys.readouterr()
    photo = next((overconfident_run.path / "plots").glob("*.png"))
    assert main(["predict", str(calibrated_onnx), str(photo), "--no-calibration", *QUICK]) == 2
    assert "export --no-calibration" in capsys.readouterr().err


def test_evaluation_scores_raw_or_calibrated_with_the_same_accuracy(overconfident_run: RunDir) -> None:
    context = DistributedContext()
    calibrated, raw = (evaluate_checkpoint(overconfident_run.path, context, workers=0, calibrated=flag)
                       for flag in (True, False))  # fmt: skip
    assert calibrated.scores.basic_precision == raw.scores.basic_precision

    def mean_error(result: Evaluation) -> float:
        return float(np.mean([expected_calibration_error(p) for p in result.predictions.values()]))

    assert mean_error(calibrated) < mean_error(raw) / 2


def test_each_mode_is_calibrated_in_its_own_mode_and_keeps_its_argmax(trained_run) -> None:
    """Single passes use the single-pass temperatures, flip averaging averages raw answers and applies its own."""
    from fashionattr.checkpoint import load_checkpoint
    from fashionattr.engine import tempered

    payload = load_checkpoint(trained_run.checkpoint)
    assert set(payload["temperatures"]) == set(payload["temperatures_tta"]) == set(payload["attributes"])
    images = sorted((trained_run.data / "Images").rglob("*.jpg"))[::9][:6]
    for tta in (False, True):
        calibrated = Predictor.from_path(trained_run.run, device="cpu", tta=tta)
        raw = Predictor.from_path(trained_run.run, device="cpu", tta=tta, calibrated=False)
        batch = [torch.stack([calibrated.load(path)[0] for path in images])]
        with_t, _ = calibrated.probabilities(batch)
        without_t, _ = raw.probabilities(batch)
        key = "temperatures_tta" if tta else "temperatures"
        expected = tempered({n: torch.from_numpy(v) for n, v in without_t.items()}, payload[key])
        for name in with_t:
            np.testing.assert_array_equal(with_t[name].argmax(axis=1), without_t[name].argmax(axis=1))
            np.testing.assert_allclose(with_t[name], expected[name].numpy(), atol=1e-5)
