"""`fashionattr grid DATA`: the seed study's comparison, every architecture on every attribute, on one split."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from fashionattr.commands.options import add_out
from fashionattr.commands.train import add_training_options

if TYPE_CHECKING:
    from fashionattr.config import TrainConfig

# Arguments of `grid` itself, left out of the recorded command: `--shard` picks the machine's share, not the grid.
_NOT_RECORDED = {"func", "command", "data", "shard"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "grid",
        help="train the architecture x attribute comparison grid and tabulate it",
        description="Train every architecture in --archs on every attribute (per-attribute layout: one model per "
        "attribute, as the seed study did) and, for other --layouts, one model per architecture; all on one "
        "stratified split. Each cell is a run directory under OUT/<layout>/<arch>[/<attribute>]. Finished cells "
        "are skipped on a rerun and interrupted ones resumed; a failing cell is recorded in OUT/failures.json and "
        "the grid goes on (exit code 1 at the end). OUT/results.md, results.csv and results.png hold the table: "
        "attributes as rows, networks as columns, best validation accuracy in %, BP and mAP.",
    )
    parser.add_argument("data", nargs="?", help="dataset root (or give `data:` in --config)")
    parser.add_argument("--archs", help="comma-separated networks, study names or timm names (default: the "
                        "recipe's, else the study's six: resnet50,resnet152,se-resnet50,se-resnet152,vgg19_bn,"
                        "dpn131)")  # fmt: skip
    parser.add_argument("--layouts", help="comma-separated layouts, each a column group: per-attribute, multitask, "
                        "grouped (default: the recipe's, else per-attribute)")  # fmt: skip
    add_out(parser, folder=True, default="runs/grid", help="grid folder, shared by all shards (default runs/grid)")
    parser.add_argument("--shard", metavar="K/N",
                        help="run only cells K, K+N, K+2N, ... (1-based), so N machines sharing OUT split the "
                        "work; then `fashionattr report OUT` once all are done")  # fmt: skip
    add_training_options(parser, model_choice=False)
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The grid's options in canonical form, without --shard: the command that reproduces the whole table."""
    parts = ["fashionattr", "grid", *([args.data] if args.data else [])]
    for key, value in vars(args).items():
        if key in _NOT_RECORDED or key.startswith("_") or value is None:
            continue
        option = "--" + key.replace("_", "-")
        if key == "progress":
            parts += [] if value else ["--no-progress"]
        elif key == "channels_last":
            parts += [option, str(value).lower()]
        elif value is True:
            parts.append(option)
        else:
            parts += [option, str(value)]
    return shlex.join(parts)


def grid_plan(args: argparse.Namespace) -> tuple[TrainConfig, list[str], list[str]]:
    """The grid's base settings, networks and layouts: options, else the config file, else the recipe's."""
    from fashionattr import grid
    from fashionattr.config import resolve_config
    from fashionattr.models.layouts import STUDY_ARCHS
    from fashionattr.recipes import load_recipe

    base = resolve_config(args.config, {key: value for key, value in vars(args).items() if key != "out"})
    recipe_grid = load_recipe(base.recipe).grid if base.recipe else {}
    layouts = grid.parse_list(args.layouts or recipe_grid.get("layouts") or "per-attribute", "layouts")
    grid.check_layouts(layouts)
    archs = grid.parse_list(args.archs or recipe_grid.get("archs") or STUDY_ARCHS, "architectures")
    grid.check_archs(archs)
    return base, archs, layouts


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from fashionattr import grid
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.data.overwrite import dataset_inputs, refuse_output_over_inputs
    from fashionattr.errors import UserError
    from fashionattr.render.tables import markdown_table

    shard = grid.parse_shard(args.shard)
    base, archs, layouts = grid_plan(args)
    schema = DatasetRoot.open(base.data).schema
    try:
        schema = schema.subset(schema.resolve_names(base.attributes))
    except KeyError as exc:
        raise UserError(f"--attributes: {exc.args[0]}") from None
    if not len(schema):
        raise UserError("--attributes selects no attribute; give names such as coat_length,pant_length or 'all'")

    grid_dir = Path(args.out)
    written = (grid.MANIFEST_NAME, grid.SPLIT_NAME, grid.FAILURES_NAME)
    refuse_output_over_inputs([("--out", grid_dir / name) for name in written], dataset_inputs(base.data))
    grid_dir.mkdir(parents=True, exist_ok=True)
    base = replace(base, split_file=grid.resolve_split(base, grid_dir))
    grid.write_spec(grid_dir, grid.GridSpec(base.data, archs, layouts, schema, command_line(args)))
    cells = grid.plan_cells(grid_dir, archs, layouts, list(schema), shard)
    print(f"grid {grid_dir}: {len(cells)} cell(s){f' (shard {args.shard})' if shard else ''}, split {base.split_file}")
    outcome = grid.run_grid(grid_dir, cells, base)

    results = grid.collect_results(grid_dir)
    path = grid.write_results(grid_dir, results)
    print()
    print(markdown_table(results.rows(grid.MISSING_MD), ["attribute", *results.columns]))
    print(f"wrote {path}, {grid_dir / grid.RESULTS_CSV} and {grid_dir / grid.RESULTS_PNG}")
    if outcome.busy:
        print(f"{len(outcome.busy)} cell(s) passed over, being trained by another process: {', '.join(outcome.busy)}; "
              "`fashionattr report` tabulates them once they finish")  # fmt: skip
    if outcome.failed:
        print(f"{len(outcome.failed)} cell(s) failed: {', '.join(outcome.failed)}; see "
              f"{grid_dir / grid.FAILURES_NAME}")  # fmt: skip
        return 1
    return 0
