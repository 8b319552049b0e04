"""Scoring a finished run's checkpoint on its validation split or on a labelled test set, and writing the scoring."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from fashionattr.checkpoint import model_from_checkpoint, resolve_checkpoint_path, temperatures_of
from fashionattr.data.cache import describe_cache_miss, open_cache
from fashionattr.data.dataset import DatasetRoot, dataset_of_run
from fashionattr.data.datasets import LabelledImages, collate
from fashionattr.data.labels import LabelRecord
from fashionattr.data.split import apply_split, choose_split, read_split
from fashionattr.distributed import DistributedContext
from fashionattr.engine import StepSettings, evaluate, resolve_amp
from fashionattr.errors import UserError
from fashionattr.metrics import AttributePredictions, Scores, score
from fashionattr.run_dir import REPORT_NAME, SCORES_NAME, RunDir, confusion_plot_name
from fashionattr.schema import Schema, schema_mismatch

SPLIT_WORDS = {"val": "validation split", "train": "training split", "test": "test set", "labels": "labelled file"}


@dataclass(frozen=True)
class Measured:
    """What an evaluation measured: which model, on which images, how; written into scores.json and the report."""

    model: str
    epoch: int | None
    """Counted from 1, as metrics.csv and the summary count."""
    data: str
    split: str
    """val, train or test; `labels` for a --labels file."""
    labels: str | None
    tta: bool
    calibration: str
    """`calibrated` (the checkpoint's temperatures applied), `raw` (not applied) or `none stored`."""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "epoch": self.epoch, "data": self.data, "split": self.split,
                "labels": self.labels, "tta": self.tta, "calibration": self.calibration}  # fmt: skip

    @property
    def images(self) -> str:
        """The images scored, for a table header: `test images`, `val images`."""
        return f"{self.split} images"

    def describe(self) -> str:
        """One sentence for a report: the model, the images, TTA and calibration."""
        where = f"`{self.labels}`" if self.labels else f"the {SPLIT_WORDS.get(self.split, self.split)}"
        epoch = f" (epoch {self.epoch})" if self.epoch is not None else ""
        tta = "flip TTA" if self.tta else "single pass, no TTA"
        probabilities = {
            "calibrated": "calibrated probabilities",
            "raw": "raw probabilities (calibration off)",
            "none stored": "raw probabilities (the model stores no calibration)",
        }[self.calibration]
        return f"Model `{self.model}`{epoch}, scored on {where} of `{self.data}`; {tta}; {probabilities}."


@dataclass
class Evaluation:
    scores: Scores
    predictions: dict[str, AttributePredictions]
    schema: Schema
    records: dict[str, list[LabelRecord]]
    """Per attribute, the scored images in the row order of `predictions` (unreadable ones left out)."""
    skipped: list[tuple[str, str]]
    image_cache: str | None
    measured: Measured

    def answer_rows(self) -> tuple[list[LabelRecord], list[np.ndarray]]:
        """Every scored image with its probabilities, attribute by attribute: the rows of an answer file."""
        rows: list[LabelRecord] = []
        vectors: list[np.ndarray] = []
        for name, records in self.records.items():
            rows.extend(records)
            vectors.extend(self.predictions[name].probs)
        return rows, vectors


def run_split_records(run: RunDir, config: dict[str, Any], dataset: DatasetRoot, subset: str) -> list[LabelRecord]:
    """The training or validation images of a run: its own record of the split, else (older runs) the split rule."""
    records = dataset.read_labels()
    if run.split.is_file():
        source, assignment = run.split, read_split(run.split)
    else:
        choice = choose_split(records, config.get("split_file"), dataset.default_split_path, run.split,
                              float(config.get("val_fraction", 0.2)), int(config.get("split_seed", 0)),
                              dataset.path)  # fmt: skip
        source, assignment = choice.source, choice.assignment
    # A run's own record holds only its attributes' rows.
    split_attributes = {attribute for _, attribute in assignment}
    train, val = apply_split([r for r in records if r.attribute in split_attributes], assignment, source)
    return val if subset == "val" else train


def evaluation_records(
    run: RunDir, config: dict[str, Any], dataset: DatasetRoot, subset: str, labels: str | None
) -> list[LabelRecord]:
    if labels:
        return dataset.read_labels(labels)
    if subset == "test":
        if not dataset.answers_path.is_file():
            raise UserError(f"{dataset.answers_path}: no labelled test file; pass --labels FILE with the test labels")
        return dataset.read_labels(dataset.answers_path)
    return run_split_records(run, config, dataset, subset)


def check_same_schema(checkpoint: Path, schema: Schema, dataset: DatasetRoot, attributes: list[str]) -> None:
    """Refuse to score a model on a dataset whose schema gives its attributes other classes."""
    problem = schema_mismatch(schema, dataset.schema, attributes, str(dataset.path))
    if problem:
        raise UserError(f"{checkpoint}: the model was trained on another schema, so its scores would mean nothing: "
                        f"{problem}")  # fmt: skip


def evaluate_checkpoint(
    checkpoint: str | Path,
    context: DistributedContext,
    data: str | None = None,
    subset: str = "val",
    labels: str | None = None,
    tta: bool = False,
    batch_size: int = 64,
    workers: int = 2,
    calibrated: bool = True,
) -> Evaluation:
    """Score a checkpoint (file or run directory) on the chosen images; identical results under torchrun.

    `calibrated` applies the checkpoint's calibration temperatures, as predictors do; False scores raw probabilities.
    """
    path = resolve_checkpoint_path(checkpoint)
    model, schema, preprocessing, payload = model_from_checkpoint(path, context.device)
    config = payload.get("config", {})
    dataset = dataset_of_run(path, payload, data, require_labels=subset != "test" and labels is None)
    attributes = list(payload["attributes"])
    check_same_schema(path, schema, dataset, attributes)
    records = [r for r in evaluation_records(RunDir(path.parent), config, dataset, subset, labels)
               if r.attribute in attributes]  # fmt: skip
    if not records:
        raise UserError(f"{data}: no {subset} images for the attributes of {path}")
    paths = sorted({r.path for r in records})
    cache = open_cache(dataset.path, paths, preprocessing)
    if cache is None and context.is_main:
        miss = describe_cache_miss(dataset.path, paths, preprocessing)
        if miss:
            print(f"note: {miss}", flush=True)
    images = LabelledImages(dataset.path, records, schema, attributes, preprocessing, cache)
    shard = Subset(images, list(range(context.rank, len(images), context.world_size)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
    channels_last = context.device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    temperatures = temperatures_of(payload, path)
    settings = StepSettings(attributes=attributes, preprocessing=preprocessing, augmentation=None,
                            amp_dtype=resolve_amp("auto", context.device), channels_last=channels_last,
                            temperatures=temperatures if calibrated else None)  # fmt: skip
    epoch = payload.get("epoch")
    measured = Measured(
        model=str(path),
        epoch=epoch + 1 if isinstance(epoch, int) else None,
        data=str(dataset.path),
        split="labels" if labels else subset,
        labels=labels,
        tta=tta,
        calibration="none stored" if not temperatures else "calibrated" if calibrated else "raw",
    )
    num_classes = {name: schema.attribute(name).num_classes for name in attributes}
    result = evaluate(model, loader, context, settings, num_classes, tta=tta)
    scored = {name: [images.records[i] for i in result.indices[name]] for name in attributes}
    return Evaluation(score(schema.subset(attributes), result.predictions), result.predictions,
                      schema.subset(attributes), scored, result.skipped,
                      str(cache.directory) if cache is not None else None, measured)  # fmt: skip


def write_evaluation(result: Evaluation, out: Path) -> None:
    """scores.json, a confusion-matrix PNG per attribute and report.md in `out`."""
    from fashionattr.calibration import expected_calibration_error
    from fashionattr.io import atomic_write_text, write_json
    from fashionattr.report import markdown_table, plot_confusion, run_scores_table

    errors = {name: expected_calibration_error(p) for name, p in result.predictions.items() if len(p)}
    finite_errors = {name: None if np.isnan(e) else e for name, e in errors.items()}
    measured = result.measured
    scores = {**measured.to_dict(), **result.scores.to_dict(), "image_cache": result.image_cache,
              "expected_calibration_error": finite_errors}  # fmt: skip
    write_json(out / SCORES_NAME, scores)
    title = f"# Evaluation on the {SPLIT_WORDS.get(measured.split, measured.split)}"
    lines = [title, "", measured.describe(), "", run_scores_table(result.schema, scores, measured.images)]
    if errors:
        rows = [[result.schema.attribute(name).short_name, f"{100 * e:.1f}"] for name, e in errors.items()]
        lines += ["Expected calibration error (15 bins) of the probabilities scored:", "",
                  markdown_table(rows, ["attribute", "ECE %"])]  # fmt: skip
    for attribute in result.schema:
        entry = result.scores.attributes.get(attribute.name)
        if entry is None or not entry.count:
            continue
        name = confusion_plot_name(attribute.short_name)
        plot_confusion(entry.confusion, attribute.classes, attribute.short_name, out / name)
        lines += [f"## {attribute.short_name}", "", f"![{attribute.short_name}]({name})", ""]
    if result.skipped:
        lines += ["## Skipped images", "", *[f"- {p}: {reason}" for p, reason in result.skipped], ""]
    atomic_write_text(out / REPORT_NAME, "\n".join(lines))
