"""ONNX export and the ONNX Runtime backend: a trained model as one self-contained `.onnx` file.

The exported graph takes uint8 letterboxed images (N,3,S,S) and does everything else inside: normalisation,
every backbone and head, softmax, and the unit-length embedding. Schema, preprocessing and model spec travel
in the file's `metadata_props`, so the `.onnx` file alone is enough to serve. A per-attribute folder exports
as one graph holding all its models (one output per attribute), so it serves exactly like a multitask model.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fashionattr.data.transforms import PAD_VALUE
from fashionattr.errors import UserError
from fashionattr.inference import LoadedModel, Predictor, joint_embedding, load_models, model_outputs
from fashionattr.io import atomic_write_bytes
from fashionattr.schema import Schema

FORMAT = "fashionattr-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
EMBEDDING_OUTPUT = "embedding"
MAX_ONNX_BYTES = 2_000_000_000
"""A single ONNX protobuf file cannot exceed 2 GB; weights beyond that would need external data files."""

META_FORMAT = "fashionattr.format"
META_SCHEMA = "fashionattr.schema"
META_PREPROCESSING = "fashionattr.preprocessing"
META_SPEC = "fashionattr.spec"


class ServingGraph(nn.Module):
    """Every model of a predictor as one module: uint8 batches in, probabilities per attribute and embedding out.

    Inputs follow `sizes` (one letterboxed batch per distinct side and resampling); outputs follow `attributes`,
    then the embedding. It runs `model_outputs`, the same code the PyTorch backend runs, so the two agree.
    """

    def __init__(self, models: Sequence[LoadedModel], attributes: Sequence[str]) -> None:
        super().__init__()
        self.loaded = list(models)
        self.networks = nn.ModuleList(m.model for m in self.loaded)
        self.sizes = sorted({(m.preprocessing.img_size, m.preprocessing.interpolation) for m in self.loaded})
        self.attributes = list(attributes)

    def input_names(self) -> list[str]:
        if len(self.sizes) == 1:
            return ["images"]
        return [f"images_{size}_{interpolation}" for size, interpolation in self.sizes]

    def forward(self, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        probs: dict[str, torch.Tensor] = {}
        features = []
        for loaded, network in zip(self.loaded, self.networks, strict=True):
            batch = images[self.sizes.index((loaded.preprocessing.img_size, loaded.preprocessing.interpolation))]
            pooled, model_probs = model_outputs(network, loaded.preprocessing, batch)
            features.append(pooled)
            probs.update(model_probs)
        return (*(probs[name] for name in self.attributes), joint_embedding(features))


@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote, for the command to report."""

    path: Path
    attributes: list[str]
    inputs: list[dict[str, Any]]
    embedding_size: int
    size_bytes: int
    max_difference: float | None
    """Largest absolute probability difference between PyTorch and ONNX Runtime on random images (None: unchecked)."""


def export_onnx(source: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, verify: bool = True) -> ExportResult:
    """Export a checkpoint, run directory or per-attribute folder to one `.onnx` file with a dynamic batch axis."""
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"{out}: the ONNX file name must end in .onnx")
    models, schema = load_models(source, "cpu")
    attributes = [a for a in schema.names if any(a in m.attributes for m in models)]
    graph = ServingGraph(models, attributes).eval()
    _check_size(graph, source)
    samples = tuple(_sample_batch(size, batch=2) for size, _ in graph.sizes)
    with torch.no_grad():
        embedding_size = int(graph(*samples)[-1].shape[1])
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
        entry.key, entry.value = key, json.dumps(value)
    model.producer_name = "fashionattr"
    model.doc_string = f"fashionattr attribute recognition exported from {source}: uint8 letterboxed images in"
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(out, data)
    difference = _max_difference(graph, out, samples) if verify else None
    return ExportResult(out, attributes, inputs, embedding_size, len(data), difference)


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
    names = [*graph.input_names(), *graph.attributes, EMBEDDING_OUTPUT]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The legacy exporter writes to any file object; its type hints only admit paths.
            torch.onnx.export(
                graph, samples, buffer, input_names=graph.input_names(),  # type: ignore[arg-type]
                output_names=[*graph.attributes, EMBEDDING_OUTPUT], dynamic_axes={n: {0: "batch"} for n in names},
                opset_version=opset, do_constant_folding=True, dynamo=False,
            )  # fmt: skip
    except (ValueError, torch.onnx.errors.OnnxExporterError) as exc:
        raise UserError(f"ONNX export failed at opset {opset}: {str(exc).splitlines()[0]}") from None
    return buffer.getvalue()


def _input_metadata(graph: ServingGraph) -> list[dict[str, Any]]:
    constant = {"dtype": "uint8", "layout": "NCHW", "resize": "letterbox", "pad_value": PAD_VALUE,
                "normalization": "inside the graph"}  # fmt: skip
    return [
        {"name": name, "img_size": size, "interpolation": interpolation, **constant}
        for name, (size, interpolation) in zip(graph.input_names(), graph.sizes, strict=True)
    ]


def _spec_metadata(graph: ServingGraph, embedding_size: int) -> dict[str, Any]:
    names = graph.input_names()
    return {
        "attributes": graph.attributes,
        "outputs": {a: "probabilities (N, classes), softmax in schema class order" for a in graph.attributes},
        "embedding": EMBEDDING_OUTPUT,
        "embedding_size": embedding_size,
        "models": [
            {
                "source": str(m.source),
                "spec": getattr(m.model, "spec", {}),
                "attributes": m.attributes,
                "preprocessing": m.preprocessing.to_dict(),
                "input": names[graph.sizes.index((m.preprocessing.img_size, m.preprocessing.interpolation))],
            }
            for m in graph.loaded
        ],
    }


def _max_difference(graph: ServingGraph, path: Path, samples: tuple[torch.Tensor, ...]) -> float:
    """Run the file in ONNX Runtime next to PyTorch; export bugs show up as numbers, not as silent wrong tags."""
    session = _session(path, "cpu")
    feed = {name: sample.numpy() for name, sample in zip(graph.input_names(), samples, strict=True)}
    onnx_outputs = session.run(graph.attributes, feed)
    with torch.no_grad():
        torch_outputs = graph(*samples)
    return max(float(np.abs(o - t.numpy()).max()) for o, t in zip(onnx_outputs, torch_outputs, strict=False))


def _session(path: str | Path, device: str) -> Any:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise UserError(f"--device {device}: this onnxruntime has no CUDA support (providers: {', '.join(available)})")
    use_cuda = (device == "auto" or device.startswith("cuda")) and "CUDAExecutionProvider" in available
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise UserError(f"{path}: not a loadable ONNX model: {str(exc).splitlines()[0]}") from None


def _metadata(path: Path, session: Any) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map
    if META_FORMAT not in raw:
        raise UserError(f"{path}: an ONNX model without fashionattr metadata; export it with `fashionattr export`")
    try:
        parsed = {key: json.loads(raw[key]) for key in (META_FORMAT, META_SCHEMA, META_PREPROCESSING, META_SPEC)}
    except (KeyError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: damaged fashionattr metadata ({exc}); export the model again") from None
    version = parsed[META_FORMAT].get("version", 0)
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: exported by a newer fashionattr (format {version}); upgrade")
    return parsed


class OnnxBackend:
    """Runs an exported graph in ONNX Runtime; schema and preprocessing come from the file itself."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = Path(path)
        self.session = _session(self.path, device)
        metadata = _metadata(self.path, self.session)
        self.schema = Schema.from_dict(metadata[META_SCHEMA], source=f"{self.path} (schema)")
        inputs = metadata[META_PREPROCESSING]["inputs"]
        self.input_names = [item["name"] for item in inputs]
        self.sizes = [(int(item["img_size"]), str(item["interpolation"])) for item in inputs]
        self.spec = metadata[META_SPEC]
        self.attributes = list(self.spec["attributes"])
        self.device = torch.device("cpu")  # inputs and outputs are host arrays whatever the provider

    def run(
        self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        feed = {name: batch.cpu().numpy() for name, batch in zip(self.input_names, batches, strict=True)}
        wanted = [a for a in self.attributes if a in attributes]
        names = wanted + ([EMBEDDING_OUTPUT] if embed else [])
        if not names:
            return {}, None
        outputs = dict(zip(names, self.session.run(names, feed), strict=True))
        if tta and wanted:
            flipped = {name: np.ascontiguousarray(array[..., ::-1]) for name, array in feed.items()}
            for name, value in zip(wanted, self.session.run(wanted, flipped), strict=True):
                outputs[name] = (outputs[name] + value) / 2
        return {name: outputs[name] for name in wanted}, outputs.get(EMBEDDING_OUTPUT)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "source": str(self.path),
                "backend": "onnx",
                "exported_from": model["source"],
                "arch": model["spec"].get("arch"),
                "attributes": model["attributes"],
                "preprocessing": model["preprocessing"],
            }
            for model in self.spec["models"]
        ]


class OnnxPredictor(Predictor):
    """A `Predictor` backed by ONNX Runtime: same results, thresholds, streaming and TTA, no PyTorch model."""

    @classmethod
    def from_path(cls, path: str | Path, device: str = "auto", **kwargs: Any) -> OnnxPredictor:
        backend = OnnxBackend(path, device)
        return cls(backend, backend.schema, **kwargs)
