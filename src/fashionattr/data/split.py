"""The 4:1 train/validation split, stratified by (attribute, class) and reproducible on any machine.

Order inside each stratum comes from a SHA-256 of the seed and the image path, so the split depends
only on the file names and the seed, not on row order, NumPy's generator or the platform.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.labels import LabelFileError, LabelRecord, normalise_image_path, parse_csv_line, read_lines
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text

DEFAULT_SPLIT_RELPATH = Path("Annotations") / "split.csv"
SUBSETS = ("train", "val")


class SplitError(UserError):
    """A split file is malformed or does not match the labels."""


def _rank(seed: int, rec: LabelRecord) -> str:
    return hashlib.sha256(f"{seed}:{rec.attribute}:{rec.path}".encode()).hexdigest()


def make_split(records: Iterable[LabelRecord], val_fraction: float = 0.2, seed: int = 0) -> dict[tuple[str, str], str]:
    """Map each `(path, attribute)` to `train` or `val`; each (attribute, class) stratum gives round(n*f) to val."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val fraction must be between 0 and 1, got {val_fraction}")
    strata: dict[tuple[str, int], list[LabelRecord]] = defaultdict(list)
    for rec in records:
        strata[(rec.attribute, rec.target)].append(rec)
    assignment: dict[tuple[str, str], str] = {}
    for members in strata.values():
        members.sort(key=lambda r: _rank(seed, r))
        n_val = round(len(members) * val_fraction)
        for i, rec in enumerate(members):
            assignment[(rec.path, rec.attribute)] = "val" if i < n_val else "train"
    return assignment


def write_split(path: str | Path, assignment: dict[tuple[str, str], str]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for (image, attribute), subset in sorted(assignment.items()):
        writer.writerow([image, attribute, subset])
    atomic_write_text(path, out.getvalue())


def read_split(path: str | Path) -> dict[tuple[str, str], str]:
    """`(path, attribute) -> train|val` from a split file, paths normalised as label files' are.

    A row given twice, in two spellings or with two subsets, is refused: the later one would silently win.
    """
    path = Path(path)
    try:
        lines = read_lines(path)
    except LabelFileError as exc:
        raise SplitError(str(exc)) from None
    assignment: dict[tuple[str, str], str] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line_no, line in enumerate(lines, start=1):
        cells = parse_csv_line(line)
        if isinstance(cells, str):
            raise SplitError(f"{path}:{line_no}: {cells}")
        if not cells or all(not c for c in cells):
            continue
        if len(cells) != 3 or cells[2] not in SUBSETS:
            raise SplitError(f"{path}:{line_no}: expected 'path,attribute,train|val', got {','.join(cells)[:200]!r}")
        try:
            key = (normalise_image_path(cells[0]), cells[1])
        except ValueError as exc:
            raise SplitError(f"{path}:{line_no}: {exc}") from None
        if key in assignment:
            raise SplitError(f"{path}:{line_no}: {key[0]} / {key[1]} is already assigned on line {first_line[key]}; "
                             "give each image once")  # fmt: skip
        assignment[key], first_line[key] = cells[2], line_no
    return assignment


def apply_split(
    records: list[LabelRecord], assignment: dict[tuple[str, str], str], source: str | Path = "split file"
) -> tuple[list[LabelRecord], list[LabelRecord]]:
    """Partition records into (train, val); every record must be in the split."""
    missing = [r for r in records if (r.path, r.attribute) not in assignment]
    if missing:
        raise SplitError(
            f"{source}: {len(missing)} labelled image(s) are not in the split (first: {missing[0].path}); "
            "the labels changed since the split was made; run `fashionattr split` again"
        )
    train = [r for r in records if assignment[(r.path, r.attribute)] == "train"]
    val = [r for r in records if assignment[(r.path, r.attribute)] == "val"]
    return train, val


@dataclass(frozen=True)
class SplitChoice:
    """The split a run or grid trains with, where it came from, and whether it was just made (and must be saved)."""

    assignment: dict[tuple[str, str], str]
    source: Path
    is_new: bool


def choose_split(
    records: list[LabelRecord],
    explicit: str | Path | None,
    dataset_default: Path,
    own: Path,
    val_fraction: float,
    seed: int,
) -> SplitChoice:
    """The one rule: an explicit split file, else the dataset's `Annotations/split.csv`, else a split of its own.

    The own split (at `own`, in the run or grid folder) is made from `seed` and `val_fraction`; one already there
    must agree with the split these options make on every row it holds, so a resumed run or another grid shard
    never trains on another split.
    """
    if explicit:
        if not (Path(explicit).exists() or Path(explicit).is_symlink()):
            raise SplitError(f"{explicit}: split file not found")
        return SplitChoice(read_split(explicit), Path(explicit), is_new=False)
    if dataset_default.is_file():
        return SplitChoice(read_split(dataset_default), dataset_default, is_new=False)
    assignment = make_split(records, val_fraction, seed)
    if own.is_file():
        if any(assignment.get(key) != subset for key, subset in read_split(own).items()):
            raise SplitError(
                f"{own}: this folder was started with another split (different --split-seed, --val-fraction or "
                "labels); rerun with the options it was started with, or choose a new --out"
            )
        return SplitChoice(assignment, own, is_new=False)
    return SplitChoice(assignment, own, is_new=True)
