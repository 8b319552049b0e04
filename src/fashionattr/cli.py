"""The `fashionattr` command: a thin argparse front over the library, one module per subcommand.

Exit codes: 0 success, 1 failure while running (a bad file among many, a diverged run), 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

# OpenMP threads busy-wait between parallel regions by default; when anything else shares the cores, the spinning
# starves the other threads and CPU training slows down many times over. Must be set before torch is imported
# (every command imports it lazily); an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fashionattr import __version__
from fashionattr.commands.examples import attach_examples
from fashionattr.commands.options import check_required
from fashionattr.data.labels import LabelFileError
from fashionattr.data.split import SplitError
from fashionattr.errors import CheckpointError, RunError, UserError, file_system_error
from fashionattr.schema import SchemaError

# Each module in fashionattr.commands defines `register(subparsers)`, which adds its parser and sets
# `func` to a callable taking the parsed namespace and returning an exit code. Modules keep heavy
# imports (torch, timm) inside their functions so `--help` stays instant.
COMMAND_MODULES = (
    "demo", "synth", "import_folders", "check", "split", "prepare", "recipes", "train", "evaluate", "grid", "report",
    "predict", "submit", "export", "serve", "catalog", "calibrate", "explain", "review", "bench",
)  # fmt: skip

USER_ERRORS = (UserError, LabelFileError, SplitError, SchemaError, CheckpointError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionattr",
        description="Apparel attribute recognition on FashionAI-style data: train, compare, score, serve, catalogue.",
    )
    parser.add_argument("--version", action="version", version=f"fashionattr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"fashionattr.commands.{name}").register(subparsers)
    attach_examples(parser)
    return parser


def _write_file_names_as_bytes() -> None:
    """Print a file name that is not valid UTF-8 as the bytes it has on disk instead of dying on it.

    Python hands such names over as surrogate escapes (PEP 383), which a strict UTF-8 stdout refuses to encode.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_required(args)
    except SystemExit as exc:  # argparse's own exit: --help (0) or a usage error, already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    _write_file_names_as_bytes()
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"fashionattr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RunError as exc:
        print(f"fashionattr {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fashionattr {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        refusal = file_system_error(exc)
        if refusal is None:
            return _internal_error(args.command)
        print(f"fashionattr {args.command}: error: {refusal}", file=sys.stderr)
        return 2 if isinstance(refusal, UserError) else 1
    except Exception:
        return _internal_error(args.command)


def _internal_error(command: str) -> int:
    """Not the user's mistake: show where it broke, and say so, so nobody hunts for a fault in their input."""
    traceback.print_exc()
    print(f"fashionattr {command}: internal error: this is a bug in fashionattr, not a problem with the input; "
          "please report it with the traceback above", file=sys.stderr)  # fmt: skip
    return 70


if __name__ == "__main__":
    sys.exit(main())
