"""Out-of-sample class probabilities for the labels under review: no image is scored by a model that learnt its label.

A model reproduces the labels it trained on, wrong ones included, so reviewing with in-sample probabilities would
hide exactly the errors sought. The validation split is out of sample for the run's own model; the training split
needs K-fold cross-validation: K models, each trained with the run's own config (through the project's `fit`) on
all labelled rows but one fold, each scoring the fold it left out.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from fashionattr.checkpoint import load_checkpoint
from fashionattr.config import TrainConfig, resolve_config
from fashionattr.data.dataset import DatasetRoot, dataset_of_run
from fashionattr.data.duplicates import same_image_key
from fashionattr.data.labels import LabelRecord, read_labels
from fashionattr.data.split import write_split
from fashionattr.distributed import DistributedContext
from fashionattr.errors import UserError
from fashionattr.evaluation import evaluate_checkpoint, run_split_records
from fashionattr.metrics import AttributePredictions
from fashionattr.run_dir import RunDir
from fashionattr.schema import Schema
from fashionattr.training import fit


@dataclass
class OutOfSample:
    """Per attribute, the reviewed rows and their out-of-sample probabilities, row for row."""

    dataset: DatasetRoot
    schema: Schema
    records: dict[str, list[LabelRecord]]
    predictions: dict[str, AttributePredictions]
    source: str
    """How the probabilities were made, in words for the report."""


def dataset_of(run: RunDir, data: str | None) -> tuple[dict, DatasetRoot]:
    """The run's stored training config and the dataset it trained on (or `data`)."""
    payload = load_checkpoint(run.checkpoint)
    return payload.get("config", {}), dataset_of_run(run.checkpoint, payload, data)


def validation_split(run: RunDir, context: DistributedContext, data: str | None = None, batch_size: int = 64,
                     workers: int = 2) -> OutOfSample:  # fmt: skip
    """The run's own model on its validation split (raw probabilities: the temperatures were fit on these labels)."""
    _, dataset = dataset_of(run, data)
    result = evaluate_checkpoint(run.checkpoint, context, data=str(dataset.path), subset="val", batch_size=batch_size,
                                 workers=workers, calibrated=False)  # fmt: skip
    return OutOfSample(dataset, result.schema, result.records, result.predictions,
                       f"the run's model on its validation split ({run.checkpoint})")  # fmt: skip


def assign_folds(records: list[LabelRecord], folds: int, seed: int = 0,
                 root: str | Path | None = None) -> dict[tuple[str, str], int]:  # fmt: skip
    """A fold for each row, stratified by (attribute, class) and fixed by the file names alone (as the split is).

    An image's rows for several attributes, and its byte-identical copies (with the dataset `root`), share the
    fold of its first row in that order: a fold's model must not train on an image it then scores.
    """
    strata: dict[tuple[str, int], list[LabelRecord]] = defaultdict(list)
    for record in records:
        strata[(record.attribute, record.target)].append(record)
    by_row: dict[tuple[str, str], tuple[str, int]] = {}
    for members in strata.values():
        ranked = sorted((hashlib.sha256(f"fold:{seed}:{r.attribute}:{r.path}".encode()).hexdigest(), r)
                        for r in members)  # fmt: skip
        for i, (rank, record) in enumerate(ranked):
            by_row[(record.path, record.attribute)] = (rank, i % folds)
    image_of = same_image_key(root, (r.path for r in records))
    first: dict[str, tuple[str, int]] = {}
    for (path, _), (rank, fold) in by_row.items():
        image = image_of[path]
        first[image] = min(first.get(image, (rank, fold)), (rank, fold))
    return {(path, attribute): first[image_of[path]][1] for path, attribute in by_row}


def cross_validated(run: RunDir, folds: int, out: Path, context: DistributedContext, data: str | None = None,
                    epochs: int | None = None, batch_size: int = 64, workers: int = 2) -> OutOfSample:  # fmt: skip
    """Out-of-fold probabilities for every training row of `run`: K models trained with the run's config.

    Fold k's model trains on every labelled row outside fold k (the run's validation rows included) and scores
    fold k. Each fold's run folder is kept under `out/fold-k`; a finished one is reused, an interrupted one resumed.
    """
    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    stored, dataset = dataset_of(run, data)
    training = run_split_records(run, stored, dataset, "train")
    attributes = sorted({r.attribute for r in training}, key=dataset.schema.names.index)
    everything = read_labels(dataset.labels_path, dataset.schema)  # a split file must name every labelled row
    fold_of = assign_folds(training, folds, root=dataset.path)
    base = _config(stored, dataset, epochs)
    records: dict[str, list[LabelRecord]] = {a: [] for a in attributes}
    parts: dict[str, list[AttributePredictions]] = {a: [] for a in attributes}
    for k in range(folds):
        fold_run = RunDir(out / f"fold-{k}")
        fold_run.path.mkdir(parents=True, exist_ok=True)
        split_file = fold_run.path / "fold_split.csv"
        write_split(split_file, {(r.path, r.attribute): "val" if fold_of.get((r.path, r.attribute)) == k else "train"
                                 for r in everything})  # fmt: skip
        if not fold_run.is_finished:
            config = replace(base, out=str(fold_run.path), split_file=str(split_file))
            fit(config, attributes, fold_run.path, context, resume=fold_run.last.is_file())
        result = evaluate_checkpoint(fold_run.best, context, data=str(dataset.path), subset="val",
                                     batch_size=batch_size, workers=workers, calibrated=False)  # fmt: skip
        for name in attributes:
            records[name] += result.records.get(name, [])
            if name in result.predictions:
                parts[name].append(result.predictions[name])
    predictions = {name: AttributePredictions.concat(chunks) for name, chunks in parts.items() if chunks}
    schema = dataset.schema.subset(attributes)
    source = f"{folds}-fold cross-validation over the training split of {run} ({base.epochs} epochs each)"
    return OutOfSample(dataset, schema, records, predictions, source)


def _config(stored: dict, dataset: DatasetRoot, epochs: int | None) -> TrainConfig:
    """The run's own settings, read back through the one config resolver; only the epochs may be overridden."""
    settings = {key: value for key, value in stored.items() if value is not None}
    settings.update(data=str(dataset.path), progress=False)
    if epochs is not None:
        settings["epochs"] = epochs
    if not stored:
        raise UserError(f"{dataset.path}: the run's checkpoint holds no training config to repeat for the folds")
    return resolve_config(None, settings)
