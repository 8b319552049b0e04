"""Typed command-line values, and the options every command that runs a model shares.

Every number an option takes is checked as argparse parses it: a value out of range is one line and exit 2 from
argparse (`argument --workers: must be 0 or more, got -1`), before any work starts. Training settings are checked
again with the config file's in `config.resolve_config`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


def count(minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in [minimum, maximum]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"{minimum} or more" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def number(minimum: float = 0.0, maximum: float | None = None, above_minimum: bool = False,
           below_maximum: bool = False) -> Callable[[str], float]:  # fmt: skip
    """A finite number between the bounds (each inclusive unless `above_minimum` / `below_maximum`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= minimum if above_minimum else value < minimum
        too_high = maximum is not None and (value >= maximum if below_maximum else value > maximum)
        if not math.isfinite(value) or too_low or too_high:
            low = f"more than {minimum:g}" if above_minimum else f"{minimum:g} or more"
            high = "" if maximum is None else f" and {'less than' if below_maximum else 'at most'} {maximum:g}"
            raise argparse.ArgumentTypeError(f"must be {low}{high}, got {text}")
        return value

    return parse


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is not a folder: nothing can be created under it."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_folder(text: str) -> str:
    """A folder to write into: missing (it will be created) or a folder, with no file in the way above it."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder; give a folder to write into")
    if (blocker := _first_file_above(path)) is not None:
        raise argparse.ArgumentTypeError(f"{blocker} is a file, so the folder {text} cannot be made under it")
    return text


def output_file(text: str) -> str:
    """A file to write: not a folder, with no file in the way of its parent folders (its old content is replaced)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of a file to write")
    if (blocker := _first_file_above(path)) is not None:
        raise argparse.ArgumentTypeError(f"{blocker} is a file, so {text} cannot be created under it")
    return text


WORKERS = count(0)
BATCH = count(1)
PROBABILITY = number(0.0, 1.0)

DEVICE_HELP = "auto, cpu, cuda or cuda:N (default auto)"
BACKEND_CHOICES = ("auto", "torch", "onnx")
VECTOR_INDEX_CHOICES = ("auto", "exact", "ann")
VECTOR_INDEX_HELP = ("similar-garment search: exact (every embedding scored), ann (approximate HNSW index), or auto "
                     "(default: exact below 50,000 images, ann from there on)")  # fmt: skip


def add_model_options(parser: argparse.ArgumentParser, batching: bool = True, backend: bool = True) -> None:
    """The options of every command that runs a trained model: batch size and loader workers, device, backend."""
    if batching:
        parser.add_argument("--batch-size", type=BATCH, default=32, help="images per forward pass (default 32)")
        parser.add_argument("--workers", type=WORKERS, default=2, help="image decoding processes (default 2)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    if backend:
        parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                            help="auto: onnx for a .onnx file, torch otherwise")  # fmt: skip
