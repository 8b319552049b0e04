"""The challenge's answer file: write it, read it back strictly, check it against the questions, score it.

One line per question row, in the question file's order: `path,attribute,p0;p1;...;pK-1`, the class
probabilities in schema class order as decimal numbers joined by `;`. Written with every digit a float64 needs
(`repr`, scientific notation for the smallest), read as plain decimals with an optional exponent, so files of
six fixed decimals, as earlier versions wrote them, read as well.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionattr.data.labels import LabelFileError, LabelRecord, attribute_rows, read_labels, read_lines
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text
from fashionattr.metrics import AttributePredictions, Scores, maybe_mask, score
from fashionattr.parsing import parse_decimal
from fashionattr.schema import Schema

WRITE_SUM_TOLERANCE = 1e-3
"""How far from 1 a probability vector handed to `write_submission` may sum (float32 softmax drifts ~1e-6)."""
READ_SUM_TOLERANCE = 1e-3
"""How far from 1 the probabilities on one answer line may sum."""

Answer = tuple[str, str, np.ndarray]
"""One answer row: image path, attribute name, class probabilities."""


@dataclass(frozen=True)
class _AnswerLine:
    path: str
    attribute: str
    probabilities: np.ndarray
    line: int


def write_submission(
    path: str | Path,
    rows: Sequence[tuple[str, str] | LabelRecord],
    probabilities: Sequence[np.ndarray],
    schema: Schema,
) -> None:
    """Write an answer file: `rows` are the question rows (path, attribute) in order, `probabilities` one vector each.

    Each vector must have its attribute's class count and sum to 1 (within 1e-3); each value is written as the
    shortest decimal that reads back as the same float64 (`0.1`, `0.9999998807907104`, `1e-05`), so the file holds
    exactly the given numbers. The file appears atomically.
    """
    if len(rows) != len(probabilities):
        raise UserError(f"{path}: {len(rows)} question rows but {len(probabilities)} probability vectors")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for number, (row, vector) in enumerate(zip(rows, probabilities, strict=True), start=1):
        image_path, attribute_name = (row.path, row.attribute) if isinstance(row, LabelRecord) else row
        where = f"{path}: row {number} ({image_path} / {attribute_name})"
        if attribute_name not in schema:
            raise UserError(f"{where}: unknown attribute; known attributes are: {', '.join(schema.names)}")
        num_classes = schema.attribute(attribute_name).num_classes
        writer.writerow([image_path, attribute_name, _format_probabilities(vector, num_classes, where)])
    atomic_write_text(path, out.getvalue())


def _format_probabilities(vector: np.ndarray, num_classes: int, where: str) -> str:
    """Each probability as the shortest decimal that reads back as the very same float64 (Python's `repr`).

    Six decimals used to make every confident answer `1.000000`: AP then ranked those rows as one tied group and
    fell (0.917 to 0.898 on a simulated set where 80% of the answers saturate). Written this way no two different
    probabilities print alike, reading the file gives back the model's numbers bit for bit, and AP computed from the
    file is AP computed from the model's output. The numbers are not renormalised: a row sums to 1 as closely as the
    model's softmax does (about 1e-7 in float32).
    """
    values = np.asarray(vector, dtype=np.float64).reshape(-1)
    if values.shape != (num_classes,):
        raise UserError(f"{where}: {values.size} probabilities but the attribute has {num_classes} classes")
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise UserError(f"{where}: probabilities must be finite and non-negative, got {values.tolist()}")
    total = values.sum()
    if abs(total - 1.0) > WRITE_SUM_TOLERANCE:
        raise UserError(f"{where}: probabilities sum to {total:.6g}, not 1; pass softmax outputs, not logits")
    return ";".join(repr(float(value) + 0.0) for value in values)  # + 0.0 writes -0.0 as 0.0


def read_submission(path: str | Path, schema: Schema) -> list[Answer]:
    """Read an answer file strictly; every malformed line is reported with its file and line number."""
    return [(answer.path, answer.attribute, answer.probabilities) for answer in _read_answer_lines(Path(path), schema)]


def _read_answer_lines(path: Path, schema: Schema) -> list[_AnswerLine]:
    answers: list[_AnswerLine] = []
    problems: list[tuple[int, str]] = []
    for line_number, image_path, attribute_name, text in attribute_rows(
        read_lines(path), schema, "probabilities", problems, kind="answer"
    ):
        parsed = _parse_probabilities(text, schema.attribute(attribute_name).num_classes, attribute_name)
        if isinstance(parsed, str):
            problems.append((line_number, parsed))
            continue
        answers.append(_AnswerLine(image_path, attribute_name, parsed, line_number))
    if problems:
        raise LabelFileError(path, problems)
    if not answers:
        raise LabelFileError(path, [(0, "file holds no answer rows")])
    return answers


def _parse_probabilities(text: str, num_classes: int, attribute_name: str) -> np.ndarray | str:
    """The probability vector, or a message saying what is wrong with it."""
    pieces = text.split(";")
    if len(pieces) != num_classes:
        return f"{len(pieces)} probabilities but {attribute_name} has {num_classes} classes"
    values: list[float] = []
    for position, piece in enumerate(pieces):
        value = parse_decimal(piece.strip())
        if value is None:
            return f"probability {position} ({piece.strip()!r}) is not a number; write decimals such as 0.25 or 2.5e-3"
        if not 0.0 <= value <= 1.0:
            return f"probability {position} ({piece.strip()}) is not a finite number in [0, 1]"
        values.append(value)
    total = math.fsum(values)
    if abs(total - 1.0) > READ_SUM_TOLERANCE:
        return f"probabilities sum to {total:.6g}; they must sum to 1 (within {READ_SUM_TOLERANCE:g})"
    return np.array(values)


def score_submission(answer_path: str | Path, labels_path: str | Path, schema: Schema) -> Scores:
    """Score an answer file against a labelled file (label.csv format, e.g. `Tests/answers.csv`).

    Rows are matched by (path, attribute), so order does not matter here; every labelled row needs an answer
    and every answer needs a label.
    """
    answer_path, labels_path = Path(answer_path), Path(labels_path)
    answers = {(answer.path, answer.attribute): answer for answer in _read_answer_lines(answer_path, schema)}
    labels = read_labels(labels_path, schema)
    labelled = {(record.path, record.attribute) for record in labels}

    unanswered = [
        (record.line, f"no answer for {record.path} / {record.attribute} in {answer_path}")
        for record in labels
        if (record.path, record.attribute) not in answers
    ]
    if unanswered:
        raise LabelFileError(labels_path, unanswered)
    unlabelled = [
        (answer.line, f"answer for {answer.path} / {answer.attribute}, which {labels_path} does not label")
        for key, answer in answers.items()
        if key not in labelled
    ]
    if unlabelled:
        raise LabelFileError(answer_path, unlabelled)

    by_attribute: dict[str, list[LabelRecord]] = {}
    for record in labels:
        by_attribute.setdefault(record.attribute, []).append(record)
    predictions: dict[str, AttributePredictions] = {}
    for attribute_name, records in by_attribute.items():
        attribute = schema.attribute(attribute_name)
        predictions[attribute_name] = AttributePredictions(
            probs=np.stack([answers[(record.path, record.attribute)].probabilities for record in records]),
            targets=np.array([record.target for record in records], dtype=np.int64),
            maybe=maybe_mask([record.maybe for record in records], attribute.num_classes),
        )
    return score(schema, predictions)
