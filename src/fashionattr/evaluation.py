"""Scoring a finished run's checkpoint on its validation split or on a labelled test set, and writing the scoring."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from fashionattr.applicability import THRESHOLD
from fashionattr.checkpoint import model_from_checkpoint, resolve_checkpoint_path, temperatures_of
from fashionattr.data.cache import describe_cache_miss, open_cache
from fashionattr.data.complete_labels import Truth, read_complete
from fashionattr.data.dataset import DatasetRoot, dataset_of_run
from fashionattr.data.images import ImageError
from fashionattr.data.labels import LabelRecord
from fashionattr.data.split import apply_split, choose_split, read_split
from fashionattr.data.torch_dataset import LabelledImages, collate
from fashionattr.distributed import DistributedContext
from fashionattr.engine import StepSettings, evaluate, resolve_amp
from fashionattr.errors import UserError
from fashionattr.metrics import AttributePredictions, Scores, score
from fashionattr.run_dir import REPORT_NAME, SCORES_NAME, TAG_PLOT_NAME, TAGS_NAME, RunDir, confusion_plot_name
from fashionattr.schema import Schema, schema_mismatch
from fashionattr.tag_scores import UNDECIDED_TRUTH, TagAnswers, TagScores, score_tags

if TYPE_CHECKING:
    from fashionattr.inference.predictor import Predictor

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
    dataset: Path
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
                            temperatures=temperatures if calibrated else None,
                            tta_temperatures=temperatures_of(payload, path, tta=True) if calibrated else None,
                            )  # fmt: skip
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
                      schema.subset(attributes), dataset.path, scored, result.skipped,
                      str(cache.directory) if cache is not None else None, measured)  # fmt: skip


def score_catalogue_tags(predictor: Predictor, root: Path, truth: Truth, labelled: Mapping[str, str],
                         batch_size: int = 64, workers: int = 2,
                         allowed: Mapping[str, Collection[str]] | None = None) -> TagScores:  # fmt: skip
    """Every attribute the predictor answers, asked of every image in `truth`, scored as a catalogue shows tags.

    `labelled` gives each image's labelled attribute (for the table of how often each attribute is tagged on each
    labelled set); `allowed`, where given for an image, the only attributes it may be tagged with (its product
    category's, `Schema.categories`); unreadable images are left out.
    """
    paths = sorted(truth)
    columns: dict[str, list[tuple[int, int, float, bool]]] = {name: [] for name in predictor.attributes}
    groups: list[str] = []
    for path, prediction in zip(paths, predictor.predict_paths([root / p for p in paths], batch_size, workers),
                                strict=True):  # fmt: skip
        if isinstance(prediction, ImageError):
            continue
        groups.append(labelled.get(path, "unlabelled"))
        for name, answer in prediction.attributes.items():
            known = truth[path].get(name, None)
            value = UNDECIDED_TRUTH if known is None else known
            shown = answer.applies and (allowed is None or path not in allowed or name in allowed[path])
            columns[name].append((value, answer.index, answer.applicability, shown))
    answers = {}
    for name, rows in columns.items():
        table = np.array(rows, dtype=float).reshape(-1, 4)
        answers[name] = TagAnswers(truth=table[:, 0].astype(int), predicted=table[:, 1].astype(int),
                                   applicability=table[:, 2], applies=table[:, 3].astype(bool),
                                   invisible_index=predictor.invisible.get(name))  # fmt: skip
    scores = score_tags(answers, groups)
    scores.threshold = predictor.applicability_threshold
    return scores


def evaluate_tags(checkpoint: str | Path, complete: str | Path, result: Evaluation, root: Path, tta: bool = False,
                  workers: int = 2, device: str = "auto", calibrated: bool = True,
                  threshold: float = THRESHOLD) -> TagScores:  # fmt: skip
    """The tags a catalogue shows for the images `result` scored, against the complete labels in `complete`; a tag
    is shown where its applicability reaches `threshold`."""
    from fashionattr.inference.predictor import Predictor

    predictor = Predictor.from_path(checkpoint, device=device, tta=tta, calibrated=calibrated,
                                    applicability_threshold=threshold)  # fmt: skip
    records = [record for rows in result.records.values() for record in rows]
    wanted = {record.path for record in records}
    truth = {path: answers for path, answers in read_complete(complete, predictor.schema).items() if path in wanted}
    if not truth:
        raise UserError(f"{complete}: holds none of the {len(wanted)} images evaluated; is it this dataset's file?")
    return score_catalogue_tags(predictor, root, truth, {r.path: r.attribute for r in records}, workers=workers)


def write_evaluation(result: Evaluation, out: Path, tags: TagScores | None = None) -> None:
    """scores.json, a confusion-matrix PNG per attribute and report.md in `out`; with `tags`, tags.json and its plot."""
    from fashionattr.calibration import expected_calibration_error
    from fashionattr.io import atomic_write_text, write_json
    from fashionattr.render.plots import plot_confusion, plot_tag_curves
    from fashionattr.render.tables import markdown_table, scores_table
    from fashionattr.report import tag_scores_section

    errors = {name: expected_calibration_error(p) for name, p in result.predictions.items() if len(p)}
    finite_errors = {name: None if np.isnan(e) else e for name, e in errors.items()}
    measured = result.measured
    scores = {**measured.to_dict(), **result.scores.to_dict(), "image_cache": result.image_cache,
              "expected_calibration_error": finite_errors}  # fmt: skip
    write_json(out / SCORES_NAME, scores)
    title = f"# Evaluation on the {SPLIT_WORDS.get(measured.split, measured.split)}"
    lines = [title, "", measured.describe(), "", scores_table(result.schema, scores, measured.images)]
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
    if tags is not None:
        record = tags.to_dict()
        write_json(out / TAGS_NAME, record)
        plot_tag_curves(
            record["curves"], out / TAG_PLOT_NAME, marked=THRESHOLD if tags.threshold is None else tags.threshold
        )
        lines += tag_scores_section(record, TAG_PLOT_NAME)
    if result.skipped:
        lines += ["## Skipped images", "", *[f"- {p}: {reason}" for p, reason in result.skipped], ""]
    atomic_write_text(out / REPORT_NAME, "\n".join(lines))
