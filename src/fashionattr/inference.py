"""Predictor: images in, every attribute's value and class probabilities out.

A predictor wraps one checkpoint, or several (a per-attribute run or grid directory holds one model
per attribute), or an exported ONNX file; `predict`, `submit`, the HTTP service and the catalogue all go
through it. Running the network is the job of a small backend (PyTorch here, ONNX Runtime in `export`),
so batching, streaming, thresholds and result objects live in one place whatever runs the model. Images
are decoded and letterboxed in loader workers while the model runs, so a folder of JPEGs streams through
in constant memory.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fashionattr.checkpoint import BEST_NAME, LAST_NAME, model_from_checkpoint
from fashionattr.data.images import ImageError, open_image
from fashionattr.data.transforms import Preprocessing, letterbox, normalize_batch, to_chw_tensor
from fashionattr.distributed import pick_device
from fashionattr.engine import autocast, resolve_amp
from fashionattr.errors import UserError
from fashionattr.schema import Schema

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass
class AttributeResult:
    """One attribute's answer for one image; `value` is None when the top probability is below the threshold."""

    attribute: str
    value: str | None
    index: int
    confidence: float
    probabilities: dict[str, float]

    @property
    def uncertain(self) -> bool:
        return self.value is None

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        probabilities = dict(self.top(top_k)) if top_k else self.probabilities
        return {"value": self.value, "index": self.index, "confidence": self.confidence, "uncertain": self.uncertain,
                "probabilities": probabilities}  # fmt: skip


@dataclass
class Prediction:
    """All attributes for one image, plus the image's embedding when asked for."""

    source: str
    attributes: dict[str, AttributeResult] = field(default_factory=dict)
    embedding: np.ndarray | None = None

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        return {"source": self.source, "attributes": {n: r.to_dict(top_k) for n, r in self.attributes.items()}}


@dataclass
class LoadedModel:
    """One network with the attributes it answers and the preprocessing it expects."""

    model: nn.Module
    preprocessing: Preprocessing
    attributes: list[str]
    source: Path


def find_checkpoints(path: str | Path) -> list[Path]:
    """A checkpoint file; a run directory (best, else last); or a folder of per-attribute run directories."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint file or run directory")
    for name in (BEST_NAME, LAST_NAME):
        if (path / name).is_file():
            return [path / name]
    found = []
    for child in sorted(p for p in path.rglob("*") if p.is_dir()):
        best = child / BEST_NAME if (child / BEST_NAME).is_file() else child / LAST_NAME
        if best.is_file():
            found.append(best)
    if not found:
        raise UserError(f"{path}: holds no best.pt or last.pt, here or in its sub-folders; is it a finished run?")
    return found


class _ImageFiles(Dataset):
    """Decodes and letterboxes files in loader workers; a bad file yields its error instead of raising."""

    def __init__(self, paths: Sequence[str | Path], sizes: Sequence[tuple[int, str]]) -> None:
        self.paths = list(paths)
        self.sizes = list(sizes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        try:
            # Full-size decoding (no JPEG draft), so files, uploads and decoded images all get identical answers.
            with open_image(path) as image:
                return {"index": index, "images": [to_chw_tensor(letterbox(image, s, i)) for s, i in self.sizes]}
        except ImageError as exc:
            return {"index": index, "error": exc.reason}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def features_and_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pooled features and per-attribute logits from one backbone pass.

    Calling `model(x)` and then `model.forward_features(x)` would run the backbone twice whenever an embedding
    is wanted; the catalogue wants one for every image. Works on `MultiTaskNet` and `GroupedNet` (a net with
    `heads`, or `nets` of them; dropout before the heads is off in eval mode) and falls back to two calls.
    """
    network: Any = model  # nn.Module's __getattr__ types every attribute as Tensor | Module
    nets: list[Any] = list(getattr(network, "nets", None) or [network])
    if not all(hasattr(net, "heads") and hasattr(net, "forward_features") for net in nets):
        return network.forward_features(images), dict(network(images))
    features, logits = [], {}
    for net in nets:
        pooled = net.forward_features(images)
        features.append(pooled)
        logits.update({name: head(pooled) for name, head in net.heads.items()})
    return torch.cat(features, dim=1), logits


def model_outputs(
    model: nn.Module, preprocessing: Preprocessing, images: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Features and class probabilities of one model for a uint8 letterboxed batch (N,3,S,S).

    This is the whole computation from pixels to answers: the PyTorch backend runs it, and ONNX export traces
    it, so normalisation and softmax are baked into the exported graph exactly as they run here.
    """
    features, logits = features_and_logits(model, normalize_batch(images, preprocessing))
    return features, {name: value.float().softmax(dim=1) for name, value in logits.items()}


def joint_embedding(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """One unit-length vector per image from every model's features, so cosine similarity is a dot product."""
    return torch.nn.functional.normalize(torch.cat([f.float() for f in features], dim=1), dim=1)


class Backend(Protocol):
    """What runs the network(s): uint8 batches in, probabilities (and an embedding) out.

    `sizes` lists the (side, interpolation) letterbox each input batch must have, in the order `run` takes
    them; `attributes` are the attributes the backend can answer.
    """

    attributes: list[str]
    sizes: list[tuple[int, str]]
    device: torch.device

    def run(
        self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]: ...

    def describe(self) -> list[dict[str, Any]]: ...


class TorchBackend:
    """Runs loaded PyTorch models on a device, channels-last, with mixed precision on a GPU.

    Channels-last convolutions run faster at inference on CPUs (oneDNN; `fashionattr bench` figure e measured
    about 1.2-1.3x with resnet18) as well as on GPUs; the models are converted in place.
    """

    def __init__(self, models: Sequence[LoadedModel], device: torch.device | str = "cpu",
                 channels_last: bool = True) -> None:  # fmt: skip
        if not models:
            raise ValueError("TorchBackend needs at least one model")
        self.models = list(models)
        self.device = torch.device(device)
        self.attributes = [a for m in self.models for a in m.attributes]
        self.sizes = sorted({_size_key(m.preprocessing) for m in self.models})
        self._amp = resolve_amp("auto", self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for loaded in self.models:
            loaded.model.to(memory_format=self.memory_format)

    @torch.no_grad()
    def run(
        self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        by_size = {key: batches[i].to(self.device).contiguous(memory_format=self.memory_format)
                   for i, key in enumerate(self.sizes)}  # fmt: skip
        out: dict[str, np.ndarray] = {}
        features = []
        for loaded in self.models:
            wanted = [a for a in loaded.attributes if a in attributes]
            if not wanted and not embed:
                continue
            images = by_size[_size_key(loaded.preprocessing)]
            with autocast(self.device, self._amp):
                pooled, probs = model_outputs(loaded.model, loaded.preprocessing, images)
                if tta and wanted:
                    _, flipped = model_outputs(loaded.model, loaded.preprocessing, torch.flip(images, dims=[3]))
                    probs = {name: (probs[name] + flipped[name]) / 2 for name in wanted}
            out.update({name: probs[name].float().cpu().numpy() for name in wanted})
            features.append(pooled)
        embedding = joint_embedding(features).cpu().numpy() if embed and features else None
        return out, embedding

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "source": str(m.source),
                "backend": "torch",
                "arch": getattr(m.model, "spec", {}).get("arch"),
                "attributes": m.attributes,
                "preprocessing": m.preprocessing.to_dict(),
            }
            for m in self.models
        ]


def _size_key(preprocessing: Preprocessing) -> tuple[int, str]:
    return preprocessing.img_size, preprocessing.interpolation


def load_models(path: str | Path, device: torch.device | str = "cpu") -> tuple[list[LoadedModel], Schema]:
    """Every model under `path` (see `find_checkpoints`), checked to share a schema and not to overlap."""
    loaded: list[LoadedModel] = []
    schema: Schema | None = None
    for checkpoint in find_checkpoints(path):
        model, model_schema, preprocessing, payload = model_from_checkpoint(checkpoint, device)
        if schema is not None and model_schema.names != schema.names:
            raise UserError(f"{checkpoint}: trained on another schema than the other models under {path}")
        schema = model_schema
        loaded.append(LoadedModel(model, preprocessing, list(payload["attributes"]), checkpoint))
    if schema is None:  # find_checkpoints raises first; this keeps type checkers and readers sure
        raise UserError(f"{path}: no checkpoint found")
    seen: set[str] = set()
    for item in loaded:
        overlap = seen & set(item.attributes)
        if overlap:
            raise UserError(f"{path}: several models answer {', '.join(sorted(overlap))}; point at one run")
        seen |= set(item.attributes)
    return loaded, schema


class Predictor:
    """Run one or more trained models over images; answers are keyed by the schema's attribute names."""

    def __init__(
        self,
        models: Sequence[LoadedModel] | Backend,
        schema: Schema,
        device: torch.device | str = "cpu",
        tta: bool = False,
        min_confidence: float = 0.0,
        attributes: Sequence[str] | None = None,
    ) -> None:
        self.backend: Backend = TorchBackend(models, device) if isinstance(models, Sequence) else models
        self.device = self.backend.device
        self.schema = schema
        self.tta = tta
        self.min_confidence = min_confidence
        self.attributes = self._select(attributes)
        self.sizes = list(self.backend.sizes)

    def _select(self, attributes: Sequence[str] | str | None) -> list[str]:
        available = [a for a in self.schema.names if a in self.backend.attributes]
        if not attributes:
            return available
        try:
            wanted = self.schema.resolve_names(attributes if isinstance(attributes, str) else list(attributes))
        except KeyError as exc:
            raise UserError(f"{exc.args[0]} (the model predicts {', '.join(available)})") from None
        missing = [a for a in wanted if a not in available]
        if missing:
            raise UserError(f"the model does not predict {', '.join(missing)}; it knows: {', '.join(available)}")
        return wanted

    @classmethod
    def from_path(cls, path: str | Path, device: str = "auto", **kwargs: Any) -> Predictor:
        """Load a checkpoint, run directory, or folder of per-attribute runs (one model per attribute)."""
        torch_device = pick_device(device)
        loaded, schema = load_models(path, torch_device)
        return cls(TorchBackend(loaded, torch_device), schema, **kwargs)

    def with_attributes(self, attributes: Sequence[str] | str | None) -> Predictor:
        """The same loaded models answering only `attributes`: models that answer none of them are not run."""
        clone = copy.copy(self)
        clone.attributes = self._select(attributes)
        return clone

    @property
    def models(self) -> list[LoadedModel]:
        """The PyTorch models behind this predictor (empty for another backend)."""
        return list(getattr(self.backend, "models", []))

    @property
    def img_sizes(self) -> list[int]:
        return [size for size, _ in self.sizes]

    def describe(self) -> dict[str, Any]:
        """What the service's schema endpoint and the submission checks need to know."""
        return {
            "schema": self.schema.name,
            "attributes": {a: list(self.schema.attribute(a).classes) for a in self.attributes},
            "models": self.backend.describe(),
        }

    def letterbox_all(self, image: Image.Image) -> list[torch.Tensor]:
        return [to_chw_tensor(letterbox(image, size, interpolation)) for size, interpolation in self.sizes]

    def probabilities(
        self, batches: Sequence[torch.Tensor], embed: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Class probabilities per attribute for uint8 batches (one per entry of `self.sizes`)."""
        return self.backend.run(batches, self.attributes, tta=self.tta, embed=embed)

    def results(self, probs: dict[str, np.ndarray], row: int) -> dict[str, AttributeResult]:
        answers = {}
        for name in self.attributes:
            attribute = self.schema.attribute(name)
            vector = probs[name][row]
            best = int(vector.argmax())
            confidence = float(vector[best])
            answers[name] = AttributeResult(
                attribute=name,
                value=attribute.classes[best] if confidence >= self.min_confidence else None,
                index=best,
                confidence=confidence,
                probabilities={c: float(p) for c, p in zip(attribute.classes, vector, strict=True)},
            )
        return answers

    def predict_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None,
                       embed: bool = False) -> list[Prediction]:  # fmt: skip
        """Decoded RGB images -> predictions, in one batch."""
        return self.predict_letterboxed([self.letterbox_all(i) for i in images], names, embed=embed)

    def predict_letterboxed(self, images: Sequence[Sequence[torch.Tensor]], names: Sequence[str] | None = None,
                            embed: bool = False) -> list[Prediction]:  # fmt: skip
        """Images already letterboxed by `letterbox_all` -> predictions, in one batch.

        The service letterboxes each upload as soon as it is decoded, so that a large image is held at full size
        only while it is being shrunk, never while it waits for a batch.
        """
        if not images:
            return []
        batches = [torch.stack(column) for column in zip(*images, strict=True)]
        probs, embedding = self.probabilities(batches, embed=embed)
        names = names or [f"image {i}" for i in range(len(images))]
        return [
            Prediction(names[row], self.results(probs, row), embedding[row] if embedding is not None else None)
            for row in range(len(images))
        ]

    def predict_paths(self, paths: Iterable[str | Path], batch_size: int = 32, workers: int = 2,
                      embed: bool = False) -> Iterator[Prediction | ImageError]:  # fmt: skip
        """Stream predictions for files in order; an unreadable file yields an ImageError instead."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        # Workers decode the next batches while the model runs the current one; a worker beyond the batches
        # after the first has nothing to overlap, and starting one costs more than decoding a small batch.
        workers = min(workers, math.ceil(len(paths) / batch_size) - 1)
        loader = DataLoader(_ImageFiles(paths, self.sizes), batch_size=batch_size, num_workers=workers,
                            collate_fn=_collate, pin_memory=self.device.type == "cuda")  # fmt: skip
        for items in loader:
            good = [item for item in items if "error" not in item]
            results: dict[int, Prediction | ImageError] = {
                item["index"]: ImageError(paths[item["index"]], item["error"]) for item in items if "error" in item
            }
            if good:
                batches = [torch.stack([item["images"][i] for item in good]) for i in range(len(self.sizes))]
                probs, embedding = self.probabilities(batches, embed=embed)
                for row, item in enumerate(good):
                    results[item["index"]] = Prediction(paths[item["index"]], self.results(probs, row),
                                                        embedding[row] if embedding is not None else None)  # fmt: skip
            for item in items:
                yield results[item["index"]]


BACKENDS = ("auto", "torch", "onnx")


def load_predictor(path: str | Path, backend: str = "auto", device: str = "auto", **kwargs: Any) -> Predictor:
    """A predictor for a checkpoint, run directory, per-attribute folder (PyTorch) or exported `.onnx` file.

    `auto` picks ONNX Runtime for a `.onnx` file and PyTorch for everything else; keyword arguments go to
    `Predictor` (tta, min_confidence, attributes).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    is_onnx = Path(path).suffix.lower() == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "onnx":
        if not is_onnx:
            raise UserError(
                f"{path}: the onnx backend needs an exported .onnx file; make one with "
                f"`fashionattr export {path} --onnx model.onnx`"
            )
        from fashionattr.export import OnnxPredictor

        return OnnxPredictor.from_path(path, device=device, **kwargs)
    if is_onnx:
        raise UserError(f"{path}: an ONNX file runs on the onnx backend; use --backend onnx (or auto)")
    return Predictor.from_path(path, device=device, **kwargs)


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files (sorted), in argument order.

    Anything with an image name that is not a folder is listed: a broken symbolic link (dangling, or a loop), a FIFO
    or a device is then reported by the decoder rather than silently left out.
    """
    files: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            files.extend(sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()))
        else:
            files.append(entry)
    return files


def predictions_to_json(predictions: Iterable[Prediction], top_k: int | None = None) -> str:
    return json.dumps([p.to_dict(top_k) for p in predictions], indent=1)
