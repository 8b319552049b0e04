"""A dataset root in the FashionAI shape: where its files live, and opening one with clear errors."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from fashionattr.data.links import Tree
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


DATASET_KEY = "dataset"
"""Where a checkpoint records its dataset: `{"path": absolute, "from_run": relative to the run folder}`."""


def dataset_record(data: str | Path, run_folder: str | Path) -> dict[str, str]:
    """How a run remembers its dataset so that a moved or copied run still finds it: the absolute path, and the path
    from the run folder (a run copied together with its data, as `runs/demo/run` with `runs/demo/data`)."""
    absolute = os.path.abspath(data)
    return {"path": absolute, "from_run": os.path.relpath(absolute, os.path.abspath(run_folder))}


def dataset_of_run(checkpoint: str | Path, payload: dict[str, Any], data: str | Path | None = None,
                   require_labels: bool = True) -> DatasetRoot:  # fmt: skip
    """The dataset a run trained on: `data` (the user's --data) when given, else the first of the places the
    checkpoint records that holds a dataset: beside the run as it was (relative to the run folder, wherever that is
    now), where it was (absolute), and as training was given it (older runs).
    """
    if data is not None:
        if not Path(data).is_dir():
            raise UserError(f"{data}: dataset folder not found (--data)")
        return DatasetRoot.open(data, require_labels=require_labels)
    run_folder = Path(checkpoint).parent
    record = payload.get(DATASET_KEY)
    config = payload.get("config")
    candidates: list[Path] = []
    if isinstance(record, dict):
        where = Path(record["path"]) if isinstance(record.get("path"), str) else None
        beside = (run_folder / record["from_run"]).resolve() if isinstance(record.get("from_run"), str) else None
        if beside is not None and not (where is not None and where.is_dir() and where.resolve() == beside):
            candidates.append(beside)
        if where is not None:
            candidates.append(where)  # the path as recorded, also when it is the same place as the one beside
    if isinstance(config, dict) and isinstance(config.get("data"), str) and config["data"]:
        candidates.append(Path(config["data"]))
    for candidate in dict.fromkeys(candidates):
        if (candidate / LABELS_RELPATH).is_file() or (candidate / QUESTIONS_RELPATH).is_file():
            return DatasetRoot.open(candidate, require_labels=require_labels)
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates)) or "the checkpoint names none"
    raise UserError(f"{checkpoint}: the dataset the run trained on is not found (looked in: {looked}); pass --data "
                    "with the dataset root")  # fmt: skip


def check_image_paths(root: str | Path, records: Sequence[LabelRecord], source: str | Path) -> None:
    """Refuse rows whose image is reached through a symbolic link that leads out of the dataset, or is a file another
    row of the same attribute already names (a link, a hard link, or a case-insensitive file system).

    The root, and its `Images/` folder, may themselves be links (to another disk): each is resolved once and counts
    as inside (the rule is `data.links`'). `..` and absolute paths are refused when a row is read; a link needs the
    root to be known, so it is checked here. Each folder is resolved once and each file costs one `lstat` (and a
    `realpath` only if it is a link). Missing files are left to the image checks, which report them. Rows refused
    for one shared cause (a folder that is a link out of the dataset) are one line, not one per row.
    """
    tree = Tree.dataset(root)
    real_root = tree.inside[0]
    real_folders: dict[str, str] = {}
    first: dict[tuple[int, int, str], LabelRecord] = {}
    problems: list[tuple[int, str]] = []
    leaving_folders: dict[str, list[LabelRecord]] = {}
    for record in records:
        folder, _, name = record.path.rpartition("/")
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(os.path.join(real_root, folder))
        if not tree.contains(real_folders[folder]):
            leaving_folders.setdefault(folder, []).append(record)
            continue
        real = os.path.join(real_folders[folder], name)
        try:
            info = os.lstat(real)
            if stat.S_ISLNK(info.st_mode):
                real = os.path.realpath(real)
                info = os.stat(real)
        except (OSError, ValueError):
            info = None
        leaves = tree.outside(real)
        if leaves is not None:
            problems.append((record.line, f"image path {record.path!r} {leaves}; copy the file in, or link only "
                             "within the root"))  # fmt: skip
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
    for folder, rows in leaving_folders.items():
        problems.append((rows[0].line, f"folder {folder}/ leads out of the dataset root through a symbolic link "
                         f"(to {real_folders[folder]}), and {len(rows)} image path(s) lie in it (first: "
                         f"{rows[0].path!r}); the dataset root and its Images/ folder may be links, folders inside "
                         "them may not lead elsewhere"))  # fmt: skip
    if problems:
        raise LabelFileError(Path(source), sorted(problems))
