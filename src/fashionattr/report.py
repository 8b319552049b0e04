"""A run's report: `report.md` with its scores, learning curves, confusion matrices and the sections measured after
training (calibration, the pointing game), assembled from the run folder's own files. Tables and plots are drawn by
`fashionattr.render`; this module only puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.render.plots import plot_confusion, plot_learning_curves
from fashionattr.render.tables import calibration_table, pointing_table, scores_table, tag_rates_table, tag_table
from fashionattr.run_dir import RunDir, confusion_plot_name
from fashionattr.schema import Schema


def tag_scores_section(tags: dict[str, Any], plot_name: str | None = None) -> list[str]:
    """Markdown lines: the tags a catalogue shows, scored (a `TagScores.to_dict()`), and their curve."""
    lines = ["## Tags as a catalogue shows them", "",
             f"Every attribute asked of each of {tags['images']} images, scored against complete labels: a tag is "
             "shown only where the model decides the attribute applies. Precision: of the tags shown (where the truth "
             "is known), the share right; recall: of the values the photos truly show, the share tagged right. The "
             "last two columns score the decision alone, whatever the value: the share of tags on photos that show "
             "the part, and the share of shown parts tagged.", "", tag_table(tags)]  # fmt: skip
    if tags.get("tag_rates"):
        lines += ["", "How often each attribute is tagged (%), by the attribute each image is labelled for:", "",
                  tag_rates_table(tags)]  # fmt: skip
    if plot_name:
        lines += ["", f"![tag precision and recall]({plot_name})"]
    return [*lines, ""]


def calibration_section(run: RunDir, schema: Schema, calibration: dict[str, Any]) -> list[str]:
    """Report lines: temperature, ECE and AP before and after calibration per attribute, and the diagram."""
    relative = run.reliability_plot.relative_to(run.path).as_posix()
    figure = [f"![reliability diagram]({relative})", ""] if run.reliability_plot.is_file() else []
    return [
        "## Calibration",
        "",
        "One temperature per attribute, fitted on the validation split (lowest negative log-likelihood) and stored "
        "in the checkpoint; `predict`, `submit`, `serve`, `catalog` and the ONNX export use the calibrated "
        "probabilities (`--no-calibration` for raw ones). The argmax never changes, so accuracy and BP stay; AP can "
        "move because the order of confidences across images changes. ECE: expected calibration error, "
        "15 bins. The figures are on the images the temperatures were fitted on; `fashionattr evaluate --split "
        "test` measures them on held-out ones.",
        "",
        calibration_table(schema, calibration),
        *figure,
    ]


def pointing_section(run: RunDir, schema: Schema, pointing: dict[str, Any]) -> list[str]:
    """Report lines: the pointing-game score per attribute, with what a random point would score."""
    lines = [
        "## Where the model looks",
        "",
        f"Pointing game on the {pointing['split']} split ({pointing['method']}"
        f"{', smoothed' if pointing.get('smooth') else ''} at layer {', '.join(pointing['layers'])}): of the "
        "correctly predicted images whose labelled part is visible, the share whose heatmap peaks inside the part's "
        "box (the hem, the sleeve ends, the neckline region), mapped into the letterboxed input, or within "
        f"{100 * pointing.get('tolerance', 0):.1f}% of the input's side of it (15 px at 224). `random point` is the "
        f"share a uniformly random peak would hit. Measured with `{pointing['command']}`.",
        "",
        pointing_table(schema, pointing),
    ]
    if run.pointing_examples.is_file():
        lines += [f"![heatmaps of the pointing game]({run.pointing_examples.relative_to(run.path).as_posix()})", ""]
    return lines


def write_run_report(
    run: RunDir, schema: Schema, history: Sequence[dict[str, Any]], summary: dict[str, Any], scores: dict[str, Any]
) -> Path:
    """`report.md` for one run: the score table, learning curves and a confusion matrix per attribute.

    Sections measured after training (calibration, the pointing game) are included when their files exist.
    """
    import json

    from fashionattr.io import atomic_write_text

    plots = run.plots
    plot_learning_curves(history, plots / "learning_curves.png")
    lines = [
        f"# Run report: {summary['arch']} ({summary['layout']})",
        "",
        f"Best epoch {summary['best_epoch']} of {summary['epochs_run']} run; validation scores of the best checkpoint.",
        "",
        scores_table(schema, scores, "val images"),
        "![learning curves](plots/learning_curves.png)",
        "",
    ]
    for attribute in schema:
        entry = scores["attributes"].get(attribute.name)
        if not entry or not entry["count"]:
            continue
        name = confusion_plot_name(attribute.short_name)
        plot_confusion(np.asarray(entry["confusion"]), attribute.classes, attribute.short_name, plots / name)
        lines += [f"## {attribute.short_name}", "", f"![{attribute.short_name} confusion matrix](plots/{name})", ""]
    if run.calibration.is_file():
        lines += calibration_section(run, schema, json.loads(run.calibration.read_text(encoding="utf-8")))
    if run.pointing_game.is_file():
        lines += pointing_section(run, schema, json.loads(run.pointing_game.read_text(encoding="utf-8")))
    atomic_write_text(run.report, "\n".join(lines))
    return run.report


def rewrite_run_report(run: RunDir) -> Path:
    """Write a finished run's report again from its files, e.g. after a section was measured."""
    import json

    from fashionattr.schema import load_schema

    def read(path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))

    summary = read(run.summary)
    schema = load_schema(run.schema).subset(list(summary["attributes"]))
    return write_run_report(run, schema, read(run.metrics_json), summary, read(run.scores))
