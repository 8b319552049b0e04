"""`fashionattr review MODEL --out DIR`: rank the labels worth a second look, for a person to check.

From out-of-sample probabilities (the validation split, or K-fold cross-validation over the training split), with
confident learning (cleanlab). Writes label_issues.csv (the candidates), review.json and review.html; the label file
is never modified. A person decides on each candidate in `fashionattr serve MODEL --review DIR`; the decisions go to
the dataset's Annotations/corrections.csv, which training reads on top of label.csv. `--write-corrected FILE`
writes label.csv with those decisions applied.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fashionattr.commands.options import (
    BATCH,
    TORCH_MODEL_HELP,
    WORKERS,
    add_data,
    add_device,
    add_model,
    add_out,
    count,
    output_file,
)

if TYPE_CHECKING:
    from fashionattr.review import OutOfSample

SHOWN = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "review",
        help="list the labels worth checking (confident learning on out-of-sample probabilities)",
        description="Find candidate label mistakes for a person to check: the run's model scores its validation "
        "split (--split val, the default), or K models trained with the run's own config score the training split "
        "by cross-validation (--split train --folds K); cleanlab's confident learning picks the labels the "
        "probabilities disagree with. A suggestion on a class the label marks 'm' is not a candidate. Writes "
        "label_issues.csv (path, attribute, given, suggested, score), review.json and review.html, strongest "
        "disagreement first. The label file is never modified: decide on the candidates in `fashionattr serve "
        "MODEL --review DIR` (decisions go to Annotations/corrections.csv, which train and check read on top of "
        "label.csv).",
    )
    add_model(parser, help=TORCH_MODEL_HELP)
    add_out(parser, folder=True, required=True, help="folder for label_issues.csv, review.json and review.html")
    parser.add_argument("--split", choices=["val", "train"], default="val", help="labels to review (default val)")
    parser.add_argument("--folds", type=count(2), metavar="K",
                        help="with --split train: train K models by cross-validation (kept in DIR/folds)")  # fmt: skip
    parser.add_argument("--epochs", type=count(1), metavar="N", help="epochs of each fold's model (default: the "
                        "run's)")  # fmt: skip
    add_data(parser)
    parser.add_argument(
        "--write-corrected",
        metavar="FILE",
        type=output_file,
        help="also write the label file as training reads it: label.csv with the decisions of "
        "Annotations/corrections.csv applied (made in `fashionattr serve MODEL --review DIR`)",
    )
    parser.add_argument("--known-errors", metavar="FILE",
                        help="a label file of rows known to be wrong, with their true labels (as `synth "
                        "--label-noise` writes Annotations/flipped.csv): report precision and recall")  # fmt: skip
    parser.add_argument(
        "--batch-size", type=BATCH, default=64, metavar="N", help="images per forward pass (default 64)"
    )
    parser.add_argument("--workers", type=WORKERS, default=2, metavar="N", help="image decoding processes (default 2)")
    add_device(parser)
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    from fashionattr.errors import UserError

    if args.split == "val" and args.folds is not None:
        raise UserError("--folds cross-validates the training split; use it with --split train (the validation "
                        "split is already out of sample for the run's model)")  # fmt: skip
    if args.split == "train" and args.folds is None:
        raise UserError(
            "the run's model learnt the training labels, wrong ones too, so its probabilities there "
            "would hide the errors; give --folds K (e.g. 5) to review them by cross-validation"
        )
    if args.epochs is not None and args.folds is None:
        raise UserError("--epochs sets the training of each fold; it needs --split train --folds K")
    if args.known_errors and not Path(args.known_errors).is_file():
        raise UserError(f"{args.known_errors}: known-errors file not found")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from fashionattr.data.overwrite import dataset_inputs, refuse_output_over_inputs
    from fashionattr.distributed import DistributedContext, pick_device
    from fashionattr.errors import UserError
    from fashionattr.io import atomic_write_text, write_json
    from fashionattr.render.tables import markdown_table
    from fashionattr.review import cross_validated, find_issues, validation_split
    from fashionattr.review.issues import issues_csv, score_review, write_decided
    from fashionattr.review.page import review_page
    from fashionattr.review.probabilities import dataset_of
    from fashionattr.run_dir import find_runs

    runs = find_runs(args.model)
    if not runs:
        raise UserError(f"{args.model}: holds no best.pt or last.pt, here or in its sub-folders; is it a finished run?")
    if args.write_corrected:
        known = [("the known-errors file", args.known_errors)] if args.known_errors else []
        refuse_output_over_inputs([("--write-corrected", args.write_corrected)],
                                  [*dataset_inputs(dataset_of(runs[0], args.data)[1].path), *known,
                                   *(("a file of the run", run.checkpoint) for run in runs)])  # fmt: skip
    context = DistributedContext(device=pick_device(args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reviews: list[OutOfSample] = []
    for run_dir in runs:
        if args.split == "val":
            reviews.append(validation_split(run_dir, context, args.data, args.batch_size, args.workers))
        else:
            folds = out / "folds" / (run_dir.path.name if len(runs) > 1 else "")
            reviews.append(cross_validated(run_dir, args.folds, folds, context, args.data, args.epochs,
                                           args.batch_size, args.workers))  # fmt: skip
    reviewed = _merged(reviews)
    issues = find_issues(reviewed)
    count = sum(len(rows) for rows in reviewed.records.values())
    score = score_review(reviewed, issues, Path(args.known_errors)) if args.known_errors else None
    atomic_write_text(out / "label_issues.csv", issues_csv(issues))
    atomic_write_text(out / "review.html", review_page(reviewed.dataset.path, issues, reviewed.source, count, score))
    summary = {"source": reviewed.source, "data": str(reviewed.dataset.path.resolve()), "reviewed": count,
               "candidates": len(issues),
               "per_attribute": {name: sum(i.record.attribute == name for i in issues) for name in reviewed.records},
               "known_errors": score.to_dict() if score else None}  # fmt: skip
    write_json(out / "review.json", summary)
    print(f"{len(issues)} of {count} labels are candidates to check ({reviewed.source})")
    if issues:
        rows = [[i.record.path, i.record.attribute, i.given, i.suggested, f"{i.score:.3f}"]
                for i in issues[:SHOWN]]  # fmt: skip
        print(markdown_table(rows, ["path", "attribute", "given", "suggested", "score"]))
    if score is not None:
        print(f"against {score.known} known errors among the reviewed rows: precision {score.precision:.1%}, "
              f"recall {score.recall:.1%}, precision at {score.known} {score.precision_at_known:.1%}; the suggestion "
              f"is the true class for {score.right_suggestion} of the {score.found} found")  # fmt: skip
    if args.write_corrected:
        changed = write_decided(reviewed.dataset, Path(args.write_corrected))
        print(f"wrote {args.write_corrected}: {reviewed.dataset.labels_path} with the {changed} decision(s) of "
              f"{reviewed.dataset.corrections_path.name} applied; the original is unchanged")  # fmt: skip
    print(f"wrote {out / 'label_issues.csv'} and {out / 'review.html'}; decide on the candidates with `fashionattr "
          f"serve {args.model} --review {out}`")  # fmt: skip
    return 0


def _merged(reviews: list[OutOfSample]) -> OutOfSample:
    """One review of several runs (a per-attribute folder): their attributes side by side."""
    from dataclasses import replace

    first = reviews[0]
    if len(reviews) == 1:
        return first
    if len({r.dataset.path.resolve() for r in reviews}) > 1:
        from fashionattr.errors import UserError

        raise UserError("the runs under this folder trained on different datasets; review them one at a time")
    records = {name: rows for r in reviews for name, rows in r.records.items()}
    predictions = {name: p for r in reviews for name, p in r.predictions.items()}
    schema = first.dataset.schema.subset([n for n in first.dataset.schema.names if n in records])
    return replace(first, schema=schema, records=records, predictions=predictions,
                   source="; ".join(r.source for r in reviews))  # fmt: skip
