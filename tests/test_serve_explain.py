"""The service's heatmap route, in process: the map of an attribute of an upload, a chosen class, and clear 4xx
answers for a bad attribute, class or file, more than one photo, and a model without gradients (ONNX)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashionattr.cli import main
from fashionattr.inference import Predictor, load_predictor
from fashionattr.serve import ServeSettings, create_app
from helpers import TrainedRun


@pytest.fixture(scope="module")
def client(trained_run: TrainedRun) -> Iterator[TestClient]:
    app = create_app(Predictor.from_path(trained_run.run, device="cpu"), None, ServeSettings(max_batch=4))
    with TestClient(app) as local:
        yield local


@pytest.fixture(scope="module")
def photo(trained_run: TrainedRun) -> tuple[str, bytes]:
    path = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[0]
    return path.name, path.read_bytes()


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()["error"]


def test_heatmap_of_the_predicted_class_as_a_png_over_the_letterboxed_photo(client, photo) -> None:
    response = client.post("/v1/explain", params={"attribute": "coat_length"}, files=[("files", photo)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["attribute"] == "coat_length_labels" and body["class"] == body["predicted"]
    assert 0.0 <= body["probability"] <= 1.0 and body["method"] == "layercam"
    assert body["overlay"].startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1]))) as overlay:
        assert overlay.size == (body["size"], body["size"]) == (32, 32)
    predicted = client.post("/v1/predict", files=[("files", photo)]).json()["predictions"][0]
    coat = predicted["attributes"]["coat_length_labels"]  # the head's answer, shown or not
    assert coat["probabilities"] and list(coat["probabilities"])[coat["index"]] == body["predicted"]


def test_heatmap_of_a_chosen_class(client, photo) -> None:
    response = client.post("/v1/explain", params={"attribute": "coat_length_labels", "class": "Knee Length"},
                           files=[("files", photo)])  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["class"] == "Knee Length"


def test_mistakes_are_explained_4xx_answers(client, photo) -> None:
    unknown = client.post("/v1/explain", params={"attribute": "hat_size"}, files=[("files", photo)])
    assert "hat_size" in error_of(unknown, 422)
    message = error_of(client.post("/v1/explain", params={"attribute": "coat_length", "class": "Very Long"},
                                   files=[("files", photo)]), 422)  # fmt: skip
    assert "Knee Length" in message  # the valid classes are listed
    assert "cannot use" in error_of(client.post("/v1/explain", params={"attribute": "coat_length"},
                                                files=[("files", ("notes.jpg", b"not a picture"))]), 422)  # fmt: skip
    error_of(client.post("/v1/explain", params={"attribute": "coat_length"}, files=[("files", photo)] * 2), 413)
    error_of(client.post("/v1/explain", files=[("files", photo)]), 422)  # no attribute
    assert client.get("/healthz").status_code == 200  # and the service carries on


def test_an_onnx_model_cannot_explain(trained_run: TrainedRun, photo, tmp_path: Path) -> None:
    exported = tmp_path / "model.onnx"
    assert main(["export", str(trained_run.run), "--out", str(exported), "--no-verify"]) == 0
    with TestClient(create_app(load_predictor(exported), None, ServeSettings(max_batch=4))) as onnx_client:
        message = error_of(onnx_client.post("/v1/explain", params={"attribute": "coat_length"},
                                            files=[("files", photo)]), 409)  # fmt: skip
        assert "checkpoint" in message
