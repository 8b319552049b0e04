"""The challenge's scores: accuracy, Basic Precision (BP), AP/mAP with `m` labels skipped, confusion matrices.

Every function takes plain numpy arrays per attribute, so the training loop, the submission scorer and the
tests all score with the same code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionattr.schema import Schema

NO_ANSWER_COUNTED = "every answer landed on a class labelled 'm', so no answer counted and AP is undefined"


def map_notes(left_out: Sequence[str], with_images: int) -> list[str]:
    """The note under a score table when attributes are left out of mAP (why: `Scores.mean_average_precision`)."""
    if not left_out:
        return []
    names = ", ".join(name.removesuffix("_labels") for name in left_out)
    others = with_images - len(left_out)
    return [f"AP n/a for {names}: {NO_ANSWER_COUNTED}; mAP is the mean over the other {others} attribute(s) "
            "(accuracy and BP still count it)."]  # fmt: skip


TEMPERATURE_RANGE = (0.05, 20.0)
"""Calibration temperatures searched (calibration.py), and the only ones a stored model may hold: beyond them a
model is broken rather than miscalibrated (the checkpoint and ONNX readers refuse them)."""


@dataclass
class AttributePredictions:
    """One attribute's model outputs and labels, aligned row by row.

    `probs` is (N, K) class probabilities, `targets` (N,) the index of each image's `y` class, and `maybe` (N, K)
    marks the classes labelled `m`, which AP treats as neither right nor wrong.
    """

    probs: np.ndarray
    targets: np.ndarray
    maybe: np.ndarray

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float64)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.maybe = np.asarray(self.maybe, dtype=bool)
        if self.probs.ndim != 2:
            raise ValueError(f"probs must be a 2-D (images, classes) array, got shape {self.probs.shape}")
        count, num_classes = self.probs.shape
        if self.targets.shape != (count,):
            raise ValueError(
                f"targets must have shape ({count},) to match probs {self.probs.shape}, got {self.targets.shape}"
            )
        if self.maybe.shape != self.probs.shape:
            raise ValueError(f"maybe must have the shape of probs {self.probs.shape}, got {self.maybe.shape}")
        if count and (self.targets.min() < 0 or self.targets.max() >= num_classes):
            raise ValueError(
                f"targets must be class indices in [0, {num_classes}), got {self.targets.min()}..{self.targets.max()}"
            )

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])

    @classmethod
    def empty(cls, num_classes: int) -> AttributePredictions:
        """No images yet: keeps the class count so scoring still knows the confusion matrix size."""
        return cls(np.zeros((0, num_classes)), np.zeros(0, dtype=np.int64), np.zeros((0, num_classes), dtype=bool))

    @classmethod
    def concat(cls, parts: Sequence[AttributePredictions]) -> AttributePredictions:
        """Join batches (or data-parallel shards) of one attribute into one set of predictions."""
        if not parts:
            raise ValueError("concat needs at least one AttributePredictions to know the class count")
        class_counts = {part.num_classes for part in parts}
        if len(class_counts) > 1:
            raise ValueError(f"cannot concatenate predictions with different class counts {sorted(class_counts)}")
        return cls(
            np.concatenate([part.probs for part in parts]),
            np.concatenate([part.targets for part in parts]),
            np.concatenate([part.maybe for part in parts]),
        )


def maybe_mask(maybe_indices: Sequence[Iterable[int]], num_classes: int) -> np.ndarray:
    """Turn per-image lists of `m` class indices (as `LabelRecord.maybe` holds them) into an (N, K) mask."""
    mask = np.zeros((len(maybe_indices), num_classes), dtype=bool)
    for row, indices in enumerate(maybe_indices):
        mask[row, list(indices)] = True
    return mask


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Share of images whose argmax is the `y` class; nan when there are no images (so means can skip it)."""
    probs = np.asarray(probs)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return math.nan
    return float(np.mean(probs.argmax(axis=1) == targets))


def average_precision(probs: np.ndarray, targets: np.ndarray, maybe: np.ndarray) -> float:
    """The challenge's AP for one attribute (design.md section 3), independent of row order.

    Rule: for each image take its top probability p and its argmax. Sort images by p, descending. Walk down the
    list: an argmax on the `y` class counts as correct; an argmax on an `m` class is skipped (neither correct nor
    wrong, and it adds no point to the mean); any other argmax counts as wrong. AP is the mean, over the counted
    images, of the running precision (correct so far / counted so far) at that image. Returns nan when no image
    is counted.

    Ties: images with exactly the same p are one group, and every counted image of the group gets the precision
    after the whole group, as if the list were cut at the threshold p (sklearn's precision-recall curve treats
    equal scores the same way). Walking tied images one by one would make AP depend on the order of the label
    rows: answer files rounded to six decimals (as they once were, and as other tools may) tie a confident model's
    answers at 1.000000, and reversing such a file once moved one attribute's AP from 91% to 35%; a float32
    softmax itself ties answers within 6e-8 of 1. Without ties this is exactly the walk above.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    maybe = np.asarray(maybe, dtype=bool)
    count = len(targets)
    if count == 0:
        return math.nan
    rows = np.arange(count)
    predicted = probs.argmax(axis=1)
    confidence = probs[rows, predicted]
    order = np.argsort(-confidence, kind="stable")
    correct = (predicted == targets)[order]
    # A `y` hit stays correct even if the same class were also marked `m` in a malformed mask.
    counted = ~(maybe[rows, predicted][order] & ~correct)
    if not counted.any():
        return math.nan
    sorted_confidence = confidence[order]
    group_starts = np.r_[True, sorted_confidence[1:] != sorted_confidence[:-1]]
    group_ends = np.r_[np.flatnonzero(group_starts)[1:] - 1, count - 1]
    end_of_group = group_ends[np.cumsum(group_starts) - 1]  # for each sorted row, the last row of its tie group
    correct_so_far = np.cumsum(correct)[end_of_group]
    counted_so_far = np.cumsum(counted)[end_of_group]
    return float(np.mean(correct_so_far[counted] / counted_so_far[counted]))


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs: rows are true classes, columns predicted ones."""
    targets = np.asarray(targets, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if targets.shape != preds.shape:
        raise ValueError(f"targets {targets.shape} and preds {preds.shape} must have the same shape")
    for name, values in (("targets", targets), ("preds", preds)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got {values.min()}..{values.max()}")
    flat = np.bincount(targets * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (of the column) and recall (of the row); 0 where a class was never predicted or seen."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    return precision, recall


@dataclass
class AttributeScores:
    """Every score for one attribute; `accuracy` and `average_precision` are fractions (nan with no images)."""

    name: str
    accuracy: float
    average_precision: float
    count: int
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @property
    def no_answer_counted(self) -> bool:
        """Images were scored but every answer landed on a class labelled `m`, so AP is undefined (nan)."""
        return self.count > 0 and math.isnan(self.average_precision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "accuracy": _json_float(self.accuracy),
            "average_precision": _json_float(self.average_precision),
            **({"average_precision_note": NO_ANSWER_COUNTED} if self.no_answer_counted else {}),
            "count": self.count,
            "confusion": self.confusion.tolist(),
            "precision": [_json_float(value) for value in self.precision],
            "recall": [_json_float(value) for value in self.recall],
        }


def score_attribute(name: str, predictions: AttributePredictions) -> AttributeScores:
    """All scores for one attribute's predictions."""
    confusion = confusion_matrix(predictions.targets, predictions.probs.argmax(axis=1), predictions.num_classes)
    precision, recall = precision_recall(confusion)
    return AttributeScores(
        name=name,
        accuracy=accuracy(predictions.probs, predictions.targets),
        average_precision=average_precision(predictions.probs, predictions.targets, predictions.maybe),
        count=len(predictions),
        confusion=confusion,
        precision=precision,
        recall=recall,
    )


@dataclass
class Scores:
    """Scores for every attribute of a schema, in schema order, and the challenge's summary numbers."""

    attributes: dict[str, AttributeScores]

    @property
    def basic_precision(self) -> float:
        """The challenge's BP: accuracy averaged over the attributes that have images (nan if none has)."""
        return _mean_of_defined(scores.accuracy for scores in self.attributes.values() if scores.count)

    @property
    def mean_average_precision(self) -> float:
        """The challenge's ranking score: mean AP over the attributes whose AP is defined (nan if none is).

        An attribute with images but no counted answer (every answer on an `m` class) has no AP and is left out of
        the mean, not counted as 0 or 1. The challenge defines AP as a mean over counted answers, and a mean of
        nothing is undefined; 0 would punish answers the labels call acceptable (that is what `m` marks), 1 would
        reward a ranking nobody checked, and either would move an 8-attribute mAP by 1/8 on no evidence. Its
        accuracy still counts in BP. It is never dropped silently: `map_leaves_out` names it, and every table
        prints n/a and a note (`notes`).
        """
        return _mean_of_defined(scores.average_precision for scores in self.attributes.values() if scores.count)

    @property
    def map_leaves_out(self) -> list[str]:
        """Attributes with images whose AP is undefined, so mAP is the mean over the others."""
        return [name for name, scores in self.attributes.items() if scores.no_answer_counted]

    @property
    def notes(self) -> list[str]:
        """Sentences a table of these scores must carry (an attribute left out of mAP, and why)."""
        return map_notes(self.map_leaves_out, sum(1 for scores in self.attributes.values() if scores.count))

    @property
    def count(self) -> int:
        return sum(scores.count for scores in self.attributes.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists instead of arrays, None instead of nan."""
        return {
            "basic_precision": _json_float(self.basic_precision),
            "mean_average_precision": _json_float(self.mean_average_precision),
            "count": self.count,
            "map_leaves_out": self.map_leaves_out,
            "notes": self.notes,
            "attributes": {name: scores.to_dict() for name, scores in self.attributes.items()},
        }


def score(schema: Schema, predictions: Mapping[str, AttributePredictions]) -> Scores:
    """Score every schema attribute; attributes without predictions get count 0 and stay out of BP and mAP.

    Keys may be full or short attribute names; a key the schema does not know, or a class count that differs
    from the schema's, is a bug in the caller and raises ValueError.
    """
    by_name: dict[str, AttributePredictions] = {}
    for key, attribute_predictions in predictions.items():
        try:
            attribute = schema.attribute(key)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        if attribute_predictions.num_classes != attribute.num_classes:
            raise ValueError(
                f"predictions for {attribute.name} have {attribute_predictions.num_classes} classes "
                f"but the schema gives it {attribute.num_classes}"
            )
        by_name[attribute.name] = attribute_predictions
    scores: dict[str, AttributeScores] = {}
    for attribute in schema:
        found = by_name.get(attribute.name)
        scores[attribute.name] = score_attribute(
            attribute.name, found if found is not None else AttributePredictions.empty(attribute.num_classes)
        )
    return Scores(scores)


def _mean_of_defined(values: Iterable[float]) -> float:
    defined = [value for value in values if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def _json_float(value: float) -> float | None:
    """JSON has no nan; None tells a reader 'undefined' without breaking strict parsers."""
    value = float(value)
    return None if math.isnan(value) else value
