"""Predictor: images in, every attribute's value and class probabilities out.

A predictor wraps one checkpoint, or several (a per-attribute run or grid directory holds one model
per attribute); `predict`, `submit`, the HTTP service and the catalogue all go through it. Images are
decoded and letterboxed in loader workers while the model runs, so a folder of JPEGs streams through
in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fashionattr.checkpoint import BEST_NAME, LAST_NAME, model_from_checkpoint
from fashionattr.data.images import ImageError, open_image
from fashionattr.data.transforms import Preprocessing, letterbox, to_chw_tensor
from fashionattr.distributed import pick_device
from fashionattr.engine import StepSettings, autocast, prepare_images, resolve_amp
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
            with open_image(path) as image:
                return {"index": index, "images": [to_chw_tensor(letterbox(image, s, i)) for s, i in self.sizes]}
        except ImageError as exc:
            return {"index": index, "error": exc.reason}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


class Predictor:
    """Run one or more trained models over images; answers are keyed by the schema's attribute names."""

    def __init__(
        self,
        models: Sequence[LoadedModel],
        schema: Schema,
        device: torch.device | str = "cpu",
        tta: bool = False,
        min_confidence: float = 0.0,
        attributes: Sequence[str] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.models = list(models)
        self.schema = schema
        self.tta = tta
        self.min_confidence = min_confidence
        available = [a for a in schema.names if any(a in m.attributes for m in self.models)]
        if attributes:
            wanted = schema.resolve_names(list(attributes))
            missing = [a for a in wanted if a not in available]
            if missing:
                raise UserError(f"the model does not predict {', '.join(missing)}; it knows: {', '.join(available)}")
            available = wanted
        self.attributes = available
        amp = resolve_amp("auto", self.device)
        self._settings = [
            StepSettings(attributes=m.attributes, preprocessing=m.preprocessing, augmentation=None, amp_dtype=amp)
            for m in self.models
        ]
        self.sizes = sorted({(m.preprocessing.img_size, m.preprocessing.interpolation) for m in self.models})

    @classmethod
    def from_path(cls, path: str | Path, device: str = "auto", **kwargs: Any) -> Predictor:
        """Load a checkpoint, run directory, or folder of per-attribute runs (one model per attribute)."""
        torch_device = pick_device(device)
        loaded, schema = [], None
        for checkpoint in find_checkpoints(path):
            model, model_schema, preprocessing, payload = model_from_checkpoint(checkpoint, torch_device)
            if schema is not None and model_schema.names != schema.names:
                raise UserError(f"{checkpoint}: trained on another schema than the other models under {path}")
            schema = model_schema
            loaded.append(LoadedModel(model, preprocessing, list(payload["attributes"]), checkpoint))
        assert schema is not None
        seen: set[str] = set()
        for item in loaded:
            overlap = seen & set(item.attributes)
            if overlap:
                raise UserError(f"{path}: several models answer {', '.join(sorted(overlap))}; point at one run")
            seen |= set(item.attributes)
        return cls(loaded, schema, device=torch_device, **kwargs)

    @property
    def img_sizes(self) -> list[int]:
        return [size for size, _ in self.sizes]

    def describe(self) -> dict[str, Any]:
        """What the service's schema endpoint and the submission checks need to know."""
        return {
            "schema": self.schema.name,
            "attributes": {a: list(self.schema.attribute(a).classes) for a in self.attributes},
            "models": [
                {
                    "source": str(m.source),
                    "arch": getattr(m.model, "spec", {}).get("arch"),
                    "attributes": m.attributes,
                    "preprocessing": m.preprocessing.to_dict(),
                }
                for m in self.models
            ],
        }

    def letterbox_all(self, image: Image.Image) -> list[torch.Tensor]:
        return [to_chw_tensor(letterbox(image, size, interpolation)) for size, interpolation in self.sizes]

    @torch.no_grad()
    def probabilities(
        self, batches: Sequence[torch.Tensor], embed: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Class probabilities per attribute for uint8 batches (one per entry of `self.sizes`)."""
        by_size = {key: batches[i].to(self.device) for i, key in enumerate(self.sizes)}
        out: dict[str, np.ndarray] = {}
        embeddings = []
        for loaded, settings in zip(self.models, self._settings, strict=True):
            wanted = [a for a in loaded.attributes if a in self.attributes]
            if not wanted and not embed:
                continue
            key = (loaded.preprocessing.img_size, loaded.preprocessing.interpolation)
            images = prepare_images(by_size[key], settings, generator=None)
            with autocast(self.device, settings.amp_dtype):
                outputs = loaded.model(images)
                if self.tta:
                    flipped = loaded.model(torch.flip(images, dims=[3]))
            for name in wanted:
                probs = outputs[name].float().softmax(dim=1)
                if self.tta:
                    probs = (probs + flipped[name].float().softmax(dim=1)) / 2
                out[name] = probs.cpu().numpy()
            if embed:
                with autocast(self.device, settings.amp_dtype):
                    embeddings.append(loaded.model.forward_features(images).float())
        embedding = None
        if embed and embeddings:
            joined = torch.cat(embeddings, dim=1)
            embedding = torch.nn.functional.normalize(joined, dim=1).cpu().numpy()
        return out, embedding

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
        if not images:
            return []
        batches = [torch.stack(column) for column in zip(*(self.letterbox_all(i) for i in images), strict=True)]
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for image files (sorted), in argument order."""
    files: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            files.extend(sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            files.append(entry)
    return files


def predictions_to_json(predictions: Iterable[Prediction], top_k: int | None = None) -> str:
    return json.dumps([p.to_dict(top_k) for p in predictions], indent=1)
