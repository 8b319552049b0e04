"""Models and batches the model figures share: built once, from the bench's own images, on the bench's device."""

from __future__ import annotations

from typing import Any

import torch

from fashionattr.bench.context import BenchContext
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.data.torch_dataset import LabelledImages, collate
from fashionattr.models.backbones import model_preprocessing
from fashionattr.models.networks import AttributeNet, MultiTaskNet, create_model


def new_model(context: BenchContext, layout: str = "multitask", attributes: list[str] | None = None,
              arch: str | None = None, seed: int = 0) -> AttributeNet:  # fmt: skip
    """A freshly initialised model of the bench's architecture (the same seed gives the same weights)."""
    torch.manual_seed(seed)
    model = create_model(arch or context.settings.arch, context.data.schema, layout=layout, attributes=attributes)
    model.to(context.device)
    return model


def shared_multitask(context: BenchContext) -> MultiTaskNet:
    """One multitask model in eval mode, reused by the inference figures."""
    if "multitask" not in context.shared:
        context.shared["multitask"] = new_model(context).eval()
    return context.shared["multitask"]


def bench_preprocessing(context: BenchContext, img_size: int | None = None, arch: str | None = None) -> Preprocessing:
    """The preprocessing training would give the bench's architecture at the bench's size."""
    return model_preprocessing(arch or context.settings.arch, img_size or context.settings.img_size)


def labelled_batch(context: BenchContext, img_size: int | None = None) -> dict[str, Any]:
    """The first `batch_size` labelled images as the training loader collates them (uint8, targets, masks)."""
    data, settings = context.data, context.settings
    dataset = LabelledImages(data.root, data.records, data.schema, data.schema.names,
                             bench_preprocessing(context, img_size))  # fmt: skip
    # Spread the batch over attributes, as a shuffled loader would.
    step = max(1, len(dataset) // settings.batch_size)
    items = [dataset[i] for i in range(0, len(dataset), step)][: settings.batch_size]
    while len(items) < settings.batch_size:
        items.extend(items[: settings.batch_size - len(items)])
    return collate(items)


def image_batch(context: BenchContext, img_size: int | None = None) -> torch.Tensor:
    """A uint8 (N,3,S,S) batch of letterboxed bench images, on the bench's device."""
    key = f"images-{img_size or context.settings.img_size}"
    if key not in context.shared:
        context.shared[key] = labelled_batch(context, img_size)["image"].to(context.device)
    return context.shared[key]
