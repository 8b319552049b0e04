"""Fitting a run's applicability decision after training: which attributes a photo shows (`fashionattr.applicability`).

The model's pooled features of the run's training images, and of the dataset's images of attributes the model does
not answer (a per-attribute model sees only its own), are what the methods learn from; the validation images set the
`mahalanobis` distance. Training calls this after calibration; `fashionattr calibrate` refits older runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fashionattr.applicability.fitting import Embedded, fit_applicability
from fashionattr.applicability.modules import Applicability
from fashionattr.checkpoint import model_from_checkpoint, write_applicability
from fashionattr.data.cache import open_cache
from fashionattr.data.labels import LabelRecord
from fashionattr.data.preprocessing import Preprocessing, normalize_batch
from fashionattr.data.torch_dataset import LabelledImages, collate
from fashionattr.models.networks import AttributeNet
from fashionattr.schema import Schema

MAX_IMAGES_PER_ATTRIBUTE = 3000
"""Images of each labelled attribute the fit reads at most (chosen at random, fixed seed): enough for a linear fit."""


def sample_records(records: Sequence[LabelRecord], limit: int = MAX_IMAGES_PER_ATTRIBUTE,
                   seed: int = 0) -> list[LabelRecord]:  # fmt: skip
    """At most `limit` records of each attribute, the same ones on every run."""
    rng = np.random.default_rng(seed)
    by_attribute: dict[str, list[LabelRecord]] = {}
    for record in records:
        by_attribute.setdefault(record.attribute, []).append(record)
    kept: list[LabelRecord] = []
    for group in by_attribute.values():
        order = rng.permutation(len(group))[:limit] if len(group) > limit else range(len(group))
        kept.extend(group[i] for i in sorted(order))
    return kept


@torch.no_grad()
def embed_records(model: AttributeNet, preprocessing: Preprocessing, root: Path, schema: Schema,
                  records: Sequence[LabelRecord], device: torch.device, batch_size: int = 64,
                  workers: int = 0) -> Embedded:  # fmt: skip
    """The model's pooled features of each readable record's image, with its labelled attribute and class."""
    records = list(records)
    if not records:
        return Embedded(np.zeros((0, model.num_features), np.float32), np.zeros(0, int), np.zeros(0, int))
    cache = open_cache(root, sorted({r.path for r in records}), preprocessing)
    images = LabelledImages(root, records, schema, schema.names, preprocessing, cache)
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    model.eval()
    position = {name: i for i, name in enumerate(model.attributes)}
    features, attributes, targets = [], [], []
    for batch in loader:
        if "image" not in batch:
            continue
        pooled, _ = model.features_and_logits(normalize_batch(batch["image"].to(device).float(), preprocessing))
        features.append(pooled.float().cpu().numpy())
        labelled = [images.records[int(i)].attribute for i in batch["index"]]
        attributes.append(np.array([position.get(name, -1) for name in labelled]))
        targets.append(batch["target"].numpy())
    return Embedded(np.concatenate(features), np.concatenate(attributes), np.concatenate(targets))


def fit_run_applicability(checkpoint: Path, method: str, root: Path, train: Sequence[LabelRecord],
                          val: Sequence[LabelRecord], device: torch.device | str = "cpu",
                          workers: int = 0) -> Applicability:  # fmt: skip
    """Fit `method` for the model in `checkpoint` on images under dataset `root`, and store it in the checkpoint.

    `train` holds the run's training images and any images of attributes the model does not answer; `val` the
    run's validation images.
    """
    model, schema, preprocessing, _ = model_from_checkpoint(checkpoint, device)
    device = torch.device(device)
    fitted_on = embed_records(model, preprocessing, root, schema, sample_records(train), device, workers=workers)
    held_out = embed_records(model, preprocessing, root, schema, sample_records(val), device, workers=workers)
    module = fit_applicability(method, fitted_on, held_out, schema, model.attributes, model.applicability_head())
    write_applicability(checkpoint, module.describe(), module.state_dict())
    return module
