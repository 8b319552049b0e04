"""What every pass of a model shares, and the evaluation loop, in the plain shape of torchvision's reference scripts.

The step settings, mixed precision, the images as the model takes them (`prepare_images`), probabilities from
logits and their temperatures; `evaluate` collects each image's class probabilities for the attribute it is
labelled for, on a single process or under DistributedDataParallel, sharding the validation set without padding so
that every image is counted exactly once. The training loop built on them is `fashionattr.training.loop`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fashionattr.data.augmentation import Augmentation, augment_batch, flip_averaged
from fashionattr.data.preprocessing import Preprocessing, normalize_batch
from fashionattr.distributed import DistributedContext, gather_objects
from fashionattr.metrics import AttributePredictions


@dataclass
class StepSettings:
    """How each training step runs; resolved once from the config and the device."""

    attributes: list[str]
    preprocessing: Preprocessing
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    maybe_weight: float = 0.0
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    max_steps: int | None = None
    check_every: int = 20
    temperatures: Mapping[str, float] | None = None
    """Per attribute, the calibration temperature evaluation divides the logits by (none while training)."""
    tta_temperatures: Mapping[str, float] | None = None
    """Per attribute, the temperature of flip-averaged answers (`tempered`), fitted on them."""
    applicability_weight: float = 0.0
    """Share of the applicability head's loss in the total (networks with the head; `losses.applicability_loss`)."""
    unlabelled_weight: float = 0.0
    """Weight of an image as a negative for the attributes it is not labelled for (`losses.applicability_loss`)."""
    invisible: tuple[int, ...] = ()
    """Per attribute (in `attributes` order), its `Invisible` class, or -1 where it has none."""


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """`auto` means bf16 on a GPU that supports it, fp16 on other GPUs, full precision on CPU."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare_images(
    images: torch.Tensor,
    settings: StepSettings,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """uint8 batch on the device -> augmented (when training), normalised, in the chosen memory format."""
    batch = images.float()
    if generator is not None and settings.augmentation is not None:
        batch = augment_batch(batch, settings.augmentation, generator, settings.preprocessing.pad_value)
    batch = normalize_batch(batch, settings.preprocessing)
    if settings.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def labelled_batches(loader: DataLoader, skipped: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """The loader's batches that hold images; the files each batch could not read are added to `skipped`."""
    for batch in loader:
        skipped.extend(batch["skipped"])
        if "image" in batch:
            yield batch


def probabilities_from_logits(
    logits: Mapping[str, torch.Tensor], temperatures: Mapping[str, float] | None = None
) -> dict[str, torch.Tensor]:
    """Softmax of each attribute's logits, divided first by its calibration temperature (1 when it has none).

    Evaluation, the PyTorch backend and the exported ONNX graph all turn logits into probabilities here, so a
    calibrated checkpoint answers the same everywhere.
    """
    temperatures = temperatures or {}
    out = {}
    for name, values in logits.items():
        temperature = float(temperatures.get(name, 1.0))
        values = values.float()
        out[name] = (values if temperature == 1.0 else values / temperature).softmax(dim=1)
    return out


def tempered(probabilities: Mapping[str, torch.Tensor],
             temperatures: Mapping[str, float] | None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Probabilities recalibrated as if their logits had been divided by each attribute's temperature.

    softmax(log p / T) equals softmax(logits / T) for a single pass; for flip-averaged probabilities it applies the
    temperature fitted on averaged answers to the averaged answer, the mode it was fitted in. The argmax never moves.
    """
    temperatures = temperatures or {}
    out = {}
    for name, values in probabilities.items():
        temperature = float(temperatures.get(name, 1.0))
        values = values.float()
        if temperature != 1.0:
            tiny = torch.finfo(values.dtype).tiny
            values = (values.clamp_min(tiny).log() / temperature).softmax(dim=1)
        out[name] = values
    return out


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    settings: StepSettings,
    tta: bool = False,
    attribute_index: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Class probabilities per attribute for a uint8 batch already on the device (flip-averaged with `tta`).

    With `attribute_index`, only each image's own attribute is needed (a grouped model then runs each image
    through its own group's backbone alone; the other attributes' rows are not meaningful).
    """
    batch = prepare_images(images, settings, generator=None)

    def probabilities(inputs: torch.Tensor, temperatures: Mapping[str, float] | None) -> dict[str, torch.Tensor]:
        with autocast(inputs.device, settings.amp_dtype):
            outputs = model(inputs, attribute_index)
        return probabilities_from_logits(outputs, temperatures)

    if not tta:
        return probabilities(batch, settings.temperatures)
    # Flip averaging averages the raw answers, then applies the temperature fitted on averaged answers.
    averaged = flip_averaged(lambda inputs: probabilities(inputs, None), batch, settings.attributes)
    return tempered(averaged, settings.tta_temperatures)


@dataclass
class Evaluated:
    """What `evaluate` returns, identical on every rank."""

    predictions: dict[str, AttributePredictions]
    """Per attribute, the probabilities of its images in dataset order."""
    indices: dict[str, np.ndarray]
    """Per attribute, the dataset index of each row of its predictions (unreadable images have none)."""
    loss: float
    skipped: list[tuple[str, str]]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    context: DistributedContext,
    settings: StepSettings,
    num_classes: dict[str, int],
    tta: bool = False,
) -> Evaluated:
    """Probabilities of every validation image for its own attribute, gathered from all ranks."""
    model.eval()
    device = context.device
    skipped: list[tuple[str, str]] = []
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {a: [] for a in settings.attributes}
    loss_sum, seen = 0.0, 0
    for batch in labelled_batches(loader, skipped):
        images = batch["image"].to(device, non_blocking=True)
        attribute_index = batch["attribute_index"]
        probs = predict_probabilities(model, images, settings, tta=tta, attribute_index=attribute_index.to(device))
        for position, name in enumerate(settings.attributes):
            rows = (attribute_index == position).nonzero().flatten()
            if rows.numel() == 0:
                continue
            k = num_classes[name]
            chosen = probs[name][rows.to(device)].cpu().numpy()
            targets = batch["target"][rows].numpy()
            maybe = batch["maybe"][rows][:, :k].numpy()
            parts[name].append((batch["index"][rows].numpy(), chosen, targets, maybe))
            picked = chosen[np.arange(len(targets)), targets]
            loss_sum += float(-np.log(np.clip(picked, 1e-12, None)).sum())
            seen += len(targets)
    gathered = gather_objects((parts, loss_sum, seen, skipped), context)
    predictions: dict[str, AttributePredictions] = {}
    indices: dict[str, np.ndarray] = {}
    for name in settings.attributes:
        chunks = [chunk for rank_parts, *_ in gathered for chunk in rank_parts[name]]
        if not chunks:
            predictions[name] = AttributePredictions.empty(num_classes[name])
            indices[name] = np.zeros(0, dtype=np.int64)
            continue
        index = np.concatenate([c[0] for c in chunks])
        order = np.argsort(index, kind="stable")  # dataset order, whatever the sharding
        indices[name] = index[order]
        predictions[name] = AttributePredictions(
            probs=np.concatenate([c[1] for c in chunks])[order],
            targets=np.concatenate([c[2] for c in chunks])[order],
            maybe=np.concatenate([c[3] for c in chunks])[order],
        )
    total_loss = sum(g[1] for g in gathered)
    total_seen = sum(g[2] for g in gathered)
    all_skipped = [item for g in gathered for item in g[3]]
    return Evaluated(predictions, indices, total_loss / total_seen if total_seen else float("nan"), all_skipped)
