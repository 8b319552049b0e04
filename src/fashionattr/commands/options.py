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
from typing import Any

from fashionattr.applicability import THRESHOLD


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


# ---------------------------------------------------------------------------------------------------------------
# One builder per concept: every command that takes a model, a catalogue, an output, a dataset or a shared flag
# declares it through these, so the spelling, the help and the old spellings are the same everywhere.

MODEL_HELP = "checkpoint, run directory, folder of per-attribute runs, or exported .onnx file"
TORCH_MODEL_HELP = "checkpoint, run directory or folder of per-attribute runs"
CATALOG_HELP = "the catalogue: an SQLite file, or a PostgreSQL database as postgresql://user@host/db"
DATA_HELP = "dataset root (default: the one the run trained on, as its config.yaml records it)"


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option, hidden from --help: it works for one more release and says what replaced it."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kwargs: object) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        import sys

        print(f"{parser.prog}: note: {option_string} is now {self.replacement}; the old spelling goes in the next "
              "release", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: object) -> None:
    """Accept `old` as a hidden, deprecated spelling of `new` (same destination and type)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, replacement=new, help=argparse.SUPPRESS,
                        **kwargs)  # type: ignore[arg-type]  # fmt: skip


def add_model(parser: argparse.ArgumentParser, help: str = MODEL_HELP, old_option: bool = False) -> None:
    """The model, positional `MODEL` in every command; `old_option` also takes the old `--model X` spelling."""
    if old_option:
        parser.add_argument("model", metavar="MODEL", nargs="?", help=help)
        add_alias(parser, "--model", "the first argument (MODEL)", dest="model_option", metavar="MODEL")
        parser.set_defaults(model_option=None, _parser=parser)
    else:
        parser.add_argument("model", metavar="MODEL", help=help)


def add_catalog(parser: argparse.ArgumentParser, required: bool = True, help: str = CATALOG_HELP) -> None:
    """`--catalog DB` in every command; `--db` is the old spelling."""
    parser.add_argument("--catalog", metavar="DB", required=False, help=help + (" (required)" if required else ""))
    add_alias(parser, "--db", "--catalog", dest="catalog", metavar="DB")
    if required:
        parser.set_defaults(_required_catalog=True, _parser=parser)


def add_out(parser: argparse.ArgumentParser, help: str, folder: bool = False, required: bool = False,
            old: tuple[str, ...] = (), short: bool = False, default: str | None = None) -> None:  # fmt: skip
    """`--out` for a command's output (a file, or with `folder` a folder), checked as it is parsed; `old` spellings
    are hidden aliases with a deprecation note."""
    kind = output_folder if folder else output_file
    names = ["--out", "-o"] if short else ["--out"]
    deferred = required and bool(old)  # an old spelling must count as given: checked after parsing
    shown = help + (" (required)" if deferred else "")
    parser.add_argument(*names, metavar="DIR" if folder else "FILE", type=kind, default=default,
                        required=required and not deferred, help=shown)  # fmt: skip
    for spelling in old:
        add_alias(parser, spelling, "--out", dest="out", metavar="DIR" if folder else "FILE", type=kind)
    if deferred:
        parser.set_defaults(_required_out=True, _parser=parser)


def add_data(parser: argparse._ActionsContainer, help: str = DATA_HELP) -> None:
    parser.add_argument("--data", metavar="DIR", help=help)


def add_tta(parser: argparse._ActionsContainer, help: str = "average with the horizontally flipped image") -> None:
    parser.add_argument("--tta", action="store_true", help=help)


def add_no_calibration(parser: argparse._ActionsContainer,
                       help: str = "the network's raw probabilities, without the calibration temperatures fitted "
                       "after training") -> None:  # fmt: skip
    parser.add_argument("--no-calibration", action="store_true", help=help)


def add_min_confidence(parser: argparse._ActionsContainer,
                       help: str = "report an attribute as uncertain below this top probability") -> None:  # fmt: skip
    parser.add_argument("--min-confidence", type=PROBABILITY, default=0.0, metavar="P", help=f"{help} (default 0)")


def add_applicability_threshold(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--applicability-threshold", type=PROBABILITY, default=THRESHOLD, metavar="P",
                        help="show an attribute's tag where the photo's applicability score for it is at least P "
                        f"(default {THRESHOLD:g}; lower shows more tags, fewer of them right: the trade is the "
                        "precision-recall curve of `evaluate --complete-labels`)")  # fmt: skip


def add_device(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def check_required(args: argparse.Namespace) -> None:
    """The options a builder marked required (`--out`, `--catalog`, MODEL), checked after parsing so that an old
    spelling counts as given; a missing one is argparse's usual error (exit 2)."""
    parser: argparse.ArgumentParser | None = getattr(args, "_parser", None)
    if parser is None:
        return
    if getattr(args, "_required_out", False) and getattr(args, "out", None) is None:
        parser.error("the following arguments are required: --out")
    if getattr(args, "_required_catalog", False) and getattr(args, "catalog", None) is None:
        parser.error("the following arguments are required: --catalog")
    if getattr(args, "model_option", None) is not None:
        if args.model is not None:
            parser.error("the model is given twice: as MODEL and with --model; give it once, as MODEL")
        args.model = args.model_option
    if hasattr(args, "model_option") and args.model is None:
        parser.error("the following arguments are required: MODEL")


# ---------------------------------------------------------------------------------------------------------------
# Training settings: typed and range-checked by the one owner of their types and ranges, `fashionattr.config`.


def setting(name: str) -> Callable[[str], object]:
    """A parser for the training setting `name`: its `TrainConfig` type, and the range `config.validate` allows.

    The range is checked by `validate` itself on a default config with this one value set, so the command line and a
    config file are held to the same rule by the same code.
    """

    def parse(text: str) -> object:
        import dataclasses
        import typing

        from fashionattr.config import TrainConfig, validate
        from fashionattr.errors import UserError

        hint = typing.get_type_hints(TrainConfig)[name]
        kinds = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
        kind = kinds[0]
        try:
            value = kind(text) if kind is not bool else parse_bool(text)
        except (ValueError, argparse.ArgumentTypeError):
            words = {int: "a whole number", float: "a number", bool: "true or false"}
            raise argparse.ArgumentTypeError(f"expected {words.get(kind, kind.__name__)}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        try:
            changes: dict[str, Any] = {name: value}
            validate(dataclasses.replace(TrainConfig(data="-"), **changes))
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def default_of(name: str) -> object:
    """The default of training setting `name`, as `TrainConfig` declares it (for help texts)."""
    import dataclasses

    from fashionattr.config import TrainConfig

    for item in dataclasses.fields(TrainConfig):
        if item.name == name:
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            return item.default
    raise KeyError(name)


class LazyChoices(tuple):  # type: ignore[type-arg]
    """Choices read from a domain constant in a module that imports torch, imported only when argparse looks
    (a value given, or this command's --help), so that `fashionattr` starts at once."""

    def __new__(cls, module: str, name: str) -> LazyChoices:
        made = super().__new__(cls)
        made._where = (module, name)  # type: ignore[attr-defined]
        return made

    def _values(self) -> tuple[str, ...]:
        import importlib

        module, name = self._where  # type: ignore[attr-defined]
        return tuple(getattr(importlib.import_module(module), name))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values())

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __len__(self) -> int:
        return len(self._values())

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return self._values()[index]


LAYOUT_CHOICES = LazyChoices("fashionattr.models.layouts", "LAYOUTS")
INTERPOLATION_CHOICES = LazyChoices("fashionattr.data.preprocessing", "RESAMPLING")
AUGMENT_CHOICES = LazyChoices("fashionattr.data.augmentation", "AUGMENTATION_PRESETS")
