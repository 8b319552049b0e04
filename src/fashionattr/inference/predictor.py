"""Predictor: images in, every attribute's value and class probabilities out.

A predictor wraps one checkpoint, or several (a per-attribute run or grid directory holds one model
per attribute), or an exported ONNX file; `predict`, `submit`, the HTTP service and the catalogue all go
through it. Running the network is the job of a small backend (`torch_backend`, `onnx_backend`), so
batching, streaming, thresholds and result objects live in one place whatever runs the model. Images are
decoded and letterboxed by the one preprocessing function in loader workers while the model runs, so a
folder of JPEGs streams through in constant memory and every file gets the pixels training saw.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fashionattr.applicability import THRESHOLD
from fashionattr.applicability.modules import applies as tag_applies
from fashionattr.applicability.modules import invisible_indices
from fashionattr.data.images import IMAGE_SUFFIXES, ImageError
from fashionattr.data.preprocessing import Preprocessing, load_letterboxed, to_chw_tensor
from fashionattr.distributed import pick_device
from fashionattr.errors import ModelOutputError, UserError
from fashionattr.inference.torch_backend import BackendOutput, LoadedModel, TorchBackend, load_models
from fashionattr.schema import Schema


@dataclass
class AttributeResult:
    """One attribute's answer for one image.

    `value` is None when the photo does not show the attribute's part (`applies` is False: a neckline close-up has
    no skirt length) or when the top probability is below the confidence threshold (`uncertain`). `index` and
    `probabilities` are the head's answer either way, as the challenge's scoring wants them.
    """

    attribute: str
    value: str | None
    index: int
    confidence: float
    probabilities: dict[str, float]
    applies: bool = True
    """Whether the photo shows this attribute's part; a tag is shown only where it does."""
    applicability: float = 1.0
    """How likely the photo shows the part, in [0, 1]; `applies` is this score against the model's threshold."""

    @property
    def uncertain(self) -> bool:
        return self.applies and self.value is None

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        probabilities = dict(self.top(top_k)) if top_k else self.probabilities
        return {"value": self.value, "applies": self.applies, "applicability": self.applicability,
                "index": self.index, "confidence": self.confidence, "uncertain": self.uncertain,
                "probabilities": probabilities}  # fmt: skip


@dataclass
class Prediction:
    """All attributes for one image, plus the image's embedding when asked for."""

    source: str
    attributes: dict[str, AttributeResult] = field(default_factory=dict)
    embedding: np.ndarray | None = None

    def to_dict(self, top_k: int | None = None) -> dict[str, Any]:
        return {"source": self.source, "attributes": {n: r.to_dict(top_k) for n, r in self.attributes.items()}}


class _ImageFiles(Dataset):
    """Decodes and letterboxes files in loader workers; a bad file yields its error instead of raising."""

    def __init__(self, paths: Sequence[str | Path], inputs: Sequence[Preprocessing]) -> None:
        self.paths = list(paths)
        self.inputs = list(inputs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return {"index": index, "images": load_inputs(self.paths[index], self.inputs)}
        except ImageError as exc:
            return {"index": index, "error": exc.reason}


def load_inputs(source: str | Path | bytes, inputs: Sequence[Preprocessing],
                name: str | None = None) -> list[torch.Tensor]:  # fmt: skip
    """One file (path or bytes) as each input a backend takes: exactly the pixels training and evaluation see."""
    return [to_chw_tensor(load_letterboxed(source, preprocessing, name)) for preprocessing in inputs]


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


class Backend(Protocol):
    """What runs the network(s): uint8 batches in, probabilities (and an embedding) out.

    `inputs` lists the preprocessing of each uint8 batch `run` takes, in order; `attributes` are the attributes
    the backend can answer; `flip_safe` says whether every model was trained with mirrored images.
    """

    attributes: list[str]
    inputs: list[Preprocessing]
    flip_safe: bool
    device: torch.device

    def run(self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool) -> BackendOutput:
        """Probabilities and applicability scores of `attributes` (and the embedding when asked) for the batches."""
        ...

    def describe(self) -> list[dict[str, Any]]: ...


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
        applicability_threshold: float = THRESHOLD,
    ) -> None:
        self.backend: Backend = TorchBackend(models, device) if isinstance(models, Sequence) else models
        self.device = self.backend.device
        self.schema = schema
        if tta and not self.backend.flip_safe:
            raise UserError(
                "--tta averages with the mirror image, but this model was trained without flips (its attributes "
                "may not be mirror-symmetric); predict without --tta"
            )
        self.tta = tta
        self.min_confidence = min_confidence
        if not 0.0 <= applicability_threshold <= 1.0:
            raise UserError(f"the applicability threshold must be in [0, 1], got {applicability_threshold}")
        self.applicability_threshold = applicability_threshold
        """A tag is shown where its attribute's applicability reaches this (and the top class is not `Invisible`)."""
        self.attributes = self._select(attributes)
        self.inputs = list(self.backend.inputs)
        self.invisible = invisible_indices(schema, self.backend.attributes)

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
    def from_path(cls, path: str | Path, device: str = "auto", calibrated: bool = True, **kwargs: Any) -> Predictor:
        """Load a checkpoint, run directory, or folder of per-attribute runs (one model per attribute).

        `calibrated` (the default) applies the checkpoints' calibration temperatures; False gives raw probabilities.
        """
        torch_device = pick_device(device)
        loaded, schema = load_models(path, torch_device, calibrated=calibrated)
        return cls(TorchBackend(loaded, torch_device), schema, **kwargs)

    def with_attributes(self, attributes: Sequence[str] | str | None) -> Predictor:
        """The same loaded models answering only `attributes`: models that answer none of them are not run."""
        clone = copy.copy(self)
        clone.attributes = self._select(attributes)
        return clone

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are calibrated: every model has temperatures (PyTorch) or the graph does (ONNX)."""
        return all(model.get("temperatures") for model in self.backend.describe())

    @property
    def models(self) -> list[LoadedModel]:
        """The PyTorch models behind this predictor (empty for another backend)."""
        return list(getattr(self.backend, "models", []))

    def describe(self) -> dict[str, Any]:
        """What the service's schema endpoint and the submission checks need to know."""
        return {
            "schema": self.schema.name,
            "attributes": {a: list(self.schema.attribute(a).classes) for a in self.attributes},
            "applicability_threshold": self.applicability_threshold,
            "models": self.backend.describe(),
        }

    def load(self, source: str | Path | bytes, name: str | None = None) -> list[torch.Tensor]:
        """A file (path or bytes) as this predictor's inputs; raises ImageError for a file that cannot be used."""
        return load_inputs(source, self.inputs, name)

    def outputs(self, batches: Sequence[torch.Tensor], embed: bool = False) -> BackendOutput:
        """Class probabilities and applicability scores per attribute for uint8 batches (one per `self.inputs`).

        Non-finite numbers are an error, never an answer: NaN has no argmax and no confidence a threshold can test.
        """
        output = self.backend.run(batches, self.attributes, tta=self.tta, embed=embed)
        broken = [name for name, values in output.probabilities.items() if not np.isfinite(values).all()]
        broken += [f"{name} (applicability)" for name, values in output.applicability.items()
                   if not np.isfinite(values).all()]  # fmt: skip
        if output.embedding is not None and not np.isfinite(output.embedding).all():
            broken.append("the embedding")
        if broken:
            source = ", ".join(str(model.get("source")) for model in self.backend.describe())
            raise ModelOutputError(f"{source}: the model gave NaN or infinite numbers for {', '.join(broken)}; its "
                                   "weights or stored settings are damaged, so it gives no answer")  # fmt: skip
        return output

    def probabilities(
        self, batches: Sequence[torch.Tensor], embed: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Class probabilities per attribute for uint8 batches (one per entry of `self.inputs`)."""
        output = self.outputs(batches, embed=embed)
        return output.probabilities, output.embedding

    def results(self, output: BackendOutput, row: int) -> dict[str, AttributeResult]:
        """Every attribute's answer for one image: a value only where the attribute applies and is confident."""
        answers = {}
        for name in self.attributes:
            attribute = self.schema.attribute(name)
            vector = output.probabilities[name][row]
            best = int(vector.argmax())
            confidence = float(vector[best])
            score = float(output.applicability[name][row])
            applies = bool(tag_applies(score, best, self.invisible.get(name), self.applicability_threshold))
            answers[name] = AttributeResult(
                attribute=name,
                value=attribute.classes[best] if applies and confidence >= self.min_confidence else None,
                index=best,
                confidence=confidence,
                probabilities={c: float(p) for c, p in zip(attribute.classes, vector, strict=True)},
                applies=applies,
                applicability=score,
            )
        return answers

    def predict_letterboxed(self, images: Sequence[Sequence[torch.Tensor]], names: Sequence[str] | None = None,
                            embed: bool = False) -> list[Prediction]:  # fmt: skip
        """Images already loaded by `load` -> predictions, in one batch.

        The service loads each upload as soon as it arrives, so that a large image is held at full size only
        while it is being shrunk, never while it waits for a batch.
        """
        if not images:
            return []
        batches = [torch.stack(column) for column in zip(*images, strict=True)]
        output = self.outputs(batches, embed=embed)
        names = names or [f"image {i}" for i in range(len(images))]
        embeddings = list(output.embedding) if output.embedding is not None else [None] * len(images)
        return [Prediction(names[row], self.results(output, row), embeddings[row]) for row in range(len(images))]

    def predict_paths(self, paths: Iterable[str | Path], batch_size: int = 32, workers: int = 2,
                      embed: bool = False) -> Iterator[Prediction | ImageError]:  # fmt: skip
        """Stream predictions for files in order; an unreadable file yields an ImageError instead."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        # Workers decode the next batches while the model runs the current one; a worker beyond the batches
        # after the first has nothing to overlap, and starting one costs more than decoding a small batch.
        workers = min(workers, math.ceil(len(paths) / batch_size) - 1)
        loader = DataLoader(_ImageFiles(paths, self.inputs), batch_size=batch_size, num_workers=workers,
                            collate_fn=_collate, pin_memory=self.device.type == "cuda")  # fmt: skip
        for items in loader:
            good = [item for item in items if "error" not in item]
            results: dict[int, Prediction | ImageError] = {
                item["index"]: ImageError(paths[item["index"]], item["error"]) for item in items if "error" in item
            }
            if good:
                batches = [torch.stack([item["images"][i] for item in good]) for i in range(len(self.inputs))]
                output = self.outputs(batches, embed=embed)
                for row, item in enumerate(good):
                    embedding = output.embedding[row] if output.embedding is not None else None
                    results[item["index"]] = Prediction(paths[item["index"]], self.results(output, row), embedding)
            for item in items:
                yield results[item["index"]]


BACKENDS = ("auto", "torch", "onnx")


def load_predictor(path: str | Path, backend: str = "auto", device: str = "auto", calibrated: bool = True,
                   **kwargs: Any) -> Predictor:  # fmt: skip
    """A predictor for a checkpoint, run directory, per-attribute folder (PyTorch) or exported `.onnx` file.

    `auto` picks ONNX Runtime for a `.onnx` file and PyTorch for everything else; `calibrated` applies the
    calibration temperatures (False: the network's raw probabilities); keyword arguments go to `Predictor` (tta,
    min_confidence, attributes, applicability_threshold).
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
        from fashionattr.inference.onnx_backend import OnnxBackend

        onnx = OnnxBackend(path, device, calibrated=calibrated)
        return Predictor(onnx, onnx.schema, **kwargs)
    if is_onnx:
        raise UserError(f"{path}: an ONNX file runs on the onnx backend; use --backend onnx (or auto)")
    return Predictor.from_path(path, device=device, calibrated=calibrated, **kwargs)


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
