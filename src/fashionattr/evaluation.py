"""Scoring a finished run's checkpoint on its validation split or on a labelled test set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from fashionattr.checkpoint import model_from_checkpoint, resolve_checkpoint_path
from fashionattr.data.cache import open_cache
from fashionattr.data.datasets import LabelledImages, collate
from fashionattr.data.labels import LabelRecord
from fashionattr.data.layout import DatasetLayout
from fashionattr.data.split import apply_split, read_split
from fashionattr.distributed import DistributedContext
from fashionattr.engine import StepSettings, evaluate, resolve_amp
from fashionattr.errors import UserError
from fashionattr.metrics import AttributePredictions, Scores, score
from fashionattr.schema import Schema


@dataclass
class Evaluation:
    scores: Scores
    predictions: dict[str, AttributePredictions]
    schema: Schema
    records: list[LabelRecord]
    skipped: list[tuple[str, str]]


def split_file_of_run(run_dir: Path, config: dict[str, Any], layout: DatasetLayout) -> Path:
    """The split a run trained with: its explicit file, the dataset's default one, or the copy in the run."""
    candidates = [config.get("split_file"), layout.default_split_path, run_dir / "split.csv"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise UserError(f"{run_dir}: cannot find the split this run used; pass --labels to score a labelled file instead")


def evaluation_records(
    run_dir: Path, config: dict[str, Any], layout: DatasetLayout, subset: str, labels: str | None
) -> list[LabelRecord]:
    if labels:
        return layout.read_labels(labels)
    if subset == "test":
        if not layout.answers_path.is_file():
            raise UserError(f"{layout.answers_path}: no labelled test file; pass --labels FILE with the test labels")
        return layout.read_labels(layout.answers_path)
    records = layout.read_labels()
    split_path = split_file_of_run(run_dir, config, layout)
    train, val = apply_split(records, read_split(split_path), split_path)
    return val if subset == "val" else train


def evaluate_checkpoint(
    checkpoint: str | Path,
    context: DistributedContext,
    data: str | None = None,
    subset: str = "val",
    labels: str | None = None,
    tta: bool = False,
    batch_size: int = 64,
    workers: int = 2,
) -> Evaluation:
    """Score a checkpoint (file or run directory) on the chosen images; identical results under torchrun."""
    path = resolve_checkpoint_path(checkpoint)
    model, schema, preprocessing, payload = model_from_checkpoint(path, context.device)
    config = payload.get("config", {})
    data = data or config.get("data")
    if not data:
        raise UserError(f"{path}: the checkpoint does not say which dataset it was trained on; pass --data")
    layout = DatasetLayout.open(data, require_labels=subset != "test" and labels is None)
    attributes = list(payload["attributes"])
    records = [r for r in evaluation_records(path.parent, config, layout, subset, labels) if r.attribute in attributes]
    if not records:
        raise UserError(f"{data}: no {subset} images for the attributes of {path}")
    paths = sorted({r.path for r in records})
    cache = open_cache(layout.root, paths, preprocessing.img_size, preprocessing.interpolation)
    dataset = LabelledImages(layout.root, records, schema, attributes, preprocessing.img_size,
                             preprocessing.interpolation, cache)  # fmt: skip
    shard = Subset(dataset, list(range(context.rank, len(dataset), context.world_size)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    channels_last = context.device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    settings = StepSettings(attributes=attributes, preprocessing=preprocessing, augmentation=None,
                            amp_dtype=resolve_amp("auto", context.device), channels_last=channels_last)  # fmt: skip
    num_classes = {name: schema.attribute(name).num_classes for name in attributes}
    predictions, _, skipped = evaluate(model, loader, context, settings, num_classes, tta=tta)
    return Evaluation(score(schema.subset(attributes), predictions), predictions, schema.subset(attributes),
                      dataset.records, skipped)  # fmt: skip


def write_evaluation(result: Evaluation, out: Path) -> None:
    """scores.json, a confusion-matrix PNG per attribute and a Markdown report in `out`."""
    from fashionattr.io import atomic_write_text
    from fashionattr.report import plot_confusion, run_scores_table

    scores = result.scores.to_dict()
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=1))
    lines = ["# Evaluation", "", run_scores_table(result.schema, scores)]
    for attribute in result.schema:
        entry = result.scores.attributes.get(attribute.name)
        if entry is None or not entry.count:
            continue
        name = f"confusion_{attribute.short_name}.png"
        plot_confusion(entry.confusion, attribute.classes, attribute.short_name, out / name)
        lines += [f"## {attribute.short_name}", "", f"![{attribute.short_name}]({name})", ""]
    if result.skipped:
        lines += ["## Skipped images", "", *[f"- {p}: {reason}" for p, reason in result.skipped], ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
