"""The 4:1 train/validation split by image, stratified by (attribute, class) and reproducible on any machine.

Order inside each stratum comes from a SHA-256 of the seed and the image path, so the split depends
only on the file names (and which files hold the same bytes) and the seed, not on row order, NumPy's
generator or the platform.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.duplicates import same_image_key
from fashionattr.data.labels import LabelFileError, LabelRecord, normalise_image_path, parse_csv_line, read_lines
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text

DEFAULT_SPLIT_RELPATH = Path("Annotations") / "split.csv"
SPLIT_USERS_SUFFIX = ".runs"
"""Beside a dataset's split file, `split.csv.runs` lists the run folders that trained on it, one a line."""
SUBSETS = ("train", "val")


class SplitError(UserError):
    """A split file is malformed or does not match the labels."""


def _rank(seed: int, rec: LabelRecord) -> str:
    return hashlib.sha256(f"{seed}:{rec.attribute}:{rec.path}".encode()).hexdigest()


def make_split(records: Iterable[LabelRecord], val_fraction: float = 0.2, seed: int = 0,
               root: str | Path | None = None) -> dict[tuple[str, str], str]:  # fmt: skip
    """Map each `(path, attribute)` to `train` or `val`, keeping every image on one side.

    An image is a file: its rows for several attributes, and byte-identical copies under other paths (found when
    the dataset `root` is given), go to the same side, or the shared backbone would train and validate on it.
    Each (attribute, class) stratum gives round(n*f) rows to validation: images with several rows are placed first
    (each by a draw from its hash against the share its strata still need), then single-row images fill every
    stratum exactly, in hash order. A dataset where each image has one row is split as by stratum alone.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val fraction must be between 0 and 1, got {val_fraction}")
    records = list(records)
    image_of = same_image_key(root, (r.path for r in records))
    images: dict[str, list[LabelRecord]] = defaultdict(list)
    stratum_size: Counter[tuple[str, int]] = Counter()
    for rec in records:
        images[image_of[rec.path]].append(rec)
        stratum_size[(rec.attribute, rec.target)] += 1
    wanted = {stratum: round(n * val_fraction) for stratum, n in stratum_size.items()}
    in_val: Counter[tuple[str, int]] = Counter()
    placed: Counter[tuple[str, int]] = Counter()
    assignment: dict[tuple[str, str], str] = {}

    def place(members: list[LabelRecord], subset: str) -> None:
        for rec in members:
            assignment[(rec.path, rec.attribute)] = subset
            placed[(rec.attribute, rec.target)] += 1
            in_val[(rec.attribute, rec.target)] += subset == "val"

    ranked = sorted(images.values(), key=lambda members: min(_rank(seed, r) for r in members))
    for members in (m for m in ranked if len(m) > 1):
        strata = [(r.attribute, r.target) for r in members]
        need = sum((wanted[s] - in_val[s]) / (stratum_size[s] - placed[s]) for s in strata) / len(strata)
        draw = int(min(_rank(seed, r) for r in members)[:13], 16) / 16**13
        place(members, "val" if draw < need else "train")
    for (rec,) in (m for m in ranked if len(m) == 1):
        place([rec], "val" if in_val[(rec.attribute, rec.target)] < wanted[(rec.attribute, rec.target)] else "train")
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
    both = {r.path for r in train} & {r.path for r in val}
    if both:
        raise SplitError(
            f"{source}: {len(both)} image(s) are in training for one attribute and in validation for another "
            f"(first: {min(both)}), so the shared backbone would validate on images it trained on; make the split "
            "again with `fashionattr split DATA --force` (it keeps each image on one side)"
        )
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
    root: str | Path | None = None,
) -> SplitChoice:
    """The one rule: an explicit split file, else the dataset's `Annotations/split.csv`, else a split of its own.

    The own split (at `own`, in the run or grid folder) is made from `seed` and `val_fraction` (by image, with the
    byte-identical files of the dataset `root` kept together); one already there
    must agree with the split these options make on every row it holds, so a resumed run or another grid shard
    never trains on another split.
    """
    if explicit:
        if not (Path(explicit).exists() or Path(explicit).is_symlink()):
            raise SplitError(f"{explicit}: split file not found")
        return SplitChoice(read_split(explicit), Path(explicit), is_new=False)
    if dataset_default.is_file():
        return SplitChoice(read_split(dataset_default), dataset_default, is_new=False)
    assignment = make_split(records, val_fraction, seed, root)
    if own.is_file():
        if any(assignment.get(key) != subset for key, subset in read_split(own).items()):
            raise SplitError(
                f"{own}: this folder was started with another split (different --split-seed, --val-fraction or "
                "labels); rerun with the options it was started with, or choose a new --out"
            )
        return SplitChoice(assignment, own, is_new=False)
    return SplitChoice(assignment, own, is_new=True)


def record_split_user(split_file: Path, run_folder: Path) -> None:
    """Note in `split.csv.runs` that a run trained on this split, so replacing it can name the runs it concerns.

    Best effort: a read-only dataset (a shared disk) keeps no list, and training goes on.
    """
    users = split_file.with_name(split_file.name + SPLIT_USERS_SUFFIX)
    entry = str(Path(run_folder).resolve())
    try:
        if entry in split_users(split_file):
            return
        with open(users, "a", encoding="utf-8") as handle:
            handle.write(entry + "\n")
    except OSError:
        pass


def split_users(split_file: Path) -> list[str]:
    """The run folders recorded as having trained on `split_file` that still exist (none when no list is kept)."""
    users = split_file.with_name(split_file.name + SPLIT_USERS_SUFFIX)
    try:
        lines = users.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [line for line in dict.fromkeys(lines) if line and Path(line).is_dir()]


def check_replacing(split_file: Path, assignment: dict[tuple[str, str], str], force: bool) -> None:
    """Refuse to replace an existing, different split unless forced: runs trained on it would no longer match it."""
    if force or not (split_file.exists() or split_file.is_symlink()):
        return
    try:
        old = read_split(split_file)
    except SplitError:
        old = {}
    if old == assignment:
        return
    differ = sum(1 for key in old.keys() | assignment.keys() if old.get(key) != assignment.get(key))
    users = split_users(split_file)
    trained = f"; runs trained on it: {', '.join(users)}" if users else ""
    raise SplitError(
        f"{split_file} already holds a different split ({differ} row(s) would change){trained}; "
        "pass --force to replace it (each run keeps its own copy, split.csv in its folder)"
    )
