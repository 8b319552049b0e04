"""The int8 ONNX model: `export --int8` writes a statically quantized copy, calibrated on the run's validation
images, that carries the fp32 graph's metadata and runs wherever an .onnx file does (predict, catalog index,
serve), answering like the fp32 graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionattr.catalog import Catalog, index_catalog
from fashionattr.cli import main
from fashionattr.inference import load_predictor
from fashionattr.inference.onnx_format import META_SPEC, METADATA_KEYS
from fashionattr.inference.quantize import folder_images, int8_agreement, run_validation_images
from helpers import TrainedRun, make_photo_folder


@pytest.fixture(scope="module")
def int8(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("int8")
    fp32, small = folder / "model.onnx", folder / "model.int8.onnx"
    assert main(["export", str(trained_run.run), "--out", str(fp32), "--int8", str(small),
                 "--calibration-count", "24"]) == 0  # fmt: skip
    return fp32, small


def metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_int8_graph_carries_the_metadata_and_says_how_it_was_made(int8, capsys):
    fp32, small = int8
    full, quantized = metadata(fp32), metadata(small)
    assert set(quantized) == set(full) >= set(METADATA_KEYS)
    for key in full:
        if key != META_SPEC:
            assert quantized[key] == full[key]
    spec, fp32_spec = json.loads(quantized[META_SPEC]), json.loads(full[META_SPEC])
    assert spec.pop("quantization")["calibration_images"] == 24
    assert spec == fp32_spec
    assert small.stat().st_size < fp32.stat().st_size / 2  # int8 weights


def test_int8_answers_agree_with_fp32(trained_run, int8):
    """Parity, as for the fp32 export against PyTorch, with the tolerance int8 needs: every class probability
    within 0.05 of the fp32 graph's, and the same top class for at least 90% of the answers on validation images
    the calibration did not see (the tests' model is trained for two steps, so its answers are close calls)."""
    fp32, small = int8
    held_out = run_validation_images(trained_run.run)[24:]
    agreement = int8_agreement(fp32, small, held_out)
    assert agreement.images == len(held_out) >= 10
    assert agreement.largest_difference <= 0.05
    assert agreement.top_class >= 0.9


def test_predict_catalog_index_and_serve_run_the_int8_file(trained_run, int8, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from fashionattr.serve import create_app

    _, small = int8
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    assert main(["predict", str(small), str(photos / "coat_length"), "--format", "json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 3 and set(answers[0]["attributes"]) == set(trained_run_attributes(trained_run))
    predictor = load_predictor(small, device="cpu")
    report = index_catalog(tmp_path / "catalog.sqlite", photos, small, predictor=predictor, workers=0,
                           progress=False)  # fmt: skip
    assert report.added == 9
    assert len(Catalog(tmp_path / "catalog.sqlite").similar(1, k=3)) == 3
    with TestClient(create_app(predictor)) as client:
        photo = sorted((photos / "pant_length").iterdir())[0]
        response = client.post("/v1/predict", files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))])
        assert response.status_code == 200, response.text


def trained_run_attributes(trained_run: TrainedRun) -> list[str]:
    return load_predictor(trained_run.run, device="cpu").attributes


def test_calibration_images_must_exist(tmp_path):
    from fashionattr.errors import UserError

    with pytest.raises(UserError, match="no such folder"):
        folder_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        folder_images(tmp_path / "empty")
