"""What several test modules share that is not a fixture (the fixtures are in conftest.py): the trained run's shape,
one way to run the command line (in this process, or as a child), builders of small datasets, photo folders,
catalogues and review folders, and checks.

Test modules import these `from helpers import ...`; no test module imports another.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw

from corpus import A, Case
from fashionattr.data.labels import (
    LABELS_RELPATH,
    LabelFileError,
    LabelRecord,
    parse_csv_line,
    read_labels,
    read_lines,
)
from fashionattr.schema import FASHIONAI
from fashionattr.submission import Answer

# --- the shared trained runs (built by conftest.py's fixtures) -----------------------------------------------------

PER_ATTRIBUTE = ["coat_length_labels", "sleeve_length_labels"]
"""The attributes of the `trained_per_attribute_run` folder (one run directory each)."""

CATALOG_BACKENDS = ("sqlite", "postgresql")
"""The storage backends every catalogue test runs on (conftest.py's `catalog_db`)."""


@dataclass(frozen=True)
class TrainedRun:
    """A dataset root and a run directory trained on it (for per-attribute: the folder of run directories)."""

    data: Path
    run: Path

    @property
    def checkpoint(self) -> Path:
        return self.run / "best.pt"

    @property
    def questions(self) -> Path:
        return self.data / "Tests" / "question.csv"

    @property
    def answers(self) -> Path:
        return self.data / "Tests" / "answers.csv"


QUICK_TRAIN = ["--arch", "test_resnet", "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0",
               "--no-progress"]  # fmt: skip
"""Options that make `train` (and, without the first two, `grid`) take seconds."""

CORPUS_DIR = "Images/coat_length_labels/corpus"
"""Where conftest.py's `corpus_dataset` puts the image corpus inside its dataset."""


def bad_cases(cases: dict[str, Case]) -> dict[str, Case]:
    """The corpus files that must be refused."""
    return {name: case for name, case in cases.items() if not case.good}


# --- the command line ----------------------------------------------------------------------------------------------


class CliRun(NamedTuple):
    """What one `fashionattr` command did: its exit code and what it wrote to stdout and stderr."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        """stdout, then stderr."""
        return self.out + self.err


def run_cli(*argv: str | os.PathLike[str]) -> CliRun:
    """Run `fashionattr ARGV` in this process and capture what it prints.

    Needs no `capsys`, so module-scoped fixtures can run commands too; only this command's output is returned.
    """
    from fashionattr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([os.fspath(part) for part in argv])
    return CliRun(code, out.getvalue(), err.getvalue())


def cli_command(*argv: str | os.PathLike[str]) -> list[str]:
    """The command line of `fashionattr ARGV` in a child process (for `subprocess`)."""
    return [sys.executable, "-m", "fashionattr", *(os.fspath(part) for part in argv)]


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


def refused(argv: Sequence[str | os.PathLike[str]], *words: str, code: int = 2) -> str:
    """Run the command in this process: it must exit with `code`, print no traceback, and say each of `words` on
    stderr, which is returned."""
    result = run_cli(*argv)
    assert result.code == code, (argv, result.err)
    assert_no_traceback(result.err)
    for word in words:
        assert word in result.err, (argv, word, result.err)
    return result.err


def torchrun(*args: str, codes: Collection[int] | None = (0,)) -> subprocess.CompletedProcess[str]:
    """`torchrun` with two processes on this machine (one OpenMP thread each); the exit code must be one of `codes`
    unless `codes` is None."""
    from fashionattr.bench.service_process import free_port

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if codes is not None:
        assert result.returncode in codes, result.stdout[-3000:] + result.stderr[-3000:]
    return result


# --- small datasets and images ------------------------------------------------------------------------------------


def tiny_root(folder: Path, synthetic_data: Path, labels: str = A) -> Path:
    """A dataset root holding Images/coat_length_labels/a.jpg and b.jpg (real photos) and the given label.csv."""
    images = folder / "Images" / "coat_length_labels"
    images.mkdir(parents=True)
    sources = sorted((synthetic_data / "Images" / "coat_length_labels").glob("*.jpg"))[:2]
    for source, name in zip(sources, ("a.jpg", "b.jpg"), strict=True):
        shutil.copyfile(source, images / name)
    (folder / "Annotations").mkdir()
    (folder / LABELS_RELPATH).write_text(labels, encoding="utf-8", newline="")
    return folder


def draw_pattern(image: Image.Image, kind: int, period: int, colour: tuple[int, ...]) -> None:
    """Stripes whose direction (kind 0-2) or width (period) is the class; colours are random for every class."""
    draw = ImageDraw.Draw(image)
    size = image.size[0]
    for offset in range(-size, 2 * size, 2 * period):
        if kind == 0:
            draw.rectangle((0, offset, size, offset + period - 1), fill=colour)
        elif kind == 1:
            draw.rectangle((offset, 0, offset + period - 1, size), fill=colour)
        else:
            draw.polygon([(offset, 0), (offset + period, 0), (offset + period + size, size), (offset + size, size)],
                         fill=colour)  # fmt: skip


# --- photo folders and catalogues -----------------------------------------------------------------------------------

PHOTO_ATTRIBUTES = ("coat_length_labels", "sleeve_length_labels", "pant_length_labels")
PHOTOS_PER_ATTRIBUTE = 3
LENGTHS = ("skirt_length_labels", "coat_length_labels", "pant_length_labels", "sleeve_length_labels")


def make_photo_folder(data: Path, folder: Path) -> Path:
    """Nine synthetic photos (one sub-folder per attribute) and a corrupt `broken.jpg` at the top."""
    for attribute in PHOTO_ATTRIBUTES:
        target = folder / attribute.removesuffix("_labels")
        target.mkdir(parents=True)
        for source in sorted((data / "Images" / attribute).glob("*.jpg"))[:PHOTOS_PER_ATTRIBUTE]:
            shutil.copy(source, target / source.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return folder


class ShownParts:
    """The tests' model as one that has learned which parts a photo shows: a full figure shows every attribute, an
    upper-body close-up (the design attributes' photos) none of the lengths.

    The tests' model is trained for two steps, so its own applicability decides that nothing applies; a catalogue
    whose every tag is hidden would leave facets and tag search nothing to count. Catalogue tests index through
    this, which keeps the model's values, probabilities and embeddings and sets only `applies`.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict_paths(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for entry in self.predictor.predict_paths(*args, **kwargs):
            close_up = "_design" in str(getattr(entry, "source", ""))
            for name, result in getattr(entry, "attributes", {}).items():
                result.applies = not (close_up and name in LENGTHS)
                result.applicability = 0.9 if result.applies else 0.1
                shown = result.applies and result.confidence >= self.predictor.min_confidence
                result.value = self.predictor.schema.attribute(name).classes[result.index] if shown else None
            yield entry


def catalogue_predictor(run: Path) -> Any:
    """The predictor catalogue tests index with (`ShownParts` over the run's model)."""
    from fashionattr.inference import Predictor

    return ShownParts(Predictor.from_path(run, device="cpu"))


class Interrupted(Exception):
    pass


class InterruptingPredictor:
    """The real predictor, killed (an exception) after `after` images have come out of the model."""

    def __init__(self, predictor: Any, after: int) -> None:
        self.predictor, self.after = predictor, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict_paths(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, entry in enumerate(self.predictor.predict_paths(*args, **kwargs)):
            if n == self.after:
                raise Interrupted
            yield entry


def build_catalog(trained_run: TrainedRun, folder: Path, db: Path) -> Path:
    """`make_photo_folder` at `folder`, indexed into the SQLite catalogue `db` through `catalogue_predictor`."""
    from fashionattr.catalog import index_catalog

    make_photo_folder(trained_run.data, folder)
    predictor = catalogue_predictor(trained_run.run)
    index_catalog(db, folder, trained_run.run, predictor=predictor, batch_size=8, workers=0, progress=False)
    return db


def make_review_folder(source: Path, folder: Path, candidates: int = 4) -> Path:
    """A review folder as `fashionattr review` writes it, over the dataset at `source` (a copy a test may change)."""
    records = read_labels(source / "Annotations" / "label.csv", FASHIONAI)[:candidates]
    folder.mkdir(parents=True)
    rows = ["path,attribute,given,suggested,score,given_probability,suggested_probability"]
    for n, record in enumerate(records):
        classes = FASHIONAI.attribute(record.attribute).classes
        other = classes[(record.target + 1) % len(classes)]
        rows.append(f"{record.path},{record.attribute},{classes[record.target]},{other},{0.9 - n / 10:.4f},0.1,0.8")
    (folder / "label_issues.csv").write_text("\n".join(rows) + "\n")
    (folder / "review.json").write_text(json.dumps({"data": str(source.resolve()), "reviewed": 10, "candidates": 4}))
    return folder


# --- the service most HTTP tests share (conftest.py's `server`) ------------------------------------------------------

UPLOAD_LIMIT_MB = 1
DECODE_THREADS = 2
SERVER_OPTIONS = ["--max-upload-mb", str(UPLOAD_LIMIT_MB), "--batch-wait-ms", "50", "--max-batch", "8",
                  "--decode-threads", str(DECODE_THREADS)]  # fmt: skip
"""A 1 MB upload limit, a 50 ms batching window of at most 8 images, two decoding threads (besides its catalogue
and review queue)."""


# --- checks --------------------------------------------------------------------------------------------------------


def strict_loads(text: str) -> object:
    """Parse as RFC 8259 JSON: `NaN`, `Infinity` and `-Infinity` (which Python's json writes by default) are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def answers_follow_questions(
    answers: Sequence[Answer], questions: Sequence[LabelRecord], answer_path: str | Path
) -> None:
    """Check the answers cover exactly the question rows in the same order; name the first line that differs."""
    answer_path = Path(answer_path)
    for index, ((image_path, attribute_name, _), question) in enumerate(zip(answers, questions, strict=False)):
        if (image_path, attribute_name) != (question.path, question.attribute):
            message = (
                f"answer is for {image_path} / {attribute_name} but question row {index + 1} (line {question.line}) "
                f"asks for {question.path} / {question.attribute}; answers must follow the question rows in order"
            )
            raise LabelFileError(answer_path, [(_answer_line_number(answer_path, index), message)])
    if len(answers) < len(questions):
        missing = questions[len(answers)]
        message = (
            f"{len(answers)} answers for {len(questions)} questions; the first unanswered question is "
            f"{missing.path} / {missing.attribute} (question line {missing.line})"
        )
        raise LabelFileError(answer_path, [(0, message)])
    if len(answers) > len(questions):
        message = f"{len(answers)} answers for {len(questions)} questions; this line and the rest are extra"
        raise LabelFileError(answer_path, [(_answer_line_number(answer_path, len(questions)), message)])


def _answer_line_number(answer_path: Path, index: int) -> int:
    """Line number of the `index`-th non-blank row, found again only when an error needs it (0 if unknown)."""
    try:
        lines = read_lines(answer_path)
    except LabelFileError:
        return 0
    row_lines = [number for number, line in enumerate(lines, start=1) if any(map(str.strip, parse_csv_line(line)))]
    return row_lines[index] if index < len(row_lines) else 0


def hide_skirt_length(monkeypatch: Any) -> None:
    """Every answer of the model says the photo shows no skirt (a close-up): value null, `applies` false."""
    from dataclasses import replace

    from fashionattr.inference import Predictor

    original = Predictor.results

    def no_skirt(self: Predictor, probs: Any, row: int) -> Any:
        answers = original(self, probs, row)
        answers["skirt_length_labels"] = replace(answers["skirt_length_labels"], value=None, applies=False,
                                                 applicability=0.03)  # fmt: skip
        return answers

    monkeypatch.setattr(Predictor, "results", no_skirt)
