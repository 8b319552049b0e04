"""ONNX export: a trained model as one self-contained `.onnx` file. Imports PyTorch and onnx, nothing that runs it.

The exported graph takes uint8 letterboxed images (N,3,S,S) and does everything else inside: normalisation,
every backbone and head, softmax, and the unit-length embedding. Schema, preprocessing and model spec travel
in the file's `metadata_props`, so the `.onnx` file alone is enough to serve (`inference.onnx_backend` runs it).
A per-attribute folder exports as one graph holding all its models (one output per attribute), so it serves
exactly like a multitask model.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashionattr.errors import UserError
from fashionattr.inference.onnx_format import (
    EMBEDDING_OUTPUT,
    FORMAT,
    FORMAT_VERSION,
    META_FORMAT,
    META_PREPROCESSING,
    META_SCHEMA,
    META_SPEC,
    applicability_output,
    input_name,
)
from fashionattr.inference.torch_backend import (
    LoadedModel,
    distinct_inputs,
    joint_embedding,
    load_models,
    model_outputs,
)
from fashionattr.io import atomic_write_bytes, json_text

DEFAULT_OPSET = 17
MAX_ONNX_BYTES = 2_000_000_000
"""A single ONNX protobuf file cannot exceed 2 GB; weights beyond that would need external data files."""


class ServingGraph(nn.Module):
    """Every model of a predictor as one module: uint8 batches in, probabilities per attribute and embedding out.

    Inputs follow `inputs` (one letterboxed batch per distinct preprocessing); outputs follow `attributes`, then
    the embedding. It runs `model_outputs`, the same code the PyTorch backend runs, so the two agree.
    """

    def __init__(self, models: Sequence[LoadedModel], attributes: Sequence[str]) -> None:
        super().__init__()
        self.loaded = list(models)
        self.networks = nn.ModuleList(m.model for m in self.loaded)
        self.deciders = nn.ModuleList(m.applicability for m in self.loaded if m.applicability is not None)
        self.inputs = distinct_inputs([m.preprocessing for m in self.loaded])
        self.keys = [p.pixel_key for p in self.inputs]
        self.attributes = list(attributes)

    def input_names(self) -> list[str]:
        return [input_name(p, single=len(self.inputs) == 1) for p in self.inputs]

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        probs: dict[str, torch.Tensor] = {}
        applies: dict[str, torch.Tensor] = {}
        features = []
        for loaded in self.loaded:  # `self.networks` registers the same modules, for tracing
            batch = images[self.keys.index(loaded.preprocessing.pixel_key)]
            pooled, model_probs, scores = model_outputs(loaded, batch)
            features.append(pooled)
            probs.update(model_probs)
            applies.update(scores)
        return (*(probs[name] for name in self.attributes), joint_embedding(features),
                *(applies[name] for name in self.attributes))  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote, for the command to report."""

    path: Path
    attributes: list[str]
    inputs: list[dict[str, Any]]
    embedding_size: int
    size_bytes: int


def export_onnx(
    source: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, calibrated: bool = True
) -> ExportResult:
    """Export a checkpoint, run directory or per-attribute folder to one `.onnx` file with a dynamic batch axis.

    With `calibrated` the graph divides each attribute's logits by its calibration temperature before the softmax,
    as the PyTorch backend does; without, it gives the network's raw probabilities.
    """
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"{out}: the ONNX file name must end in .onnx")
    models, schema = load_models(source, "cpu", calibrated=calibrated)
    attributes = [a for a in schema.names if any(a in m.attributes for m in models)]
    graph = ServingGraph(models, attributes).eval()
    _check_size(graph, source)
    samples = tuple(_sample_batch(p.img_size, batch=2) for p in graph.inputs)
    with torch.no_grad():
        embedding_size = int(graph(*samples)[len(attributes)].shape[1])
    model = onnx.load_model_from_string(_trace(graph, samples, opset))
    inputs = _input_metadata(graph)
    metadata = {
        META_FORMAT: {"format": FORMAT, "version": FORMAT_VERSION},
        META_SCHEMA: schema.to_dict(),
        META_PREPROCESSING: {"inputs": inputs},
        META_SPEC: _spec_metadata(graph, embedding_size),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json_text(value, indent=None)
    model.producer_name = "fashionattr"
    model.doc_string = f"fashionattr attribute recognition exported from {source}: uint8 letterboxed images in"
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(out, data)
    return ExportResult(out, attributes, inputs, embedding_size, len(data))


def _check_size(graph: nn.Module, source: str | Path) -> None:
    total = sum(t.numel() * t.element_size() for t in [*graph.parameters(), *graph.buffers()])
    if total > MAX_ONNX_BYTES:
        raise UserError(
            f"{source}: the weights take {total / 1e9:.1f} GB, over ONNX's 2 GB single-file limit; export the "
            "per-attribute run directories one at a time instead"
        )


def _sample_batch(size: int, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(size)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def _trace(graph: ServingGraph, samples: tuple[torch.Tensor, ...], opset: int) -> bytes:
    """The legacy TorchScript exporter: it needs no onnxscript and handles timm's CNNs with a dynamic batch."""
    outputs = [*graph.attributes, EMBEDDING_OUTPUT, *(applicability_output(a) for a in graph.attributes)]
    names = [*graph.input_names(), *outputs]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The legacy exporter writes to any file object; its type hints only admit paths.
            torch.onnx.export(
                graph, samples, buffer, input_names=graph.input_names(),  # type: ignore[arg-type]
                output_names=outputs, dynamic_axes={n: {0: "batch"} for n in names},
                opset_version=opset, do_constant_folding=True, dynamo=False,
            )  # fmt: skip
    except (ValueError, torch.onnx.errors.OnnxExporterError) as exc:
        raise UserError(f"ONNX export failed at opset {opset}: {str(exc).splitlines()[0]}") from None
    return buffer.getvalue()


def _input_metadata(graph: ServingGraph) -> list[dict[str, Any]]:
    constant = {"dtype": "uint8", "layout": "NCHW", "resize": "letterbox", "normalization": "inside the graph"}
    inputs = []
    for name, p in zip(graph.input_names(), graph.inputs, strict=True):
        inputs.append({"name": name, "img_size": p.img_size, "interpolation": p.interpolation,
                       "pad_value": p.pad_value, "preprocessing": p.to_dict(), **constant})  # fmt: skip
    return inputs


def _spec_metadata(graph: ServingGraph, embedding_size: int) -> dict[str, Any]:
    names = graph.input_names()
    return {
        "attributes": graph.attributes,
        "outputs": {a: "probabilities (N, classes), softmax in schema class order" for a in graph.attributes},
        "applicability_outputs": {a: applicability_output(a) for a in graph.attributes},
        "embedding": EMBEDDING_OUTPUT,
        "embedding_size": embedding_size,
        "models": [
            {
                "source": str(m.source),
                "spec": getattr(m.model, "spec", {}),
                "attributes": m.attributes,
                "preprocessing": m.preprocessing.to_dict(),
                "trained_with_flip": m.trained_with_flip,
                "temperatures": m.temperatures,
                "tta_temperatures": m.tta_temperatures,
                "calibrated": bool(m.temperatures),
                "applicability": m.applicability.describe() if m.applicability is not None else None,
                "input": names[graph.keys.index(m.preprocessing.pixel_key)],
            }
            for m in graph.loaded
        ],
    }
