"""Where things live in a FashionAI-style dataset root, and opening one with clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.labels import ANSWERS_RELPATH, LABELS_RELPATH, QUESTIONS_RELPATH
from fashionattr.data.split import DEFAULT_SPLIT_RELPATH
from fashionattr.errors import UserError
from fashionattr.schema import Schema, schema_for_dataset


@dataclass(frozen=True)
class DatasetLayout:
    """A dataset root: `Annotations/label.csv`, `Images/<attribute>/...`, optional `Tests/` and `schema.json`."""

    root: Path
    schema: Schema

    @classmethod
    def open(cls, root: str | Path, require_labels: bool = True) -> DatasetLayout:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: dataset folder not found")
        layout = cls(root=root, schema=schema_for_dataset(root))
        if require_labels and not layout.labels_path.is_file():
            raise UserError(
                f"{root}: no {LABELS_RELPATH} here; a dataset root holds Annotations/label.csv and Images/ "
                "(see the README for the FashionAI layout)"
            )
        return layout

    @property
    def labels_path(self) -> Path:
        return self.root / LABELS_RELPATH

    @property
    def questions_path(self) -> Path:
        return self.root / QUESTIONS_RELPATH

    @property
    def answers_path(self) -> Path:
        return self.root / ANSWERS_RELPATH

    @property
    def default_split_path(self) -> Path:
        return self.root / DEFAULT_SPLIT_RELPATH

    def image_path(self, relative: str) -> Path:
        return self.root / relative
