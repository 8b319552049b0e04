"""`fashionattr import-folders SRC OUT`: class-per-subfolder images as a dataset in the FashionAI shape."""

from __future__ import annotations

import argparse

from fashionattr.commands.options import output_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-folders",
        help="turn SRC/<class>/ (or SRC/<attribute>/<class>/) image folders into a FashionAI-layout dataset",
        description="Read image folders in the layout torchvision's ImageFolder takes: SRC/<class>/*.jpg with "
        "--attribute NAME (one attribute), or SRC/<attribute>/<class>/*.jpg (several). Write OUT/Images/, "
        "OUT/Annotations/label.csv, OUT/Annotations/sources.csv (the original of each image) and "
        "OUT/schema.json (classes in sorted folder order). Images are hard-linked where the file system allows, "
        "else copied. Then: fashionattr check OUT; fashionattr split OUT; fashionattr train OUT ...",
    )
    parser.add_argument("source", metavar="SRC", help="folder of class folders (or of attribute folders)")
    parser.add_argument("out", metavar="OUT", type=output_folder, help="new dataset folder (must be empty or missing)")
    parser.add_argument("--attribute", help="the attribute name when SRC holds class folders directly")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of hard-linking them")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave unreadable images out (listed) instead of stopping")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.data.folders import import_folders

    report = import_folders(args.source, args.out, attribute=args.attribute, mode="copy" if args.copy else "link",
                            skip_bad=args.skip_bad)  # fmt: skip
    for attribute in report.schema:
        counts = ", ".join(f"{name} {count}" for name, count in report.per_class[attribute.name].items())
        print(f"{attribute.name}: {attribute.num_classes} classes ({counts})")
    print(f"wrote {report.images} images to {args.out} (schema.json, Annotations/label.csv)")
    if report.ignored:
        print(f"left out {report.ignored} file(s) whose names do not end like an image")
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}")
    return 0
