"""A dataset root in the FashionAI shape: where its files live, and opening one with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.labels import ANSWERS_RELPATH, LABELS_RELPATH, QUESTIONS_RELPATH
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
        if require_labels and not dataset.labels_path.is_file():
            raise UserError(
                f"{path}: no {LABELS_RELPATH} here; a dataset root holds Annotations/label.csv and Images/ "
                "(see the README for the FashionAI layout)"
            )
        return dataset

    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_RELPATH

    @property
    def questions_path(self) -> Path:
        return self.path / QUESTIONS_RELPATH

    @property
    def answers_path(self) -> Path:
        return self.path / ANSWERS_RELPATH

    @property
    def default_split_path(self) -> Path:
        return self.path / DEFAULT_SPLIT_RELPATH
