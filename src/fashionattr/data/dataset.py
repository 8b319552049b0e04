"""A dataset root in the FashionAI shape: where its files live, and opening one with clear errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.corrections import CORRECTIONS_RELPATH, apply_corrections, read_corrections
from fashionattr.data.labels import (
    ANSWERS_RELPATH,
    LABELS_RELPATH,
    QUESTIONS_RELPATH,
    LabelFileError,
    LabelRecord,
    read_labels,
    read_questions,
)
from fashionattr.data.split import DEFAULT_SPLIT_RELPATH
from fashionattr.errors import UserError
from fashionattr.schema import Schema, schema_for_dataset


@dataclass(frozen=True)
class DatasetRoot:
    """A dataset folder: `Annotations/label.csv`, `Images/<attribute>/...`, optional `Tests/` and `schema.json`."""

    path: Path
    schema: Schema

    @classmethod
    def open(cls, path: str | Path, require_labels: bool = True) -> DatasetRoot:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: dataset folder not found")
        dataset = cls(path=path, schema=schema_for_dataset(path))
        if require_labels and not (dataset.labels_path.exists() or dataset.labels_path.is_symlink()):
            raise UserError(
                f"{path}: no {LABELS_RELPATH} here; a dataset root holds Annotations/label.csv and Images/ "
                "(see the README for the FashionAI layout)"
            )
        return dataset

    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_RELPATH

    @property
    def corrections_path(self) -> Path:
        """Decisions of label review, applied on top of `label.csv` (`fashionattr.data.corrections`)."""
        return self.path / CORRECTIONS_RELPATH

    @property
    def questions_path(self) -> Path:
        return self.path / QUESTIONS_RELPATH

    @property
    def answers_path(self) -> Path:
        return self.path / ANSWERS_RELPATH

    @property
    def default_split_path(self) -> Path:
        return self.path / DEFAULT_SPLIT_RELPATH

    def read_labels(self, path: str | Path | None = None, corrected: bool = True) -> list[LabelRecord]:
        """The rows of a label file, every image checked to lie inside the root.

        By default `Annotations/label.csv` with the review's decisions (`Annotations/corrections.csv`, if there is
        one) applied on top; `corrected=False` gives the file as it is.
        """
        default = path is None
        path = Path(path) if path is not None else self.labels_path
        records = read_labels(path, self.schema)
        check_image_paths(self.path, records, path)
        if default and corrected and self.corrections_path.is_file():
            records = apply_corrections(records, read_corrections(self.corrections_path, self.schema),
                                        self.corrections_path)  # fmt: skip
        return records

    def read_questions(self, path: str | Path | None = None) -> list[LabelRecord]:
        """The rows of a question file (default `Tests/question.csv`), checked like :meth:`read_labels`."""
        path = Path(path) if path is not None else self.questions_path
        records = read_questions(path, self.schema)
        check_image_paths(self.path, records, path)
        return records


def check_image_paths(root: str | Path, records: Sequence[LabelRecord], source: str | Path) -> None:
    """Refuse rows whose image is reached through a symbolic link that leads out of `root`, or is a file another row
    of the same attribute already names (a link, a hard link, or a case-insensitive file system).

    `..` and absolute paths are refused when a row is read; a link needs the root to be known, so it is checked
    here. Links that stay inside the root are fine. Each folder is resolved once and each file costs one `lstat`
    (and a `realpath` only if it is a link). Missing files are left to the image checks, which report them.
    """
    real_root = os.path.realpath(root)
    real_folders: dict[str, str] = {}
    first: dict[tuple[int, int, str], LabelRecord] = {}
    problems: list[tuple[int, str]] = []
    for record in records:
        folder, _, name = record.path.rpartition("/")
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(os.path.join(real_root, folder))
        real = os.path.join(real_folders[folder], name)
        try:
            info = os.lstat(real)
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(real)
                info = os.stat(real)
        except (OSError, ValueError):
            info = None
        if os.path.commonpath([real_root, real]) != real_root:
            problems.append((record.line, f"image path {record.path!r} leads out of the dataset root through a "
                             f"symbolic link (to {real}); copy the file in, or link only within the root"))  # fmt: skip
            continue
        if info is None:
            continue
        key = (info.st_dev, info.st_ino, record.attribute)
        if key in first:
            earlier = first[key]
            problems.append((record.line, f"image path {record.path!r} is the same file as {earlier.path!r} "
                             f"(line {earlier.line}) for {record.attribute}; give each image once"))  # fmt: skip
            continue
        first[key] = record
    if problems:
        raise LabelFileError(Path(source), problems)
