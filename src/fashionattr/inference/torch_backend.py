"""The PyTorch backend: trained checkpoints loaded and run on a device, uint8 letterboxed batches in.

`model_outputs` is the whole computation from pixels to answers; the backend runs it and ONNX export traces it,
so normalisation and softmax are the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionattr.applicability.modules import Applicability, build_applicability, invisible_indices
from fashionattr.checkpoint import applicability_of, augmentation_of, model_from_checkpoint, temperatures_of
from fashionattr.data.augmentation import flip_averaged
from fashionattr.data.preprocessing import Preprocessing, normalize_batch
from fashionattr.engine import autocast, probabilities_from_logits, resolve_amp, tempered
from fashionattr.errors import UserError
from fashionattr.models.networks import AttributeNet
from fashionattr.run_dir import find_runs
from fashionattr.schema import Schema, schema_mismatch


@dataclass
class LoadedModel:
    """One network with the attributes it answers, the preprocessing it expects, and how it was trained."""

    model: AttributeNet
    preprocessing: Preprocessing
    attributes: list[str]
    source: Path
    trained_with_flip: bool = True
    """Whether mirror images were part of its training; flip test-time averaging is refused otherwise."""
    temperatures: dict[str, float] = field(default_factory=dict)
    """Calibration temperature per attribute; an attribute without one keeps its raw probabilities (T = 1)."""
    tta_temperatures: dict[str, float] = field(default_factory=dict)
    """Calibration temperature of flip-averaged answers, fitted on them (`engine.tempered`)."""
    applicability: Applicability | None = None
    """Which of its attributes a photo shows (`load_models` always sets one); None: every attribute applies."""

    def __post_init__(self) -> None:
        if self.applicability is None:
            self.applicability = Applicability(self.attributes, {})


@dataclass(frozen=True)
class BackendOutput:
    """What a backend answers for a batch: class probabilities and applicability scores per attribute, embedding."""

    probabilities: dict[str, np.ndarray]
    applicability: dict[str, np.ndarray]
    embedding: np.ndarray | None = None


def distinct_inputs(preprocessings: Sequence[Preprocessing]) -> list[Preprocessing]:
    """One entry per distinct uint8 input (size, resampling, pad), in a fixed order; normalisation is the models'."""
    by_key: dict[str, Preprocessing] = {}
    for preprocessing in preprocessings:
        by_key.setdefault(preprocessing.pixel_key, preprocessing)
    return [by_key[key] for key in sorted(by_key)]


def find_checkpoints(path: str | Path) -> list[Path]:
    """A checkpoint file; a run directory (best, else last); or a folder of per-attribute run directories."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint file or run directory")
    runs = find_runs(path)
    if not runs:
        raise UserError(f"{path}: holds no best.pt or last.pt, here or in its sub-folders; is it a finished run?")
    return [run.checkpoint for run in runs]


def load_models(
    path: str | Path, device: torch.device | str = "cpu", calibrated: bool = True
) -> tuple[list[LoadedModel], Schema]:
    """Every model under `path` (see `find_checkpoints`), checked to share a schema and not to overlap.

    `calibrated` applies each checkpoint's calibration temperatures (older checkpoints have none: T = 1);
    False gives the raw probabilities of the network.
    """
    loaded: list[LoadedModel] = []
    schema: Schema | None = None
    for checkpoint in find_checkpoints(path):
        model, model_schema, preprocessing, payload = model_from_checkpoint(checkpoint, device)
        if schema is not None:
            # Answers are named by one schema, so the models must agree on every attribute and its classes.
            problem = (schema_mismatch(model_schema, schema, model_schema.names, f"{loaded[0].source}")
                       or schema_mismatch(schema, model_schema, schema.names, str(checkpoint)))  # fmt: skip
            if problem:
                raise UserError(f"{checkpoint}: trained on another schema than the other models under {path}: "
                                f"{problem}; point at one run, or retrain them on one dataset")  # fmt: skip
        schema = model_schema
        augmentation = augmentation_of(payload)
        temperatures = temperatures_of(payload, checkpoint) if calibrated else {}
        tta_temperatures = temperatures_of(payload, checkpoint, tta=True) if calibrated else {}
        attributes = list(payload["attributes"])
        stored = applicability_of(payload, checkpoint)
        # Checkpoints fitted before applicability existed decide by the `Invisible` probability alone.
        applicability = (build_applicability(*stored) if stored is not None
                         else Applicability(attributes, invisible_indices(model_schema, attributes)))  # fmt: skip
        loaded.append(LoadedModel(model, preprocessing, attributes, checkpoint,
                                  trained_with_flip=augmentation is None or augmentation.flip,
                                  temperatures=temperatures, tta_temperatures=tta_temperatures,
                                  applicability=applicability.to(device)))  # fmt: skip
    if schema is None:  # find_checkpoints raises first; this keeps type checkers and readers sure
        raise UserError(f"{path}: no checkpoint found")
    seen: set[str] = set()
    for item in loaded:
        overlap = seen & set(item.attributes)
        if overlap:
            raise UserError(f"{path}: several models answer {', '.join(sorted(overlap))}; point at one run")
        seen |= set(item.attributes)
    return loaded, schema


def model_outputs(
    loaded: LoadedModel, images: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Features, class probabilities and applicability scores of one model for a uint8 letterboxed batch (N,3,S,S).

    Logits are divided by each attribute's calibration temperature before the softmax; ONNX export traces this
    function, so the exported graph carries the same division and the same applicability decision.
    """
    features, logits = loaded.model.features_and_logits(normalize_batch(images, loaded.preprocessing))
    probabilities = probabilities_from_logits(logits, loaded.temperatures)
    applicability = loaded.applicability if loaded.applicability is not None else Applicability([], {})
    return features, probabilities, applicability(features, probabilities)


def joint_embedding(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """One unit-length vector per image from every model's features, so cosine similarity is a dot product."""
    return torch.nn.functional.normalize(torch.cat([f.float() for f in features], dim=1), dim=1)


class TorchBackend:
    """Runs loaded PyTorch models on a device, channels-last, with mixed precision on a GPU.

    Channels-last convolutions run faster at inference on CPUs (oneDNN; `fashionattr bench` figure e measured
    about 1.1-1.3x with resnet18) as well as on GPUs; the models are converted in place.
    """

    def __init__(self, models: Sequence[LoadedModel], device: torch.device | str = "cpu",
                 channels_last: bool = True) -> None:  # fmt: skip
        if not models:
            raise ValueError("TorchBackend needs at least one model")
        self.models = list(models)
        self.device = torch.device(device)
        self.attributes = [a for m in self.models for a in m.attributes]
        self.inputs = distinct_inputs([m.preprocessing for m in self.models])
        self.flip_safe = all(m.trained_with_flip for m in self.models)
        self._amp = resolve_amp("auto", self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for loaded in self.models:
            loaded.model.to(memory_format=self.memory_format)

    @torch.no_grad()
    def run(self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool) -> BackendOutput:
        by_key = {p.pixel_key: batches[i].to(self.device).contiguous(memory_format=self.memory_format)
                  for i, p in enumerate(self.inputs)}  # fmt: skip
        out: dict[str, np.ndarray] = {}
        applies: dict[str, np.ndarray] = {}
        features = []
        for loaded in self.models:
            wanted = [a for a in loaded.attributes if a in attributes]
            if not wanted and not embed:
                continue
            images = by_key[loaded.preprocessing.pixel_key]

            def raw(batch: torch.Tensor, model: LoadedModel = loaded) -> dict[str, torch.Tensor]:
                with autocast(self.device, self._amp):
                    logits = model.model.features_and_logits(normalize_batch(batch, model.preprocessing))[1]
                return probabilities_from_logits(logits)

            with autocast(self.device, self._amp):
                pooled, probs, scores = model_outputs(loaded, images)
            if tta and wanted:
                # The raw answers are averaged, then calibrated in that mode; applicability is the plain image's, as
                # in ONNX graphs.
                probs = tempered(flip_averaged(raw, images, wanted), loaded.tta_temperatures)
            out.update({name: probs[name].float().cpu().numpy() for name in wanted})
            applies.update({name: scores[name].float().cpu().numpy() for name in wanted})
            features.append(pooled)
        embedding = joint_embedding(features).cpu().numpy() if embed and features else None
        return BackendOutput(out, applies, embedding)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "source": str(m.source),
                "backend": "torch",
                "arch": m.model.spec.get("arch"),
                "attributes": m.attributes,
                "preprocessing": m.preprocessing.to_dict(),
                "temperatures": m.temperatures,
                "tta_temperatures": m.tta_temperatures,
                "applicability": m.applicability.method if m.applicability is not None else None,
            }
            for m in self.models
        ]
