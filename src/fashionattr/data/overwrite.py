"""Outputs never replace inputs: the one check every command makes before it writes a file.

`submit --out` naming the question file once replaced the questions with the answers, `evaluate
--save-predictions Annotations/label.csv` the labels with predictions, `predict --output photo.jpg` the photo with
JSON, each with exit 0. An output is refused when it resolves (through links, `..`, hard links) to one of the
command's inputs, or to an existing file of a dataset (its `Annotations/`, `Tests/`, `Images/` or schema file)
whether or not this command reads that dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fashionattr.data.labels import LABELS_RELPATH, QUESTIONS_RELPATH
from fashionattr.errors import UserError
from fashionattr.schema import SCHEMA_FILE_NAMES

DATASET_FOLDERS = ("Annotations", "Tests", "Images")
MODEL_SUFFIXES = (".pt", ".pth", ".safetensors", ".onnx")


def refuse_output_over_inputs(
    outputs: Iterable[tuple[str, str | Path | None]],
    inputs: Iterable[tuple[str, str | Path]],
    owns: Iterable[str | Path] = (),
) -> None:
    """Raise a :class:`UserError` naming both paths when an output would replace an input.

    `outputs` are (option, path) pairs (a None path is an output not asked for); `inputs` are (what, path) pairs,
    e.g. ("the question file", path); `owns` are dataset files the command itself maintains (`split` writes the
    dataset's split.csv).
    """
    wanted = [(option, Path(path)) for option, path in outputs if path is not None]
    if not wanted:
        return
    by_path: dict[str, tuple[str, str]] = {}
    by_file: dict[tuple[int, int], tuple[str, str]] = {}
    for what, path in inputs:
        by_path.setdefault(os.path.realpath(path), (what, str(path)))
        identity = _identity(path)
        if identity is not None:
            by_file.setdefault(identity, (what, str(path)))
    owned = {os.path.realpath(path) for path in owns}
    for option, path in wanted:
        real = os.path.realpath(path)
        identity = _identity(path)
        hit = by_path.get(real) or (by_file.get(identity) if identity is not None else None)
        if hit is not None:
            what, source = hit
            named = "" if os.path.abspath(source) == os.path.abspath(path) else f" ({source})"
            raise UserError(f"{option} {path} is {what}{named}: writing there would replace it; choose another path")
        dataset_file = _dataset_file(real)
        if dataset_file is not None and real not in owned:
            raise UserError(f"{option} {path} is {dataset_file}: writing there would replace it; choose another path")


def model_files(model: str | Path) -> list[tuple[str, Path]]:
    """The files a model argument stands for (a checkpoint, an ONNX file, a run folder or a folder of runs)."""
    path = Path(model)
    if not path.is_dir():
        return [("the model", path)]
    found = [file for pattern in ("*", "*/*") for file in path.glob(pattern) if file.suffix in MODEL_SUFFIXES]
    return [("a file of the model", file) for file in sorted(found)]


def dataset_inputs(root: str | Path) -> list[tuple[str, Path]]:
    """A dataset's label, question and schema files, for a command that reads the dataset."""
    root = Path(root)
    return [("the dataset's label file", root / LABELS_RELPATH),
            ("the dataset's question file", root / QUESTIONS_RELPATH),
            *(("the dataset's schema file", root / name) for name in SCHEMA_FILE_NAMES)]  # fmt: skip


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _dataset_file(real: str) -> str | None:
    """What an existing file is, when it lies in a dataset's annotation, test or image folders, or is its schema."""
    if not os.path.isfile(real):
        return None
    path = Path(real)
    for root in path.parents:
        if not ((root / LABELS_RELPATH).is_file() or (root / QUESTIONS_RELPATH).is_file()):
            continue
        relative = path.relative_to(root)
        if relative.parts[0] in DATASET_FOLDERS or relative.as_posix() in SCHEMA_FILE_NAMES:
            return f"a file of the dataset {root} ({relative.as_posix()})"
    return None
