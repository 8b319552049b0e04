"""`fashionattr explain MODEL IMAGES... --out DIR`: heatmaps of where the model looks for each attribute.

With `--pointing-game` it measures instead whether the heatmaps peak on the labelled part (the hem, the sleeve
ends, the neckline), on a dataset with part boxes, and adds the result to the run's report.
"""

from __future__ import annotations

import argparse
import csv
import io
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fashionattr.commands.options import (
    BATCH,
    TORCH_MODEL_HELP,
    add_data,
    add_device,
    add_model,
    add_no_calibration,
    add_out,
)

if TYPE_CHECKING:
    from fashionattr.explain.cam import Explainer

POINTING_SPLITS = ("val", "test")


def register(subparsers: argparse._SubParsersAction) -> None:
    from fashionattr.explain.methods import DEFAULT_METHOD, METHODS, MIN_MAP_SIDE

    parser = subparsers.add_parser(
        "explain",
        help="heatmaps of where the model looks for each attribute; the pointing game on part boxes",
        description="For each image, a heatmap per attribute (or the one named) for the predicted class (or the "
        "one named with --class), laid over the letterboxed photo the model saw, written as PNG files with a "
        "contact sheet and heatmaps.csv. With --pointing-game, score instead how often the heatmap of a correctly "
        "predicted image peaks inside the labelled part's box (Annotations/parts.csv or Tests/parts.csv, which "
        "`fashionattr synth` writes), and add the table to the run's report.",
    )
    add_model(parser, help=TORCH_MODEL_HELP)
    parser.add_argument("images", metavar="IMAGES", nargs="*", help="image files and folders (searched recursively)")
    add_out(parser, folder=True, help="folder for the heatmap PNGs, contact_sheet.png, heatmaps.csv (required with "
            "IMAGES)")  # fmt: skip
    parser.add_argument("--attribute", help="only this attribute (short names such as sleeve_length work)")
    parser.add_argument("--class", dest="class_name", metavar="CLASS",
                        help="show the evidence for this class of --attribute, not the predicted one")  # fmt: skip
    parser.add_argument("--method", choices=list(METHODS), default=DEFAULT_METHOD,
                        help=f"heatmap method (default {DEFAULT_METHOD})")  # fmt: skip
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="backbone layer to read the map from, e.g. layer3 (default: the deepest feature stage "
                        f"whose map is at least {MIN_MAP_SIDE} positions across at the model's input size, else the "
                        "final feature map); repeat to average several")  # fmt: skip
    parser.add_argument("--smooth", action="store_true",
                        help="average each map over mirrored and brightened copies of the image (six times the work; "
                        "steadier peaks)")  # fmt: skip
    parser.add_argument("--pointing-game", action="store_true",
                        help="score where the heatmaps peak against the dataset's part boxes; writes "
                        "MODEL/pointing_game.json and a section of MODEL/report.md")  # fmt: skip
    parser.add_argument("--split", choices=POINTING_SPLITS, default="val",
                        help="images of the pointing game: the run's validation split or the test set")  # fmt: skip
    add_data(parser, help="dataset root for the pointing game (default: the one the run trained on)")
    add_no_calibration(parser, help="show raw probabilities in the captions")
    parser.add_argument(
        "--batch-size", type=BATCH, default=16, metavar="N", help="images per forward pass (default 16)"
    )
    add_device(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fashionattr.errors import UserError

    if args.class_name is not None and args.attribute is None:
        raise UserError("--class names a class of one attribute; give that attribute with --attribute")
    if args.pointing_game:
        if args.images or args.class_name:
            raise UserError("--pointing-game scores the dataset's own images for their predicted classes; leave out "
                            "IMAGES and --class")  # fmt: skip
        return pointing_game(args)
    if not args.images:
        raise UserError("give one or more images (or folders) to explain, or --pointing-game")
    if not args.out:
        raise UserError("give --out DIR, the folder to write the heatmaps into")
    return explain_images(args)


def load_explainer(args: argparse.Namespace, path: str | Path) -> Explainer:
    from fashionattr.errors import UserError
    from fashionattr.explain.cam import Explainer

    if Path(path).suffix.lower() == ".onnx":
        raise UserError(f"{path}: heatmaps need the network's gradients, which an ONNX file does not give; "
                        "explain the checkpoint or run directory it was exported from")  # fmt: skip

    return Explainer.from_path(path, device=args.device, calibrated=not args.no_calibration, method=args.method,
                               layers=args.layer, smooth=args.smooth)  # fmt: skip


def heatmap_name(number: int, image: Path, attribute: str) -> str:
    return f"{number:03d}_{image.stem}_{attribute.removesuffix('_labels')}.png"


def explain_images(args: argparse.Namespace) -> int:
    from fashionattr.data.images import ImageError
    from fashionattr.data.overwrite import refuse_output_over_inputs
    from fashionattr.errors import UserError
    from fashionattr.explain.pictures import caption, contact_sheet, heatmap_picture, overlay, write_png
    from fashionattr.inference import expand_inputs
    from fashionattr.io import atomic_write_text

    explainer = load_explainer(args, args.model)
    attributes = [explainer.resolve_attribute(args.attribute)] if args.attribute else explainer.attributes
    chosen = explainer.resolve_class(attributes[0], args.class_name) if args.class_name else None
    files = expand_inputs(args.images)
    if not files:
        raise UserError(f"no image files found in {', '.join(args.images)}")
    out = Path(args.out)
    written = [out / "contact_sheet.png", out / "heatmaps.csv"]
    written += [out / heatmap_name(number, path, attribute) for number, path in enumerate(files)
                for attribute in attributes]  # fmt: skip
    refuse_output_over_inputs([("--out", file) for file in written],
                              [("an input image", file) for file in files])  # fmt: skip
    images = []
    for path in files:
        try:
            images.append(explainer.load(path))
        except ImageError as exc:
            raise UserError(f"{exc.path}: {exc.reason}") from None
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["image", "attribute", "class", "probability", "predicted", "peak_x", "peak_y", "file"])
    sheet_rows = []
    by_attribute = {}
    for attribute in attributes:
        heatmaps = []
        for start in range(0, len(images), args.batch_size):
            heatmaps += explainer.explain(images[start : start + args.batch_size], attribute, chosen)
        by_attribute[attribute] = heatmaps
    for number, path in enumerate(files):
        tiles = [(by_attribute[attributes[0]][number].image, path.name)]
        for attribute in attributes:
            heatmap = by_attribute[attribute][number]
            name = heatmap_name(number, path, attribute)
            write_png(out / name, heatmap_picture(heatmap))  # enlarged, captioned, with the colour scale
            tiles.append((overlay(heatmap), caption(heatmap)))
            predicted = explainer.schema.attribute(attribute).classes[heatmap.predicted_index]
            writer.writerow([str(path), attribute, heatmap.class_name, f"{heatmap.probability:.6f}", predicted,
                             *heatmap.peak, name])  # fmt: skip
        sheet_rows.append((str(path), tiles))
    write_png(out / "contact_sheet.png", contact_sheet(sheet_rows))
    atomic_write_text(out / "heatmaps.csv", table.getvalue())
    layers = ", ".join(sorted({layer for a in attributes for layer in explainer.layers_for(a)}))
    print(f"wrote {len(files) * len(attributes)} heatmap(s) of {len(files)} image(s) to {out} ({explainer.method}, "
          f"layer {layers}); contact sheet {out / 'contact_sheet.png'}, index {out / 'heatmaps.csv'}")  # fmt: skip
    return 0


def pointing_game(args: argparse.Namespace) -> int:
    from fashionattr.checkpoint import load_checkpoint
    from fashionattr.data.dataset import dataset_of_run
    from fashionattr.data.labels import read_labels
    from fashionattr.data.parts import PARTS_RELPATH, TEST_PARTS_RELPATH, read_parts
    from fashionattr.errors import UserError
    from fashionattr.evaluation import run_split_records
    from fashionattr.explain.pointing import play, write_pointing_game
    from fashionattr.render.tables import markdown_table
    from fashionattr.report import rewrite_run_report
    from fashionattr.run_dir import find_runs

    runs = find_runs(args.model)
    if not runs:
        raise UserError(f"{args.model}: the pointing game needs a run directory (or a folder of them) to write into")
    command = f"fashionattr explain MODEL --pointing-game --split {args.split} --method {args.method}"
    command += "".join(f" --layer {shlex.quote(layer)}" for layer in args.layer or [])
    command += " --smooth" if args.smooth else ""
    rows = []
    for run_dir in runs:
        payload = load_checkpoint(run_dir.checkpoint)
        config = payload.get("config", {})
        dataset = dataset_of_run(run_dir.checkpoint, payload, args.data, require_labels=args.split == "val")
        if args.split == "val":
            records = run_split_records(run_dir, config, dataset, "val")
            parts = read_parts(dataset.path / PARTS_RELPATH)
        else:
            if not dataset.answers_path.is_file():
                raise UserError(f"{dataset.answers_path}: no labelled test file to play the pointing game on")
            records = read_labels(dataset.answers_path, dataset.schema)
            parts = read_parts(dataset.path / TEST_PARTS_RELPATH)
        explainer = load_explainer(args, run_dir.checkpoint)
        game = play(explainer, dataset.path, records, parts, args.split, command, batch_size=args.batch_size)
        if not game.attributes:
            raise UserError(f"{dataset.path}: none of the {args.split} images has a part box; the part files come "
                            "from `fashionattr synth`")  # fmt: skip
        write_pointing_game(run_dir, game)
        if run_dir.is_finished:
            rewrite_run_report(run_dir)
        for name, entry in game.attributes.items():
            rows.append([name.removesuffix("_labels"), entry.part, str(entry.correct), str(entry.hits),
                         percent(entry.score), percent(entry.chance)])  # fmt: skip
        print(f"{run_dir}: wrote {run_dir.pointing_game.name} and {run_dir.pointing_examples}", file=sys.stderr)
    print(f"Pointing game, {args.split} split ({game.method}{', smoothed' if args.smooth else ''}, layer "
          f"{', '.join(game.layers)}):")  # fmt: skip
    print(markdown_table(rows, ["attribute", "part", "correct", "peak in part", "pointing game %", "random point %"]))
    return 0


def percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}"
