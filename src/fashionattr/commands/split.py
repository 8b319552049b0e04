"""`fashionattr split DATA`: write the stratified train/validation split every run of a comparison shares."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from fashionattr.commands.options import count, number, output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "split",
        help="write the stratified 4:1 train/validation split",
        description="Split the labelled images into train and validation, stratified by (attribute, class), "
        "deterministically by seed, keeping each image (and byte-identical copies of it) on one side, and write the "
        "assignment to a file so that every architecture in a comparison trains and validates on the same images. "
        "An existing split file that holds a different split is replaced only with --force.",
    )
    parser.add_argument("data", help="dataset root (holds Annotations/label.csv)")
    parser.add_argument("--val-fraction", type=number(0.0, 1.0, above_minimum=True, below_maximum=True), default=0.2,
                        help="share of each class for validation (0.2)")  # fmt: skip
    parser.add_argument("--seed", type=count(0), default=0, help="split seed; same seed, same split on any machine")
    parser.add_argument(
        "--out", default=None, type=output_file, help="split file to write (default: DATA/Annotations/split.csv)"
    )
    parser.add_argument("--force", action="store_true",
                        help="replace an existing split file that holds a different split")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.data.overwrite import dataset_inputs, refuse_output_over_inputs
    from fashionattr.data.split import check_replacing, make_split, write_split
    from fashionattr.errors import UserError

    if not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    data_root = DatasetRoot.open(args.data)
    records = data_root.read_labels()
    assignment = make_split(records, val_fraction=args.val_fraction, seed=args.seed, root=data_root.path)
    out = Path(args.out or data_root.default_split_path)
    refuse_output_over_inputs([("--out", out)], dataset_inputs(data_root.path), owns=[data_root.default_split_path])
    check_replacing(out, assignment, args.force)
    write_split(out, assignment)
    counts = Counter((attribute, subset) for (_, attribute), subset in assignment.items())
    print(f"wrote {out}: seed {args.seed}, val fraction {args.val_fraction}")
    for attribute in data_root.schema.names:
        train, val = counts[(attribute, "train")], counts[(attribute, "val")]
        if train or val:
            print(f"  {attribute:<24} train {train:6d}  val {val:6d}")
    return 0
