"""Readers for FashionAI label and question files (`path,attribute,label` rows, no header).

A label string has one character per class: `y` the value, `n` not it, `m` an acceptable alternative.
Question files carry `?` instead of a label. Readers accept what real files contain (BOM, CRLF, blank
lines, stray spaces) and report every malformed row with its file and line, not just the first. Image paths are
normalised here, once, so that every later step sees one spelling per file.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fashionattr.io import MAX_TABLE_BYTES, FileReadError, read_regular_file
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


def normalise_image_path(raw: str) -> str:
    """The one spelling of an image path relative to the dataset root, or ValueError saying why it is refused.

    `./Images/a.jpg`, `Images//a.jpg` and `Images/./a.jpg` all become `Images/a.jpg`, so one file is one image
    however a row spells it: duplicates are found, and a split cannot put it in training and validation at once.
    Absolute paths and `..` leave the root and are refused, as are control characters and line separators, which
    no file name needs and which would break the one-line reports.
    """
    if not raw:
        raise ValueError("image path is empty")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in raw):
        raise ValueError(f"image path {raw!r} contains control characters or line separators (a NUL, tab, U+2028 or "
                         "similar); no file name should")  # fmt: skip
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise ValueError(f"image path {raw!r} is absolute; paths must be relative to the dataset root")
    if ".." in PurePosixPath(raw.replace("\\", "/")).parts:
        raise ValueError(f"image path {raw!r} leaves the dataset root (contains '..')")
    if raw.endswith("/"):
        raise ValueError(f"image path {raw!r} ends with '/', so it names a folder, not an image file")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts:
        raise ValueError(f"image path {raw!r} names no file")
    return "/".join(parts)


SEPARATOR_NAMES = (("\t", "tabs"), (";", "semicolons"), ("|", "vertical bars"))


def column_problem(line: str, found: int, columns: str) -> str:
    """What to say about a row with the wrong number of columns; names the separator a one-column row seems to use."""
    message = f"expected {columns.count(',') + 1} columns ({columns}), found {found}"
    if found == 1:
        separator = next((name for char, name in SEPARATOR_NAMES if char in line), None)
        if separator:
            message += f"; the row seems separated by {separator}, but columns must be separated by commas"
    return message


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
        if "\r" in line:
            return "the row holds a carriage return (\\r) inside it; lines must end with \\n or \\r\\n"
        return f"cannot parse the row: {exc}"


def image_and_attribute(raw_path: str, attribute: str, schema: Schema) -> tuple[str, str] | str:
    """A row's (normalised image path, attribute), or what is wrong with either (the message to report)."""
    try:
        path = normalise_image_path(raw_path)
    except ValueError as exc:
        return str(exc)
    if attribute not in schema:
        return f"unknown attribute {attribute!r}; known: {', '.join(schema.names)}"
    return path, attribute


def attribute_rows(
    lines: Iterable[str], schema: Schema, third: str, problems: list[tuple[int, str]], kind: str = "row"
) -> Iterator[tuple[int, str, str, str]]:
    """The well-formed `path,attribute,<third>` rows of a FashionAI table (labels, questions, answers):
    `(line, normalised path, attribute, third cell)`; each malformed or duplicate row goes to `problems` instead.

    Paths are normalised (:func:`normalise_image_path`) before duplicates are looked for, so two spellings of one
    file are one duplicate, not two images. Blank rows are skipped.
    """
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for line_no, line in enumerate(lines, start=1):
        cells = parse_csv_line(line)
        if isinstance(cells, str):
            problems.append((line_no, cells))
            continue
        if not cells or all(not c for c in cells):
            continue
        if len(cells) != 3:
            problems.append((line_no, column_problem(line, len(cells), f"path,attribute,{third}")))
            continue
        raw_path, attribute, value = cells
        key = image_and_attribute(raw_path, attribute, schema)
        if isinstance(key, str):
            problems.append((line_no, key))
            continue
        path = key[0]
        if key in seen:
            problems.append((line_no, duplicate_problem(path, attribute, raw_path, *seen[key], kind=kind)))
            continue
        seen[key] = (line_no, raw_path)
        yield line_no, path, attribute, value


def parse_rows(
    lines: Iterable[str], schema: Schema, source: Path, questions: bool = False
) -> tuple[list[LabelRecord], list[tuple[int, str]]]:
    """Parse label (or question) rows; returns the good records and `(line, message)` for each bad row."""
    records: list[LabelRecord] = []
    problems: list[tuple[int, str]] = []
    for line_no, path, attribute, label in attribute_rows(lines, schema, "label", problems):
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


def duplicate_problem(path: str, attribute: str, spelling: str, first_line: int, first_spelling: str,
                      kind: str = "row") -> str:  # fmt: skip
    spelled = f" (there as {first_spelling!r}, here as {spelling!r})" if first_spelling != spelling else ""
    return f"duplicate {kind}: {path} / {attribute} already given on line {first_line}{spelled}"


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 table file, numbered as an editor numbers them; errors as :class:`LabelFileError`.

    Read through :func:`fashionattr.io.read_regular_file` (no FIFO, no device, bounded). Lines end at `\\n` alone
    (a `\\r` before it is dropped; a file with only `\\r` endings is split on those): `str.splitlines` would also
    split on U+2028, U+0085 and five other characters, and every line number after one would be wrong.
    """
    try:
        raw = read_regular_file(path, MAX_TABLE_BYTES)
    except FileReadError as exc:
        raise LabelFileError(path, [(0, exc.reason)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LabelFileError(path, [(line, "not valid UTF-8 text")]) from None
    lines = text.split("\n" if "\n" in text or "\r" not in text else "\r")
    if lines and not lines[-1]:
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_labels(path: str | Path, schema: Schema) -> list[LabelRecord]:
    """Read a `label.csv`-style file; raise :class:`LabelFileError` listing every malformed row."""
    path = Path(path)
    records, problems = parse_rows(read_lines(path), schema, path)
    if problems:
        raise LabelFileError(path, problems)
    if not records:
        raise LabelFileError(path, [(0, "file holds no label rows")])
    return records


def read_questions(path: str | Path, schema: Schema) -> list[LabelRecord]:
    """Read a `question.csv` file (`path,attribute,?`); records have `target == -1`."""
    path = Path(path)
    records, problems = parse_rows(read_lines(path), schema, path, questions=True)
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


def table_rows(path: Path, header: tuple[str, ...], problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a small CSV file with a header line (part boxes, complete labels, categories), each with its
    line number and its cells stripped; blank lines and the header are skipped, and each malformed line goes to
    `problems` as `file:line: what is wrong`."""
    for line_no, line in enumerate(read_lines(path), start=1):
        cells = parse_csv_line(line)
        if isinstance(cells, str):
            problems.append(f"{path}:{line_no}: {cells}")
            continue
        if not cells or all(not c for c in cells) or (line_no == 1 and tuple(cells) == header):
            continue
        if len(cells) != len(header):
            problems.append(f"{path}:{line_no}: expected the columns {','.join(header)}, found {len(cells)} cells")
            continue
        yield line_no, [cell.strip() for cell in cells]
