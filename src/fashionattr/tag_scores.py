"""Scores of the tags a catalogue shows: of the tags shown, how many are right; of what photos show, how much is tagged.

The challenge asks one attribute per image and scores the answer (`metrics`). A catalogue shows, for every photo, a
value for each attribute that applies to it and nothing for the others, so it is scored against complete labels
(`data.complete_labels`):

- tag precision: of the tags shown where the truth is known, the share with the right value (a tag shown where the
  photo does not show the part is wrong);
- tag recall: of the attribute values the photos truly show, the share shown with the right value.

Parts drawn but not decidable (`?`) are left out of both. The precision-recall curve moves the applicability
threshold; the rate table says how often each attribute is tagged on the images of each labelled attribute (a skirt
length on a collar close-up is what a catalogue must never show).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNDECIDED_TRUTH = -2
"""In truth arrays: a part drawn but not decidable (`?`), left out of every score."""


@dataclass(frozen=True)
class TagAnswers:
    """One attribute's answers over the scored images, with the truth to score them by."""

    truth: np.ndarray
    """(N,) int: the class the photo shows, `NOT_SHOWN` (-1) or `UNDECIDED_TRUTH` (-2)."""
    predicted: np.ndarray
    """(N,) int: the head's top class."""
    applicability: np.ndarray
    """(N,) float in [0, 1]: how likely the photo shows the part."""
    applies: np.ndarray
    """(N,) bool: whether the tag is shown."""
    invisible_index: int | None = None
    """The attribute's `Invisible` class: a top answer there is never shown as a tag."""

    def shown_at(self, threshold: float) -> np.ndarray:
        shown = self.applicability >= threshold
        if self.invisible_index is not None:
            shown &= self.predicted != self.invisible_index
        return shown


@dataclass(frozen=True)
class TagCounts:
    """Counts behind tag precision and recall (known truth only).

    `on_visible` (tags shown where the photo does show the part, right value or not) separates the two ways a tag can
    be wrong: the decision that it applies (`decision_precision`, `decision_recall`), and the head's value.
    """

    shown: int = 0
    correct: int = 0
    visible: int = 0
    on_visible: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.shown if self.shown else float("nan")

    @property
    def recall(self) -> float:
        return self.correct / self.visible if self.visible else float("nan")

    @property
    def decision_precision(self) -> float:
        """Of the tags shown, the share on a photo that shows the part."""
        return self.on_visible / self.shown if self.shown else float("nan")

    @property
    def decision_recall(self) -> float:
        """Of the parts the photos show, the share tagged (whatever the value)."""
        return self.on_visible / self.visible if self.visible else float("nan")

    def __add__(self, other: TagCounts) -> TagCounts:
        return TagCounts(self.shown + other.shown, self.correct + other.correct, self.visible + other.visible,
                         self.on_visible + other.on_visible)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"shown": self.shown, "correct": self.correct, "visible": self.visible, "on_visible": self.on_visible,
                "precision": _finite(self.precision), "recall": _finite(self.recall),
                "decision_precision": _finite(self.decision_precision),
                "decision_recall": _finite(self.decision_recall)}  # fmt: skip


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def count_tags(answers: TagAnswers, shown: np.ndarray | None = None) -> TagCounts:
    """Tag counts of one attribute for the tags `shown` (default: those that apply)."""
    shown = answers.applies if shown is None else shown
    known = answers.truth != UNDECIDED_TRUTH
    visible = answers.truth >= 0
    correct = shown & visible & (answers.predicted == answers.truth)
    return TagCounts(int((shown & known).sum()), int(correct.sum()), int((visible & known).sum()),
                     int((shown & visible).sum()))  # fmt: skip


def precision_recall_curve(answers: Sequence[TagAnswers], points: int = 101) -> dict[str, list[float | None]]:
    """Pooled tag precision and recall of `answers` as one applicability threshold moves from 0 to 1."""
    thresholds = np.linspace(0.0, 1.0, points)
    precision, recall = [], []
    for threshold in thresholds:
        total = sum((count_tags(a, a.shown_at(float(threshold))) for a in answers), TagCounts())
        precision.append(_finite(total.precision))
        recall.append(_finite(total.recall))
    return {"threshold": [float(t) for t in thresholds], "precision": precision, "recall": recall}


@dataclass
class TagScores:
    """Tag precision and recall per attribute and overall, and how often each attribute is tagged per labelled set."""

    attributes: dict[str, TagCounts] = field(default_factory=dict)
    tag_rates: dict[str, dict[str, float]] = field(default_factory=dict)
    """labelled attribute -> tagged attribute -> share of that set's images given a tag of it."""
    curves: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    """'all' and each attribute -> the precision-recall curve over the applicability threshold."""
    images: int = 0
    threshold: float | None = None
    """The applicability threshold the shown tags were decided at (the point marked on the curves)."""

    @property
    def overall(self) -> TagCounts:
        return sum(self.attributes.values(), TagCounts())

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "threshold": self.threshold, "overall": self.overall.to_dict(),
                "attributes": {name: counts.to_dict() for name, counts in self.attributes.items()},
                "tag_rates": self.tag_rates, "curves": self.curves}  # fmt: skip


def score_tags(answers: Mapping[str, TagAnswers], labelled: Sequence[str] | None = None) -> TagScores:
    """Scores of every attribute's `answers` (rows are the same images in the same order for every attribute).

    `labelled` gives each image's labelled attribute (its FashionAI question), for the tag-rate table.
    """
    scores = TagScores(images=len(next(iter(answers.values())).truth) if answers else 0)
    for name, answer in answers.items():
        scores.attributes[name] = count_tags(answer)
        scores.curves[name] = precision_recall_curve([answer])
    scores.curves["all"] = precision_recall_curve(list(answers.values()))
    if labelled is not None:
        groups = np.asarray(labelled)
        for group in dict.fromkeys(labelled):
            rows = groups == group
            scores.tag_rates[group] = {name: float(a.applies[rows].mean()) for name, a in answers.items()}
    return scores
