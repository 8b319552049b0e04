"""Readers for FashionAI label and question files (`path,attribute,label` rows, no header).

A label string has one character per class: `y` the value, `n` not it, `m` an acceptable alternative.
Question files carry `?` instead of a label. Readers accept what real files contain (BOM, CRLF, blank
lines, stray spaces) and report every malformed row with its file and line, not just the first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fashionattr.schema import Schema

LABELS_RELPATH = Path("Annotations") / "label.csv"
QUESTIONS_RELPATH = Path("Tests") / "question.csv"
ANSWERS_RELPATH = Path("Tests") / "answers.csv"
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class LabelRecord:
    """One labelled (or, with `target == -1`, unlabelled) image for one attribute."""

    path: str
    attribute: str
    target: int
    maybe: tuple[int, ...] = ()
    line: int = 0

    @property
    def is_labelled(self) -> bool:
        return self.target >= 0


@dataclass
class LabelFileError(ValueError):
    """One or more rows of a label file are malformed; `problems` holds `(line, message)` pairs."""

    path: Path
    problems: list[tuple[int, str]] = field(default_factory=list)

    def __str__(self) -> str:
        shown = [f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}"
                 for line, message in self.problems[:MAX_REPORTED_PROBLEMS]]  # fmt: skip
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problem(s) in {self.path}")
        head = f"{self.path}: {len(self.problems)} malformed row(s)" if len(self.problems) > 1 else ""
        return "\n".join([head, *shown] if head else shown)


def _check_relative_path(raw: str) -> str | None:
    """Return an error message when `raw` is absolute or escapes the dataset root."""
    if not raw:
        return "image path is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        return f"image path {raw!r} contains control characters (a NUL, tab or similar); no file name should"
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        return f"image path {raw!r} is absolute; paths must be relative to the dataset root"
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        return f"image path {raw!r} leaves the dataset root (contains '..')"
    return None


def _parse_label(label: str, num_classes: int, attribute: str) -> tuple[int, tuple[int, ...]] | str:
    if len(label) != num_classes:
        return f"label {label!r} has {len(label)} characters but {attribute} has {num_classes} classes"
    bad = sorted({c for c in label if c not in "ynm"})
    if bad:
        return f"label {label!r} contains {', '.join(repr(c) for c in bad)}; only 'y', 'n' and 'm' are allowed"
    ys = [i for i, c in enumerate(label) if c == "y"]
    if not ys:
        return f"label {label!r} has no 'y'; exactly one class must be marked 'y'"
    if len(ys) > 1:
        return f"label {label!r} has {len(ys)} 'y' marks; exactly one class must be marked 'y'"
    return ys[0], tuple(i for i, c in enumerate(label) if c == "m")


def parse_csv_line(line: str) -> list[str] | str:
    """The stripped cells of one CSV line, or what is wrong with it.

    One reader per line: a row never spans lines, so a stray quote or an over-long field costs that row alone,
    never the rest of the file, and line numbers stay true.
    """
    try:
        return [cell.strip() for cell in next(csv.reader([line]), [])]
    except csv.Error as exc:
        return f"cannot parse the row: {exc}"


def parse_rows(
    lines: Iterable[str], schema: Schema, source: Path, questions: bool = False
) -> tuple[list[LabelRecord], list[tuple[int, str]]]:
    """Parse label (or question) rows; returns the good records and `(line, message)` for each bad row."""
    records: list[LabelRecord] = []
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for line_no, line in enumerate(lines, start=1):
        cells = parse_csv_line(line)
        if isinstance(cells, str):
            problems.append((line_no, cells))
            continue
        if not cells or all(not c for c in cells):
            continue
        if len(cells) != 3:
            problems.append((line_no, f"expected 3 columns (path,attribute,label), found {len(cells)}"))
            continue
        path, attribute, label = cells
        error = _check_relative_path(path)
        if error:
            problems.append((line_no, error))
            continue
        if attribute not in schema:
            problems.append((line_no, f"unknown attribute {attribute!r}; known: {', '.join(schema.names)}"))
            continue
        key = (path, attribute)
        if key in seen:
            problems.append((line_no, f"duplicate row: {path} / {attribute} already given on line {seen[key]}"))
            continue
        seen[key] = line_no
        if questions:
            records.append(LabelRecord(path=path, attribute=attribute, target=-1, line=line_no))
            continue
        parsed = _parse_label(label, schema.attribute(attribute).num_classes, attribute)
        if isinstance(parsed, str):
            problems.append((line_no, parsed))
            continue
        target, maybe = parsed
        records.append(LabelRecord(path=path, attribute=attribute, target=target, maybe=maybe, line=line_no))
    return records, problems


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LabelFileError(path, [(0, "file not found")]) from None
    except OSError as exc:
        raise LabelFileError(path, [(0, f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LabelFileError(path, [(line, "not valid UTF-8 text")]) from None
    return io.StringIO(text, newline=None).read().splitlines()


def read_labels(path: str | Path, schema: Schema) -> list[LabelRecord]:
    """Read a `label.csv`-style file; raise :class:`LabelFileError` listing every malformed row."""
    path = Path(path)
    records, problems = parse_rows(_read_lines(path), schema, path)
    if problems:
        raise LabelFileError(path, problems)
    if not records:
        raise LabelFileError(path, [(0, "file holds no label rows")])
    return records


def read_questions(path: str | Path, schema: Schema) -> list[LabelRecord]:
    """Read a `question.csv` file (`path,attribute,?`); records have `target == -1`."""
    path = Path(path)
    records, problems = parse_rows(_read_lines(path), schema, path, questions=True)
    if problems:
        raise LabelFileError(path, problems)
    if not records:
        raise LabelFileError(path, [(0, "file holds no question rows")])
    return records


def label_string(target: int, num_classes: int, maybe: Iterable[int] = ()) -> str:
    """The inverse of parsing: `y` at `target`, `m` at each `maybe` index, `n` elsewhere."""
    chars = ["n"] * num_classes
    for i in maybe:
        chars[i] = "m"
    chars[target] = "y"
    return "".join(chars)


def format_rows(records: Iterable[LabelRecord], schema: Schema) -> str:
    """Label-file text for records (question rows get `?`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for rec in records:
        label = (
            label_string(rec.target, schema.attribute(rec.attribute).num_classes, rec.maybe) if rec.is_labelled else "?"
        )
        writer.writerow([rec.path, rec.attribute, label])
    return out.getvalue()
