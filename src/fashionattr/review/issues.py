"""Ranking labels by how likely they are wrong (cleanlab's confident learning), and what a review is worth.

Confident learning (Northcutt et al., 2021) estimates, per class, how confident a model must be before its
disagreement with a label means something, and flags the rows where the out-of-sample probabilities contradict
the given label beyond that. cleanlab ranks them by self-confidence: the lower the probability of the given
class, the more likely the label is wrong. An `m` ("maybe") mark means the annotator accepted that class too, so a
row whose suggested class carries an `m` is not an issue.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LabelRecord, format_rows, read_labels
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text
from fashionattr.review.probabilities import OutOfSample

CSV_HEADER = ("path", "attribute", "given", "suggested", "score", "given_probability", "suggested_probability")


@dataclass(frozen=True)
class LabelIssue:
    """A candidate label: what it says, what the model suggests, and how strongly the model disagrees (0-1)."""

    record: LabelRecord
    given: str
    suggested: str
    suggested_index: int
    score: float
    """1 - cleanlab's self-confidence label quality: the model's probability that the given class is not it."""
    given_probability: float
    suggested_probability: float


def find_issues(reviewed: OutOfSample) -> list[LabelIssue]:
    """The labels confident learning flags, attribute by attribute, most likely wrong first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues: list[LabelIssue] = []
    for name, predictions in reviewed.predictions.items():
        records = reviewed.records[name]
        if len(records) < 2:
            continue
        classes = reviewed.schema.attribute(name).classes
        labels, probs = predictions.targets, predictions.probs / predictions.probs.sum(axis=1, keepdims=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cleanlab warns about classes with few examples; they are still scored
            flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
            quality = get_label_quality_scores(labels, probs, method="self_confidence")
        for row in np.flatnonzero(flagged):
            suggested = int(probs[row].argmax())
            record = records[row]
            if suggested == record.target or suggested in record.maybe:
                continue
            issues.append(LabelIssue(record, classes[record.target], classes[suggested], suggested,
                                     float(1.0 - quality[row]), float(probs[row, record.target]),
                                     float(probs[row, suggested])))  # fmt: skip
    return sorted(issues, key=lambda issue: (-issue.score, issue.record.attribute, issue.record.path))


def issues_csv(issues: Iterable[LabelIssue]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for issue in issues:
        writer.writerow([issue.record.path, issue.record.attribute, issue.given, issue.suggested, f"{issue.score:.4f}",
                         f"{issue.given_probability:.4f}", f"{issue.suggested_probability:.4f}"])  # fmt: skip
    return out.getvalue()


def refuse_overwriting(labels: Path, out: Path) -> None:
    if out.resolve() == labels.resolve():
        raise UserError(f"{out}: that is the label file under review; write the corrected copy elsewhere and let a "
                        "person accept it")  # fmt: skip


def write_decided(dataset: DatasetRoot, out: Path) -> int:
    """The label file as training reads it, with the decisions of the corrections file applied (a person's, made in
    the service's review queue; never a suggestion nobody accepted). The original is never touched.

    Rows keep their order. Returns how many rows differ from the label file.
    """
    refuse_overwriting(dataset.labels_path, out)
    original = dataset.read_labels(corrected=False)
    decided = dataset.read_labels()
    atomic_write_text(out, format_rows(decided, dataset.schema))
    return sum((a.target, a.maybe) != (b.target, b.maybe) for a, b in zip(original, decided, strict=True))


@dataclass(frozen=True)
class ReviewScore:
    """A review measured against labels known to be wrong (say, the ones `synth --label-noise` switched)."""

    reviewed: int
    known: int
    flagged: int
    found: int
    top_known: int
    right_suggestion: int

    @property
    def precision(self) -> float:
        return self.found / self.flagged if self.flagged else float("nan")

    @property
    def recall(self) -> float:
        return self.found / self.known if self.known else float("nan")

    @property
    def precision_at_known(self) -> float:
        """Of the `known` highest-ranked rows, the share that are known errors (precision@flips)."""
        return self.top_known / self.known if self.known else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"reviewed": self.reviewed, "known_errors": self.known, "flagged": self.flagged, "found": self.found,
                "precision": self.precision, "recall": self.recall, "precision_at_known": self.precision_at_known,
                "suggested_the_true_class": self.right_suggestion}  # fmt: skip


def score_review(reviewed: OutOfSample, issues: Sequence[LabelIssue], known_file: Path) -> ReviewScore:
    """Precision and recall of the flagged rows against a label file of known errors with their true labels.

    Only known errors among the reviewed rows count (a validation review cannot find errors in the training split).
    """
    truth = {(r.path, r.attribute): r.target for r in read_labels(known_file, reviewed.dataset.schema)}
    under_review = {(r.path, r.attribute) for rows in reviewed.records.values() for r in rows}
    known = {key: target for key, target in truth.items() if key in under_review}
    flagged = [(i.record.path, i.record.attribute) for i in issues]
    found = [key for key in flagged if key in known]
    ranked = sorted(_all_scores(reviewed), key=lambda item: -item[1])
    top = [key for key, _ in ranked[: len(known)]]
    right = sum(1 for i in issues if known.get((i.record.path, i.record.attribute)) == i.suggested_index)
    return ReviewScore(len(under_review), len(known), len(flagged), len(found), sum(key in known for key in top), right)


def _all_scores(reviewed: OutOfSample) -> list[tuple[tuple[str, str], float]]:
    """Every reviewed row with its score (1 - probability of the given class), flagged or not, for precision@N."""
    scored = []
    for name, predictions in reviewed.predictions.items():
        probs = predictions.probs / predictions.probs.sum(axis=1, keepdims=True)
        for record, row in zip(reviewed.records[name], probs, strict=True):
            scored.append(((record.path, record.attribute), float(1.0 - row[record.target])))
    return scored
