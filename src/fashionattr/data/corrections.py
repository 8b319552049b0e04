"""Label corrections: decisions a person made on reviewed labels, kept beside `label.csv` and read on top of it.

`Annotations/corrections.csv` is append-only history, one decision per line:

    time,path,attribute,label,decision
    2026-03-01T10:22:05Z,Images/coat_length_labels/c76e.jpg,coat_length_labels,nnnnnynn,accept

`label` is the label string the row has from then on (the same y/n/m form as `label.csv`); `decision` says what
the person did (`accept` the suggestion, `relabel`, `maybe` to mark an alternative, `keep` the label as it is).
The last line for an image and attribute wins, so a decision can be changed by deciding again and the history
stays. `label.csv` itself is never edited: every reader of a dataset's labels (`DatasetRoot.read_labels`, so
train, check, split, evaluate) applies the corrections on top of it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.labels import (
    LabelFileError,
    LabelRecord,
    _parse_label,
    image_and_attribute,
    label_string,
    parse_csv_line,
    read_lines,
)
from fashionattr.schema import Schema

CORRECTIONS_RELPATH = Path("Annotations") / "corrections.csv"
HEADER = ("time", "path", "attribute", "label", "decision")
DECISIONS = ("accept", "relabel", "maybe", "keep")


@dataclass(frozen=True)
class Correction:
    """One decision: the label an image has for an attribute from `time` on."""

    time: str
    path: str
    attribute: str
    target: int
    maybe: tuple[int, ...]
    decision: str
    line: int = 0

    def label(self, schema: Schema) -> str:
        return label_string(self.target, schema.attribute(self.attribute).num_classes, self.maybe)


def read_corrections(path: str | Path, schema: Schema) -> dict[tuple[str, str], Correction]:
    """The latest decision per (image path, attribute); every malformed line is reported with its number."""
    path = Path(path)
    latest: dict[tuple[str, str], Correction] = {}
    problems: list[tuple[int, str]] = []
    for line_no, line in enumerate(read_lines(path), start=1):
        cells = parse_csv_line(line)
        if isinstance(cells, str):
            problems.append((line_no, cells))
            continue
        if not cells or all(not c for c in cells) or (line_no == 1 and tuple(cells) == HEADER):
            continue
        if len(cells) != len(HEADER):
            problems.append((line_no, f"expected {len(HEADER)} columns ({','.join(HEADER)}), found {len(cells)}"))
            continue
        time, raw_path, attribute, label, decision = cells
        key = image_and_attribute(raw_path, attribute, schema)
        if isinstance(key, str):
            problems.append((line_no, key))
            continue
        image = key[0]
        if decision not in DECISIONS:
            problems.append((line_no, f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}"))
            continue
        parsed = _parse_label(label, schema.attribute(attribute).num_classes, attribute)
        if isinstance(parsed, str):
            problems.append((line_no, parsed))
            continue
        target, maybe = parsed
        latest[(image, attribute)] = Correction(time, image, attribute, target, maybe, decision, line_no)
    if problems:
        raise LabelFileError(path, problems)
    return latest


def apply_corrections(records: Sequence[LabelRecord], corrections: dict[tuple[str, str], Correction],
                      source: Path) -> list[LabelRecord]:  # fmt: skip
    """`records` with each corrected row's label replaced (its line number kept); a correction of a row that the
    label file does not have is an error naming the corrections file's line."""
    keys = {(r.path, r.attribute) for r in records}
    strays = [(c.line, f"{c.path} / {c.attribute} is not a row of the label file; a correction changes a label, it "
               "cannot add one") for key, c in corrections.items() if key not in keys]  # fmt: skip
    if strays:
        raise LabelFileError(source, sorted(strays))
    corrected = []
    for record in records:
        fix = corrections.get((record.path, record.attribute))
        corrected.append(record if fix is None else LabelRecord(record.path, record.attribute, fix.target, fix.maybe,
                                                                record.line))  # fmt: skip
    return corrected


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _locked_append(path: Path) -> Iterator[int]:
    """The file opened for appending under an exclusive lock, so two writers' lines never interleave."""
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
        os.fsync(fd)
    finally:
        os.close(fd)


def append_correction(path: str | Path, correction: Correction, schema: Schema) -> None:
    """Add one decision at the end of the corrections file (made with its header if new), flushed to disk."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([correction.time, correction.path, correction.attribute, correction.label(schema),
                     correction.decision])  # fmt: skip
    path = Path(path)
    with _locked_append(path) as fd:
        if os.fstat(fd).st_size == 0:
            os.write(fd, (",".join(HEADER) + "\n").encode())
        os.write(fd, out.getvalue().encode("utf-8"))
