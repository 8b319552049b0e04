"""`fashionattr report DIR`: rebuild a grid's result table and chart, or one run's report, from the files alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionattr.run_dir import RunDir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="rebuild the results of a grid folder or the report of a run directory",
        description="Given a grid folder (holds grid.json), rebuild results.md, results.csv and results.png from "
        "the finished cells, e.g. after shards on several machines are done. Given a finished run directory "
        "(holds summary.json), rebuild its report.md and plots.",
    )
    parser.add_argument("folder", help="grid folder or run directory")
    parser.set_defaults(func=run)


def rebuild_run_report(run: RunDir) -> Path:
    """report.md and plots of a finished run, from its summary, per-epoch metrics, best scores and schema."""
    from fashionattr.errors import UserError
    from fashionattr.report import write_run_report
    from fashionattr.schema import load_schema

    try:
        summary, history, scores = (json.loads(path.read_text(encoding="utf-8"))
                                    for path in (run.summary, run.metrics_json, run.scores))  # fmt: skip
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{run}: cannot read the run's results ({exc})") from None
    schema = load_schema(run.schema).subset(summary["attributes"])
    return write_run_report(run, schema, history, summary, scores)


def run(args: argparse.Namespace) -> int:
    from fashionattr import grid
    from fashionattr.errors import UserError
    from fashionattr.render.tables import markdown_table

    folder = Path(args.folder)
    if RunDir(folder).is_finished:
        print(f"wrote {rebuild_run_report(RunDir(folder))}")
        return 0
    if not (folder / grid.MANIFEST_NAME).is_file():
        raise UserError(f"{folder}: neither a finished run (no summary.json) nor a grid folder (no grid.json)")
    results = grid.collect_results(folder)
    path = grid.write_results(folder, results)
    print(markdown_table(results.rows(grid.MISSING_MD), ["attribute", *results.columns]))
    print(f"wrote {path}, {folder / grid.RESULTS_CSV} and {folder / grid.RESULTS_PNG}")
    return 0
