"""`fashionattr submit MODEL DATA/Tests/question.csv --out answer.csv`: write the challenge's answer file.

One line per question row, in the question file's order, `path,attribute,p0;p1;...`. The file is always
complete: an image that cannot be read is answered with uniform probabilities, reported on stderr, and the
exit code is 1, so a submission never silently lacks rows and never silently hides a failure.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from fashionattr.commands.options import add_model, add_model_options, add_no_calibration, add_out, add_tta

if TYPE_CHECKING:
    import numpy as np

    from fashionattr.data.labels import LabelRecord
    from fashionattr.inference import Predictor
    from fashionattr.schema import Schema

MAX_REPORTED_FAILURES = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="answer a question file (Tests/question.csv) with class probabilities",
        description="Predict every row of a FashionAI question file and write the answer file "
        "(path,attribute,p0;p1;... in the question order). Image paths are relative to the dataset root: the "
        "folder above Tests/, or --data. Unreadable images are answered with uniform probabilities, listed on "
        "stderr, and make the exit code 1.",
    )
    add_model(parser)
    parser.add_argument("questions", metavar="QUESTIONS", help="question file, e.g. DATA/Tests/question.csv")
    add_out(parser, required=True, help="answer file to write (appears when complete)")
    parser.add_argument("--data", metavar="DIR", help="dataset root the question paths are relative to (default: "
                        "above Tests/)")  # fmt: skip
    add_tta(parser)
    add_model_options(parser)
    add_no_calibration(parser, help="write the raw network probabilities instead of the calibrated ones; the argmax "
                       "is the same, the order of confidences (and so mAP) may differ: see the run report")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.data.dataset import check_image_paths
    from fashionattr.data.labels import read_questions
    from fashionattr.errors import UserError
    from fashionattr.inference import load_predictor
    from fashionattr.submission import write_submission

    questions_path = Path(args.questions)
    root = dataset_root(questions_path, args.data)
    asked = attributes_asked(questions_path)
    predictor = load_predictor(args.model, backend=args.backend, device=args.device, tta=args.tta,
                               calibrated=not args.no_calibration)  # fmt: skip
    unknown = {name: count for name, count in asked.items() if name not in predictor.attributes}
    if unknown:
        listed = ", ".join(f"{name} ({count} rows)" for name, count in unknown.items())
        raise UserError(f"{questions_path}: asks for attributes the model does not predict: {listed}; "
                        f"the model predicts: {', '.join(predictor.attributes)}")  # fmt: skip
    check_schema(predictor.schema, list(asked), root, questions_path)
    questions = read_questions(questions_path, predictor.schema)
    check_image_paths(root, questions, questions_path)
    if not any((root / q.path).is_file() for q in questions):
        raise UserError(f"{questions_path}: none of its {len(questions)} images is under {root}; pass --data with "
                        "the dataset root (the folder holding Images/)")  # fmt: skip
    vectors, failures = predict_questions(predictor, questions, root, args.batch_size, args.workers)
    write_submission(args.out, questions, vectors, predictor.schema)
    print(f"wrote {len(questions)} answers to {args.out}")
    if not failures:
        return 0
    for path, reason in list(failures.items())[:MAX_REPORTED_FAILURES]:
        print(f"fashionattr submit: {root / path}: {reason}", file=sys.stderr)
    if len(failures) > MAX_REPORTED_FAILURES:
        print(f"fashionattr submit: ... and {len(failures) - MAX_REPORTED_FAILURES} more", file=sys.stderr)
    rows = sum(1 for q in questions if q.path in failures)
    print(f"fashionattr submit: {len(failures)} unreadable image(s); their {rows} answer(s) are uniform "
          "probabilities", file=sys.stderr)  # fmt: skip
    return 1


def dataset_root(questions_path: Path, data: str | None) -> Path:
    """`--data`, else the folder above `Tests/`, else the question file's own folder."""
    from fashionattr.errors import UserError

    if data:
        root = Path(data)
        if not root.is_dir():
            raise UserError(f"{root}: dataset folder not found (--data)")
        return root
    folder = questions_path.absolute().parent
    return folder.parent if folder.name == "Tests" else folder


def check_schema(model: Schema, asked: list[str], root: Path, questions_path: Path) -> None:
    """Refuse when the dataset's schema (its schema.json, else FashionAI's) gives an asked attribute other classes.

    The answer file lists probabilities in class order, and the challenge scores them in the dataset's order: a
    model trained on another schema would answer every question with numbers for the wrong classes.
    """
    from fashionattr.errors import UserError
    from fashionattr.schema import schema_for_dataset, schema_mismatch

    data = schema_for_dataset(root)
    problem = schema_mismatch(model, data, asked, f"the dataset {root}")
    if problem:
        raise UserError(f"{questions_path}: the model was trained on another schema than this dataset's: {problem}; "
                        "answer them with a model trained on this dataset, or pass --data with the dataset root "
                        "that holds the model's schema.json")  # fmt: skip


def attributes_asked(questions_path: Path) -> Counter[str]:
    """Rows per attribute name in a question file, read loosely so unknown names can be listed all at once."""
    from fashionattr.data.labels import parse_csv_line, read_lines

    counts: Counter[str] = Counter()
    for row in map(parse_csv_line, read_lines(questions_path)):
        if not isinstance(row, str) and len(row) >= 2 and row[1]:
            counts[row[1]] += 1
    return counts


def predict_questions(
    predictor: Predictor, questions: list[LabelRecord], root: Path, batch_size: int, workers: int
) -> tuple[list[np.ndarray], dict[str, str]]:
    """A probability vector per question row, and the unreadable images (relative path -> reason).

    Images are predicted one attribute at a time, so of a per-attribute folder only the model asked for runs.
    """
    import numpy as np

    from fashionattr.data.images import ImageError
    from fashionattr.progress import progress

    wanted: dict[str, dict[str, None]] = {}  # attribute -> its image paths, first-seen order, no repeats
    for question in questions:
        wanted.setdefault(question.attribute, {})[question.path] = None
    answers: dict[tuple[str, str], np.ndarray] = {}
    failures: dict[str, str] = {}
    with progress(sum(len(paths) for paths in wanted.values()), unit="img", leave=False) as bar:
        for attribute, paths in wanted.items():
            single = predictor.with_attributes([attribute])
            entries = single.predict_paths([root / p for p in paths], batch_size=batch_size, workers=workers)
            for path, entry in zip(paths, entries, strict=True):
                if isinstance(entry, ImageError):
                    failures[path] = entry.reason
                    classes = predictor.schema.attribute(attribute).num_classes
                    answers[(path, attribute)] = np.full(classes, 1.0 / classes)
                else:
                    answers[(path, attribute)] = np.array(list(entry.attributes[attribute].probabilities.values()))
                bar.update(1)
    return [answers[(q.path, q.attribute)] for q in questions], failures
