"""The label review queue the service serves: `fashionattr review`'s candidates, and a person's decisions on them.

The queue is the review folder's `label_issues.csv` (most likely mislabelled first) over the dataset that
`review.json` names. Each decision (accept the suggestion, relabel as another class, mark a class 'm', keep the
label) is appended to the dataset's `Annotations/corrections.csv` with its time; `label.csv` is never edited, and
training and `check` read the corrections on top of it. Decisions are relative to `label.csv`'s label, so deciding
again replaces an earlier decision rather than stacking on it.
"""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.corrections import Correction, append_correction, now, read_corrections
from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LabelRecord, label_string, normalise_image_path, read_lines
from fashionattr.errors import UserError
from fashionattr.serve.errors import ApiError
from fashionattr.serve.responses import ReviewCandidate, ReviewDecision, ReviewDecisionResponse, ReviewQueue

ISSUES_FILE = "label_issues.csv"
SUMMARY_FILE = "review.json"


@dataclass(frozen=True)
class Candidate:
    path: str
    attribute: str
    given: str
    suggested: str
    score: float


class ReviewQueueFile:
    """A review folder made by `fashionattr review`, opened for deciding on its candidates."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        summary_path = self.folder / SUMMARY_FILE
        issues_path = self.folder / ISSUES_FILE
        if not issues_path.is_file() or not summary_path.is_file():
            raise UserError(f"{self.folder}: not a review folder (no {ISSUES_FILE} and {SUMMARY_FILE}); make one with "
                            "`fashionattr review MODEL --out DIR`")  # fmt: skip
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{summary_path}: cannot read the review summary ({exc})") from None
        data = summary.get("data") if isinstance(summary, dict) else None
        if not isinstance(data, str):
            raise UserError(f"{summary_path}: does not name the dataset reviewed (made by an older fashionattr); run "
                            "`fashionattr review` again")  # fmt: skip
        self.dataset = DatasetRoot.open(data)
        self.schema = self.dataset.schema
        self.labels = {(r.path, r.attribute): r for r in self.dataset.read_labels(corrected=False)}
        self.candidates = self._read_candidates(issues_path)
        self._index = {(c.path, c.attribute): n for n, c in enumerate(self.candidates)}
        self._writing = threading.Lock()

    def _read_candidates(self, path: Path) -> list[Candidate]:
        candidates = []
        for line_no, line in enumerate(read_lines(path), start=1):
            cells = next(csv.reader([line]), [])
            if (line_no == 1 and cells[:1] == ["path"]) or not cells:
                continue
            try:
                image, attribute, given, suggested, score = cells[0], cells[1], cells[2], cells[3], float(cells[4])
                key = (normalise_image_path(image), attribute)
            except (IndexError, ValueError) as exc:
                raise UserError(f"{path}:{line_no}: not a label_issues.csv row ({exc})") from None
            if key not in self.labels:
                raise UserError(f"{path}:{line_no}: {image} / {attribute} is not a row of {self.dataset.labels_path}; "
                                "the review is of another dataset or an older label file")  # fmt: skip
            candidates.append(Candidate(key[0], attribute, given, suggested, score))
        return candidates

    @property
    def corrections_path(self) -> Path:
        return self.dataset.corrections_path

    def _decisions(self) -> dict[tuple[str, str], Correction]:
        path = self.corrections_path
        return read_corrections(path, self.schema) if path.is_file() else {}

    def queue(self, offset: int, limit: int, undecided: bool) -> ReviewQueue:
        decisions = self._decisions()
        decided = sum((c.path, c.attribute) in decisions for c in self.candidates)
        chosen = [n for n, c in enumerate(self.candidates) if not undecided or (c.path, c.attribute) not in decisions]
        page = [self._candidate(n, decisions.get((self.candidates[n].path, self.candidates[n].attribute)))
                for n in chosen[offset : offset + limit]]  # fmt: skip
        return ReviewQueue(total=len(chosen), decided=decided, candidates=page)

    def _candidate(self, number: int, decision: Correction | None) -> ReviewCandidate:
        c = self.candidates[number]
        record = self.labels[(c.path, c.attribute)]
        classes = list(self.schema.attribute(c.attribute).classes)
        return ReviewCandidate(
            path=c.path, attribute=c.attribute, given=c.given, suggested=c.suggested, score=c.score,
            label=self._label(record), classes=classes, image_url=f"/v1/review/image/{number}",
            decision=decision.decision if decision else None,
            decided_label=decision.label(self.schema) if decision else None,
        )  # fmt: skip

    def _label(self, record: LabelRecord) -> str:
        return label_string(record.target, self.schema.attribute(record.attribute).num_classes, record.maybe)

    def image(self, number: int) -> Path:
        """The image of the candidate at `number`, only if it resolves inside the dataset."""
        if not 0 <= number < len(self.candidates):
            raise ApiError(404, f"no review candidate {number}")
        root = self.dataset.path.resolve()
        path = (root / self.candidates[number].path).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ApiError(404, f"the image of review candidate {number} is not in the dataset")
        return path

    def decide(self, decision: ReviewDecision) -> ReviewDecisionResponse:
        """Record a decision in the corrections file; 404 for a row not in the queue, 422 for a class it lacks."""
        try:
            key = (normalise_image_path(decision.path), self.schema.attribute(decision.attribute).name)
        except (ValueError, KeyError):
            key = (decision.path, decision.attribute)
        if key not in self._index:
            raise ApiError(404, f"{decision.path} / {decision.attribute} is not in the review queue")
        candidate = self.candidates[self._index[key]]
        record = self.labels[key]
        attribute = self.schema.attribute(candidate.attribute)
        if decision.decision in ("relabel", "maybe"):
            if decision.class_name is None:
                raise ApiError(422, f"`{decision.decision}` needs `class`, one of: {', '.join(attribute.classes)}")
            matches = [i for i, c in enumerate(attribute.classes) if c.lower() == decision.class_name.lower()]
            if not matches:
                raise ApiError(422, f"{attribute.name} has no class {decision.class_name!r}; its classes are: "
                               f"{', '.join(attribute.classes)}")  # fmt: skip
            chosen = matches[0]
        maybe: tuple[int, ...]
        if decision.decision == "accept":
            target, maybe = attribute.classes.index(candidate.suggested), ()
        elif decision.decision == "relabel":
            target, maybe = chosen, ()
        elif decision.decision == "maybe":
            if chosen == record.target:
                raise ApiError(422, f"{attribute.classes[chosen]} is the given class; mark another one 'm'")
            target, maybe = record.target, tuple(sorted({*record.maybe, chosen}))
        else:
            target, maybe = record.target, record.maybe
        correction = Correction(now(), candidate.path, candidate.attribute, target, maybe, decision.decision)
        with self._writing:
            append_correction(self.corrections_path, correction, self.schema)
        decisions = self._decisions()
        decided = sum((c.path, c.attribute) in decisions for c in self.candidates)
        return ReviewDecisionResponse(path=candidate.path, attribute=candidate.attribute, decision=decision.decision,
                                      label=correction.label(self.schema), decided=decided)  # fmt: skip
