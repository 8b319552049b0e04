"""ONNX export: a self-describing file, ONNX Runtime matching PyTorch, and predicting with `--backend onnx`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from fashionattr.cli import main
from fashionattr.errors import UserError
from fashionattr.inference import Predictor, load_predictor
from fashionattr.inference.onnx_backend import OnnxBackend
from fashionattr.inference.onnx_format import META_PREPROCESSING, META_SCHEMA, META_SPEC
from fashionattr.schema import FASHIONAI, Schema
from helpers import PER_ATTRIBUTE, TrainedRun

TOLERANCE = 1e-4
QUICK = ["--workers", "0", "--batch-size", "3"]


@pytest.fixture(scope="module")
def exported(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(trained_run.run), "--out", str(path)]) == 0
    return path


def some_images(data: Path, count: int) -> list[Path]:
    return sorted((data / "Images").rglob("*.jpg"))[::37][:count]


def max_difference(a: Predictor, b: Predictor, images: list[Path]) -> tuple[float, float]:
    """Largest probability and embedding differences between two predictors on the same files, in one batch."""
    first = a.predict_letterboxed([a.load(p) for p in images], embed=True)
    second = b.predict_letterboxed([b.load(p) for p in images], embed=True)
    probability = max(
        abs(x.attributes[name].probabilities[c] - y.attributes[name].probabilities[c])
        for x, y in zip(first, second, strict=True)
        for name in x.attributes
        for c in x.attributes[name].probabilities
    )
    # The decision which attributes apply travels in the graph too.
    probability = max(probability, *(abs(x.attributes[name].applicability - y.attributes[name].applicability)
                                     for x, y in zip(first, second, strict=True) for name in x.attributes))  # fmt: skip
    embedding = max(float(np.abs(x.embedding - y.embedding).max()) for x, y in zip(first, second, strict=True))
    return probability, embedding


def test_file_carries_schema_preprocessing_and_spec(exported, capsys):
    model = onnx.load(str(exported))
    metadata = {entry.key: json.loads(entry.value) for entry in model.metadata_props}
    assert Schema.from_dict(metadata[META_SCHEMA]).names == FASHIONAI.names
    [entry] = metadata[META_PREPROCESSING]["inputs"]
    assert entry["name"] == "images" and entry["img_size"] == 32 and entry["dtype"] == "uint8"
    assert metadata[META_SPEC]["models"][0]["spec"]["arch"] == "test_resnet"
    [graph_input] = model.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    applicability = [f"{name}.applicability" for name in FASHIONAI.names]
    assert [o.name for o in model.graph.output] == [*FASHIONAI.names, "embedding", *applicability]


def test_onnx_runtime_matches_pytorch_at_batch_1_and_3(trained_run, exported):
    torch_predictor = Predictor.from_path(trained_run.run, device="cpu")
    onnx_predictor = load_predictor(exported)
    assert isinstance(onnx_predictor.backend, OnnxBackend)
    assert onnx_predictor.attributes == torch_predictor.attributes and onnx_predictor.inputs == torch_predictor.inputs
    images = some_images(trained_run.data, 4)
    for batch in (images[:1], images[1:4]):
        probability, embedding = max_difference(torch_predictor, onnx_predictor, batch)
        assert probability <= TOLERANCE and embedding <= TOLERANCE

    flipped = [
        Predictor.from_path(trained_run.run, device="cpu", tta=True),
        load_predictor(exported, tta=True),
    ]
    assert max_difference(*flipped, images[:3])[0] <= TOLERANCE
    assert onnx_predictor.describe()["models"][0]["backend"] == "onnx"


def test_predict_with_the_onnx_backend(trained_run, exported, tmp_path, capsys):
    files = [str(p) for p in sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[:3]]
    args = [*files, "--format", "jsonl", "--attributes", "coat_length", *QUICK]
    assert main(["predict", str(exported), "--backend", "onnx", *args]) == 0
    from_onnx = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", str(trained_run.run), *args]) == 0
    from_torch = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(from_onnx) == len(from_torch) == len(files)
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert a["source"] == b["source"]
        pa, pb = a["attributes"]["coat_length_labels"], b["attributes"]["coat_length_labels"]
        assert np.abs(np.array(list(pa["probabilities"].values())) - list(pb["probabilities"].values())).max() <= 1e-4


def test_per_attribute_folder_exports_as_one_graph(trained_per_attribute_run, tmp_path, capsys):
    path = tmp_path / "per-attribute.onnx"
    assert main(["export", str(trained_per_attribute_run.run), "--out", str(path)]) == 0
    assert "largest probability difference" in capsys.readouterr().out
    onnx_predictor = load_predictor(path)
    assert onnx_predictor.attributes == PER_ATTRIBUTE
    assert len(onnx_predictor.describe()["models"]) == 2
    torch_predictor = Predictor.from_path(trained_per_attribute_run.run, device="cpu")
    probability, embedding = max_difference(
        torch_predictor, onnx_predictor, some_images(trained_per_attribute_run.data, 3)
    )
    assert probability <= TOLERANCE and embedding <= TOLERANCE


def test_clear_errors_for_wrong_files_and_backends(trained_run, tmp_path, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(UserError, match="not a loadable ONNX model"):
        load_predictor(garbage)
    with pytest.raises(UserError, match="fashionattr export"):
        load_predictor(trained_run.run, backend="onnx")
    with pytest.raises(UserError, match="not found"):
        load_predictor(tmp_path / "missing.onnx")
    assert main(["export", str(trained_run.run), "--out", str(tmp_path / "model.bin")]) == 2
    assert ".onnx" in capsys.readouterr().err
