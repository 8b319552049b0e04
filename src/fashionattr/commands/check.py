"""`fashionattr check DATA`: validate a dataset's labels and images and print what it holds."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from fashionattr.commands.options import WORKERS

if TYPE_CHECKING:
    from fashionattr.data.labels import LabelRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate a dataset: label rows, images, class counts",
        description="Validate a FashionAI-layout dataset: every label row, every image file. Prints counts per "
        "attribute and class, the 'm' rate, image sizes, and every missing or undecodable image. "
        "Exit code 0 only when the dataset is clean.",
    )
    parser.add_argument("data", help="dataset root (holds Annotations/label.csv and Images/)")
    parser.add_argument("--workers", type=WORKERS, default=None, help="processes decoding images (default: all cores)")
    parser.add_argument("--no-images", action="store_true", help="check the label files only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.data.scan import scan_images

    data_root = DatasetRoot.open(args.data)
    schema = data_root.schema
    records = data_root.read_labels()
    print(f"{data_root.labels_path}: {len(records)} labelled rows, schema {schema.name!r} ({len(schema)} attributes)")
    # A FIFO or a dangling link is refused by the reader, not passed over.
    has_questions = data_root.questions_path.exists() or data_root.questions_path.is_symlink()
    questions = data_root.read_questions() if has_questions else []
    if questions:
        print(f"{data_root.questions_path}: {len(questions)} question rows")

    per_class: Counter[tuple[str, int]] = Counter((r.attribute, r.target) for r in records)
    with_maybe = Counter(r.attribute for r in records if r.maybe)
    for attribute in schema:
        total = sum(per_class[(attribute.name, i)] for i in range(attribute.num_classes))
        rate = with_maybe[attribute.name] / total if total else 0.0
        print(f"\n{attribute.name}: {total} images, {rate:.1%} with 'm'")
        for i, class_name in enumerate(attribute.classes):
            print(f"  {i:2d} {class_name:<28} {per_class[(attribute.name, i)]:6d}")
    maybe_total = sum(with_maybe.values())
    print(f"\nrows with an 'm': {maybe_total} of {len(records)} ({maybe_total / len(records):.1%})")
    absent = [a.name for a in schema if not any(r.attribute == a.name for r in records)]
    if absent:
        print(f"attributes with no labelled images: {', '.join(absent)}")
    if args.no_images:
        return 0

    report = scan_images(data_root.path, records + questions, workers=args.workers)
    sizes = ", ".join(f"{w}x{h}: {n}" for (w, h), n in report.sizes.most_common())
    print(f"\nimage sizes (width x height): {sizes or 'none decoded'}")
    report_identical_files(data_root.path, records + questions)
    if report.bad:
        print(f"\n{len(report.bad)} unusable image(s):")
        for path, reason in report.bad:
            print(f"  {data_root.path / path}: {reason}")
        return 2
    print("all images decode")
    return 0


def report_identical_files(root: Path, records: list[LabelRecord]) -> None:
    """Name the images stored twice: the split keeps each set on one side, but the user may want to know."""
    from fashionattr.data.duplicates import identical_files
    from fashionattr.data.labels import MAX_REPORTED_PROBLEMS

    groups = identical_files(root, (r.path for r in records))
    if not groups:
        return
    print(f"\n{len(groups)} set(s) of byte-identical images under different paths (the split keeps each set on "
          "one side):")  # fmt: skip
    for group in groups[:MAX_REPORTED_PROBLEMS]:
        print(f"  {' = '.join(group)}")
    if len(groups) > MAX_REPORTED_PROBLEMS:
        print(f"  ... and {len(groups) - MAX_REPORTED_PROBLEMS} more set(s)")
