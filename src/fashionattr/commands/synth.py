"""`fashionattr synth`: write the synthetic FashionAI-layout dataset and/or a contact sheet of it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fashionattr.commands.options import count, number, output_file, output_folder
from fashionattr.errors import UserError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic dataset in FashionAI's layout (the demo and test data)",
        description=(
            "Draw garment images in which each attribute's class is visible and write them as FashionAI lays "
            "out its data: Annotations/label.csv, Images/<attribute>/<hash>.jpg, Tests/question.csv and "
            "Tests/answers.csv, and where each image's labelled part lies (Annotations/parts.csv, Tests/parts.csv: "
            "the hem, the sleeve ends, the neckline region), for measuring where heatmaps point. The same seed gives "
            "the same files."
        ),
    )
    parser.add_argument("old_out", nargs="?", type=output_folder, help=argparse.SUPPRESS)  # the old spelling of --out
    parser.add_argument("--out", metavar="DIR", type=output_folder, help="dataset root to write (created if missing)")
    parser.add_argument("--per-class", type=count(1), default=40, metavar="N", help="images per class (default: 40)")
    parser.add_argument("--size", type=count(32), default=512, metavar="PX",
                        help="image width in pixels (default: 512)")  # fmt: skip
    parser.add_argument("--seed", type=count(0), default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--test-fraction", type=number(0.0, 1.0, below_maximum=True), default=0.1, metavar="F",
                        help="share of each class put in Tests/ (default: 0.1)")  # fmt: skip
    parser.add_argument("--workers", type=count(1), default=None, metavar="W", help="processes (default: all CPUs)")
    parser.add_argument("--attributes", metavar="LIST",
                        help="comma-separated attributes to draw (default: all eight; short names work)")  # fmt: skip
    parser.add_argument("--label-noise", type=number(0.0, 1.0, below_maximum=True), default=0.0, metavar="F",
                        help="switch this share of the training labels to a random other class, recording the true "
                        "ones in Annotations/flipped.csv (to measure `fashionattr review`; default 0)")  # fmt: skip
    parser.add_argument(
        "--preview", metavar="FILE.png", type=output_file, help="also (or only) write a contact sheet of every class"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.old_out is not None:
        if args.out is not None:
            raise UserError("the dataset folder is given twice; give it once, as --out DIR")
        print("fashionattr synth: note: the dataset folder is now --out DIR; the old spelling (a bare OUT) goes in "
              "the next release", file=sys.stderr)  # fmt: skip
        args.out = args.old_out
    if args.out is None and args.preview is None:
        raise UserError("give a dataset folder to write (--out DIR), or --preview FILE.png for a contact sheet only")
    if args.preview is not None and not str(args.preview).lower().endswith(".png"):
        raise UserError(f"--preview writes a PNG file; give a name ending in .png, not {args.preview!r}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from fashionattr.data.overwrite import refuse_output_over_inputs
    from fashionattr.synthetic.generate import draw_preview, fewest_per_class_with_a_test_image, generate_dataset

    refuse_output_over_inputs([("--preview", args.preview)], [])
    if args.out is not None:
        try:
            summary = generate_dataset(
                args.out,
                per_class=args.per_class,
                size=args.size,
                seed=args.seed,
                test_fraction=args.test_fraction,
                workers=args.workers,
                progress=not args.quiet,
                label_noise=args.label_noise,
                attributes=args.attributes.split(",") if args.attributes else None,
            )
        except ValueError as exc:  # settings that make no dataset, e.g. a test fraction that takes every image
            raise UserError(str(exc)) from None
        print(
            f"wrote {summary['images']} images to {summary['root']} "
            f"({summary['train']} labelled, {summary['test']} test) in {summary['seconds']:.1f} s; "
            f"'m' rate {summary['m_rate']:.1%}"
        )
        if args.test_fraction > 0 and not summary["test"]:
            least = fewest_per_class_with_a_test_image(args.test_fraction)
            print(f"  note: --test-fraction {args.test_fraction:g} of {args.per_class} images per class rounds to "
                  f"none, so Tests/ holds no question; give --per-class {least} or more for a test set")  # fmt: skip
        if summary["flipped"]:
            print(f"  {summary['flipped']} labels switched to another class; true ones in Annotations/flipped.csv")
        for name, counts in summary["per_attribute"].items():
            print(f"  {name:24s} {counts['train']:6d} labelled {counts['test']:5d} test")
    if args.preview is not None:
        draw_preview(args.preview, size=min(args.size, 160), seed=args.seed)
        print(f"wrote contact sheet {args.preview}")
    return 0
