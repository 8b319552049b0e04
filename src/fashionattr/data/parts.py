"""Part boxes: where in an image the part an attribute is about lies (the hem, the sleeve ends, the neckline ...).

The synthetic generator knows where it drew each labelled part and writes the boxes beside the labels
(`Annotations/parts.csv`, `Tests/parts.csv`), so a heatmap's aim can be measured rather than eyeballed. A file
has a header and one row per box: `path,attribute,part,x0,y0,x1,y1`, in pixels of the upright image (as shown, its
EXIF rotation applied; the generator writes none); an image may have several boxes (both sleeve ends) or none
(an Invisible part).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.labels import table_rows
from fashionattr.errors import UserError

PARTS_RELPATH = Path("Annotations") / "parts.csv"
TEST_PARTS_RELPATH = Path("Tests") / "parts.csv"
HEADER = ("path", "attribute", "part", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class PartRow:
    """One box of one image's labelled part, in pixels of the upright image (EXIF rotation applied)."""

    path: str
    attribute: str
    part: str
    box: tuple[float, float, float, float]


def format_parts(rows: Iterable[PartRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow([row.path, row.attribute, row.part, *(f"{v:.1f}" for v in row.box)])
    return out.getvalue()


def read_parts(path: str | Path) -> dict[tuple[str, str], list[PartRow]]:
    """The boxes of a parts file by (image path, attribute); every malformed row is an error naming its line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no part-box file here; `fashionattr synth` writes one beside the labels it draws")
    boxes: dict[tuple[str, str], list[PartRow]] = {}
    problems: list[str] = []
    for line_no, cells in table_rows(path, HEADER, problems):
        try:
            x0, y0, x1, y1 = (float(v) for v in cells[3:])
        except ValueError:
            problems.append(f"{path}:{line_no}: the box {','.join(cells[3:])!r} is not four numbers")
            continue
        if not (x1 > x0 and y1 > y0):
            problems.append(f"{path}:{line_no}: the box must have x1 > x0 and y1 > y0, got {x0},{y0},{x1},{y1}")
            continue
        row = PartRow(cells[0], cells[1], cells[2], (x0, y0, x1, y1))
        boxes.setdefault((row.path, row.attribute), []).append(row)
    if problems:
        more = f" (and {len(problems) - 1} more malformed rows)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
    return boxes
