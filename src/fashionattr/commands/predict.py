"""`fashionattr predict MODEL IMAGES...`: tag image files with every attribute's value and class probabilities.

Predictions stream: each image's answer is written as soon as its batch is done, so memory stays flat over a
whole catalogue folder. An unreadable file becomes an error entry in the output and a line on stderr, the
others go on, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from fashionattr.commands.options import (
    add_applicability_threshold,
    add_min_confidence,
    add_model,
    add_model_options,
    add_no_calibration,
    add_out,
    add_tta,
    count,
)
from fashionattr.io import json_text

if TYPE_CHECKING:
    from fashionattr.inference import Prediction, Predictor
    from fashionattr.inference.predictor import AttributeResult

FORMATS = ("json", "jsonl", "csv", "table")
SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
TABLE_TOP_K = 3
"""Classes a table lists per attribute when --top-k is not given (all of them would not fit a line)."""
CSV_HEADER = ("path", "attribute", "value", "confidence", "applies", "applicability", "probabilities", "error")
UNCERTAIN = "uncertain"
NOT_APPLICABLE = "n/a"


def shown_value(result: AttributeResult) -> str:
    """What a table or CSV cell shows: the value, `n/a` where the attribute does not apply, else `uncertain`."""
    if not result.applies:
        return NOT_APPLICABLE
    return result.value or UNCERTAIN


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="tag images with attribute values and probabilities",
        description="Predict every attribute of the model (or those named) for image files and folders (searched "
        "recursively). MODEL is a checkpoint, a run directory, a folder of per-attribute runs, or an exported "
        ".onnx file. Output: json (an array), jsonl (one object per line), csv (path,attribute,value,confidence,"
        "applies,applicability,probabilities,error; probabilities as a JSON object) or an aligned table; an attribute "
        "that does not apply to the photo has value null (n/a in a table or CSV). Unreadable files get an error "
        "entry and exit code 1; the others are still predicted.",
    )
    add_model(parser)
    parser.add_argument("inputs", metavar="IMAGES_OR_DIRS", nargs="+", help="image files and folders")
    parser.add_argument("--format", choices=FORMATS,
                        help="output format (default: from the --out suffix, else table)")  # fmt: skip
    add_out(parser, short=True, old=("--output",), help="write here instead of stdout (appears when complete)")
    add_tta(parser)
    parser.add_argument("--top-k", type=count(1), metavar="K",
                        help="list only the K most probable classes per attribute "
                        f"(default: all; the table shows {TABLE_TOP_K})")  # fmt: skip
    add_min_confidence(parser)
    add_applicability_threshold(parser)
    parser.add_argument("--attributes", help="comma-separated attributes to predict, full or short names (default: "
                        "all the model knows)")  # fmt: skip
    add_model_options(parser)
    add_no_calibration(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.data.images import ImageError
    from fashionattr.data.overwrite import model_files, refuse_output_over_inputs
    from fashionattr.errors import UserError
    from fashionattr.inference import expand_inputs, load_predictor
    from fashionattr.progress import progress

    output_format = args.format or SUFFIX_FORMATS.get(Path(args.out or "").suffix.lower(), "table")
    files = expand_inputs(args.inputs)
    if not files:
        raise UserError(f"no image files found in {', '.join(args.inputs)}")
    images = [("an input image", file) for file in files]
    refuse_output_over_inputs([("--out", args.out)], [*model_files(args.model), *images])
    predictor = load_predictor(args.model, backend=args.backend, device=args.device, tta=args.tta,
                               min_confidence=args.min_confidence, attributes=args.attributes,
                               applicability_threshold=args.applicability_threshold,
                               calibrated=not args.no_calibration)  # fmt: skip
    if not args.no_calibration and not predictor.calibrated:
        print(f"note: {args.model} gives raw, uncalibrated probabilities (exported with --no-calibration, or "
              "never calibrated: `fashionattr calibrate RUN`)", file=sys.stderr)  # fmt: skip
    show_progress = args.out is not None or output_format != "table"
    failed = 0
    with _open_output(args.out) as stream, progress(len(files), unit="img", enabled=show_progress,
                                                    leave=False) as bar:  # fmt: skip
        writer = _make_writer(output_format, stream, predictor, args.top_k)
        for entry in predictor.predict_paths(files, batch_size=args.batch_size, workers=args.workers):
            if isinstance(entry, ImageError):
                failed += 1
                bar.write(f"fashionattr predict: {entry.path}: {entry.reason}", file=sys.stderr)
                writer.write_error(entry.path, entry.reason)
            else:
                writer.write(entry)
            bar.update(1)
        writer.close()
    if args.out:
        print(f"wrote {len(files)} prediction(s) to {args.out}"
              + (f"; {failed} unreadable image(s)" if failed else ""), file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or a file written under a temporary name and renamed when complete (never left half-written)."""
    if path is None:
        yield sys.stdout
        return
    from fashionattr.io import atomic_open

    # A file name that is not valid UTF-8 is written as its bytes on disk, as stdout does (see cli.main).
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        yield handle


class OutputWriter(Protocol):
    """Writes entries as they come; `close` finishes the document (the JSON array's closing bracket)."""

    def write(self, prediction: Prediction) -> None: ...

    def write_error(self, path: str, reason: str) -> None: ...

    def close(self) -> None: ...


def _make_writer(output_format: str, stream: IO[str], predictor: Predictor, top_k: int | None) -> OutputWriter:
    if output_format == "json":
        return JsonArrayWriter(stream, top_k)
    if output_format == "jsonl":
        return JsonLinesWriter(stream, top_k)
    if output_format == "csv":
        return CsvWriter(stream, top_k)
    return TableWriter(stream, predictor, top_k or TABLE_TOP_K)


class JsonLinesWriter:
    """One JSON object per line, flushed as it comes, so `tail -f` and partial reads work."""

    def __init__(self, stream: IO[str], top_k: int | None) -> None:
        self.stream, self.top_k = stream, top_k

    def write(self, prediction: Prediction) -> None:
        self._line(prediction.to_dict(self.top_k))

    def write_error(self, path: str, reason: str) -> None:
        self._line({"source": path, "error": reason})

    def _line(self, item: dict[str, Any]) -> None:
        self.stream.write(json_text(item, indent=None) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonArrayWriter:
    """A valid JSON array written element by element, never held whole in memory."""

    def __init__(self, stream: IO[str], top_k: int | None) -> None:
        self.stream, self.top_k = stream, top_k
        self.count = 0
        self.stream.write("[")

    def write(self, prediction: Prediction) -> None:
        self._element(prediction.to_dict(self.top_k))

    def write_error(self, path: str, reason: str) -> None:
        self._element({"source": path, "error": reason})

    def _element(self, item: dict[str, Any]) -> None:
        self.stream.write(("," if self.count else "") + "\n" + json_text(item, indent=None))
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n]\n")
        self.stream.flush()


class CsvWriter:
    """One row per image and attribute; an unreadable image is one row with its `error` filled in."""

    def __init__(self, stream: IO[str], top_k: int | None) -> None:
        self.stream, self.top_k = stream, top_k
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(CSV_HEADER)

    def write(self, prediction: Prediction) -> None:
        for name, result in prediction.attributes.items():
            probabilities = dict(result.top(self.top_k)) if self.top_k else result.probabilities
            self.writer.writerow([prediction.source, name, shown_value(result), f"{result.confidence:.6f}",
                                  str(result.applies).lower(), f"{result.applicability:.6f}",
                                  json_text(probabilities, indent=None, separators=(",", ":")), ""])  # fmt: skip
        self.stream.flush()

    def write_error(self, path: str, reason: str) -> None:
        self.writer.writerow([path, "", "", "", "", "", "", reason])
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class TableWriter:
    """A block per image, columns aligned across all images: widths come from the schema, not from the data."""

    def __init__(self, stream: IO[str], predictor: Predictor, top_k: int) -> None:
        self.stream, self.top_k = stream, top_k
        classes = [c for a in predictor.attributes for c in predictor.schema.attribute(a).classes]
        self.name_width = max(len(a) for a in predictor.attributes)
        self.value_width = max(len(UNCERTAIN), *(len(c) for c in classes))

    def write(self, prediction: Prediction) -> None:
        lines = [prediction.source]
        for name, result in prediction.attributes.items():
            # A confident answer lists the runners-up; an uncertain one lists its best guesses.
            listed = result.top(self.top_k) if result.uncertain else result.top(self.top_k)[1:]
            others = ", ".join(f"{c} {p:.1%}" for c, p in listed)
            value = shown_value(result)
            if not result.applies:
                others = f"not shown: the photo shows no {name} (applicability {result.applicability:.0%})"
            lines.append(
                f"  {name:<{self.name_width}}  {value:<{self.value_width}}  {result.confidence:>6.1%}  {others}"
            )
        self.stream.write("\n".join(line.rstrip() for line in lines) + "\n")
        self.stream.flush()

    def write_error(self, path: str, reason: str) -> None:
        self.stream.write(f"{path}\n  error: {reason}\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
