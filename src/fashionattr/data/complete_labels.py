"""Complete labels: for every image and every attribute, what the photo shows, to score tags as a catalogue shows them.

FashionAI labels each image for one attribute, and so does training. A catalogue asks every attribute of every
photo, so scoring what it shows needs the whole truth: the class an attribute shows, `Invisible` where the photo does
not show the part (trousers have no skirt length; a close-up shows no hem), or `?` where the part is drawn but cannot
be told (between two classes, cut by the frame, too small), which scores leave out. The synthetic generator writes
these files for its own drawings (`Annotations/complete.csv`, `Tests/complete.csv`); for real photos a person can
write one the same way.

A file has a header and one row per image and attribute: `path,attribute,value`, with the attribute's full or short
name and the value a class name of the schema, `Invisible` or `?`. Product categories, where a retailer files photos
under them, go in a file of `path,category` rows (`Annotations/categories.csv` for the synthetic data).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from fashionattr.data.labels import table_rows
from fashionattr.errors import UserError
from fashionattr.schema import Schema

COMPLETE_RELPATH = Path("Annotations") / "complete.csv"
TEST_COMPLETE_RELPATH = Path("Tests") / "complete.csv"
CATEGORIES_RELPATH = Path("Annotations") / "categories.csv"
TEST_CATEGORIES_RELPATH = Path("Tests") / "categories.csv"
HEADER = ("path", "attribute", "value")
CATEGORY_HEADER = ("path", "category")
INVISIBLE = "Invisible"
UNDECIDED = "?"
MAX_PROBLEMS = 20

Truth = dict[str, dict[str, int | None]]
"""image path -> attribute -> the class index the photo shows, -1 where it does not show the part, None for `?`."""
NOT_SHOWN = -1


def format_complete(rows: Iterable[tuple[str, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def format_categories(rows: Iterable[tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CATEGORY_HEADER)
    writer.writerows(rows)
    return out.getvalue()


def _existing_rows(path: Path, header: tuple[str, ...], what: str,
                   problems: list[str]) -> Iterable[tuple[int, list[str]]]:  # fmt: skip
    if not path.is_file():
        raise UserError(f"{path}: no {what} file here")
    return table_rows(path, header, problems)


def _refuse(problems: list[str]) -> None:
    """Every problem found, the first `MAX_PROBLEMS` in full, as one error."""
    if problems:
        more = f"\n... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise UserError("\n".join(problems[:MAX_PROBLEMS]) + more)


def read_complete(path: str | Path, schema: Schema) -> Truth:
    """A complete-label file, checked against the schema; every bad row is reported with its line."""
    path = Path(path)
    truth: Truth = {}
    problems: list[str] = []
    for line_no, (image, attribute, value) in _existing_rows(path, HEADER, "complete-label", problems):
        try:
            [name] = schema.resolve_names([attribute])
        except KeyError as exc:
            problems.append(f"{path}:{line_no}: {exc.args[0]}")
            continue
        classes = schema.attribute(name).classes
        if value == UNDECIDED:
            index: int | None = None
        elif value in classes and value != INVISIBLE:
            index = classes.index(value)
        elif value == INVISIBLE:
            index = NOT_SHOWN
        else:
            problems.append(f"{path}:{line_no}: {value!r} is not a class of {name}, {INVISIBLE} or {UNDECIDED}")
            continue
        if name in truth.setdefault(image, {}):
            problems.append(f"{path}:{line_no}: a second row for {image} and {name}")
            continue
        truth[image][name] = index
    _refuse(problems)
    return truth


def read_categories(path: str | Path, known: Mapping[str, object] | None = None) -> dict[str, str]:
    """image path -> product category; with `known`, a category it does not hold is an error naming the line."""
    path = Path(path)
    categories: dict[str, str] = {}
    problems: list[str] = []
    for line_no, (image, category) in _existing_rows(path, CATEGORY_HEADER, "category", problems):
        if known is not None and category not in known:
            problems.append(f"{path}:{line_no}: unknown category {category!r}; the schema maps: {', '.join(known)}")
            continue
        categories[image] = category
    _refuse(problems)
    return categories
