"""Tables and plots of results: confusion matrices, learning curves, the network x attribute grid.

Plots are drawn on a bare `matplotlib.figure.Figure` (no pyplot, so no global state and no display needed) and
saved atomically, so a crashed or interrupted run never leaves a half-written image. matplotlib is imported
inside the plotting functions to keep `import fashionattr.report` cheap for table-only callers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionattr.io import atomic_open
from fashionattr.run_dir import RunDir, confusion_plot_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table; `|` inside a cell is escaped so it cannot split the cell."""
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"table row {number} has {len(row)} cells but the header has {len(header)}")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)]) + "\n"


NO_ANSWER_COUNTED = "every answer landed on a class labelled 'm', so no answer counted and AP is undefined"


def map_notes(left_out: Sequence[str], with_images: int) -> list[str]:
    """The note under a score table when attributes are left out of mAP (why: `Scores.mean_average_precision`)."""
    if not left_out:
        return []
    names = ", ".join(name.removesuffix("_labels") for name in left_out)
    others = with_images - len(left_out)
    return [f"AP n/a for {names}: {NO_ANSWER_COUNTED}; mAP is the mean over the other {others} attribute(s) "
            "(accuracy and BP still count it)."]  # fmt: skip


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str, path: str | Path) -> None:
    """Confusion matrix with colours normalised per true class (so rare classes stay visible) and raw counts."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion)
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(f"confusion has shape {confusion.shape} but there are {num_classes} class names")
    row_totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, row_totals, out=np.zeros(confusion.shape), where=row_totals > 0)

    side = max(4.0, 0.6 * num_classes + 2.5)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    for row in range(num_classes):
        for column in range(num_classes):
            # White text on dark cells, black on light ones, so every count stays readable.
            colour = "white" if normalised[row, column] > 0.5 else "black"
            axes.text(column, row, str(int(confusion[row, column])), ha="center", va="center", color=colour, fontsize=8)
    axes.set_xticks(range(num_classes), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(num_classes), labels=list(class_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    _save(figure, path)


def plot_learning_curves(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Two panels per epoch: train/validation loss, and validation accuracy (mean bold, each attribute thin).

    Rows carry `epoch`, `train_loss`, `val_loss` (may be missing or None), `val_mean_accuracy` and
    `val_accuracy/<attribute>`; accuracies are fractions and are drawn as percentages.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12.0, 4.5), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [row.get("epoch", index + 1) for index, row in enumerate(history)]

    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        _plot_series(loss_axes, epochs, [row.get(key) for row in history], label=label, marker="o")
    attribute_keys = sorted({key for row in history for key in row if key.startswith("val_accuracy/")})
    for key in attribute_keys:
        values = [_scaled(row.get(key), 100.0) for row in history]
        _plot_series(
            accuracy_axes,
            epochs,
            values,
            label=key.removeprefix("val_accuracy/").removesuffix("_labels"),
            linewidth=1.0,
            alpha=0.7,
        )
    mean_values = [_scaled(row.get("val_mean_accuracy"), 100.0) for row in history]
    _plot_series(accuracy_axes, epochs, mean_values, label="mean", linewidth=2.5, color="black", marker="o")

    loss_axes.set(title="loss", xlabel="epoch", ylabel="loss")
    accuracy_axes.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    _save(figure, path)


def plot_grid_bars(table: dict[str, dict[str, float]], path: str | Path, title: str) -> None:
    """Grouped bars: one group per attribute (outer keys), one bar per network (inner keys), values already in %.

    A network missing from an attribute's row simply has no bar there, so a partly finished grid still plots.
    """
    from matplotlib.figure import Figure

    attributes = list(table)
    networks: list[str] = []
    for row in table.values():
        networks.extend(network for network in row if network not in networks)
    width = 0.8 / max(1, len(networks))
    figure = Figure(figsize=(max(6.0, 1.2 * len(attributes) + 2.0), 4.5), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(attributes))
    for index, network in enumerate(networks):
        values = [_to_float(table[attribute].get(network)) for attribute in attributes]
        offsets = positions - 0.4 + width * (index + 0.5)
        bars = axes.bar(offsets, values, width=width, label=network)
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    axes.set_xticks(positions, labels=attributes, rotation=30, ha="right", rotation_mode="anchor")
    axes.set_ylabel("%")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    if networks:
        # Outside the plot area, so no bar is ever hidden behind it.
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def plot_reliability(attributes: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Reliability diagram, a panel per attribute: hit rate per confidence bin before and after calibration, with the
    number of images in each calibrated bin.

    `attributes` maps an attribute to its `calibration.json` entry (`reliability_before`/`_after` with `edges`,
    `counts`, `confidence`, `accuracy`; `ece_before`/`_after`). A perfectly calibrated model's bars touch the
    diagonal.
    """
    from matplotlib.figure import Figure

    names = list(attributes)
    columns = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / columns) if names else 1
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows), layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes, name in zip(axes_grid, names, strict=False):
        entry = attributes[name]
        for key, label, colour, offset in (("before", "raw", "#94a3b8", -0.25), ("after", "calibrated", "#c2410c",
                                                                                   0.25)):  # fmt: skip
            bins = entry[f"reliability_{key}"]
            edges, counts = np.asarray(bins["edges"]), np.asarray(bins["counts"])
            width = float(edges[1] - edges[0])
            centres = (edges[:-1] + edges[1:]) / 2 + offset * width
            shown = counts > 0
            ece = entry.get(f"ece_{key}")
            axes.bar(centres[shown], np.asarray(bins["accuracy"])[shown], width=width / 2, color=colour,
                     label=f"{label} (ECE {100 * ece:.1f}%)" if ece is not None else label)  # fmt: skip
            if key == "after":  # how many images each calibrated bin holds: a bin of a few swings
                for x, height, count in zip(centres[shown], np.asarray(bins["accuracy"])[shown], counts[shown],
                                            strict=True):  # fmt: skip
                    axes.text(x, min(height + 0.02, 0.95), f"{int(count)}", ha="center", fontsize=5, color=colour)
        axes.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--")
        axes.set(xlim=(0, 1), ylim=(0, 1), title=f"{name.removesuffix('_labels')} (T={entry['temperature']:.2f})",
                 xlabel="confidence", ylabel="hit rate")  # fmt: skip
        axes.title.set_fontsize(9)
        axes.legend(fontsize=7, loc="upper left")
    for axes in axes_grid[len(names) :]:
        axes.set_visible(False)
    _save(figure, path)


def plot_tag_curves(curves: dict[str, dict[str, list[Any]]], path: str | Path,
                    marked: float | None = None) -> None:  # fmt: skip
    """Tag precision against tag recall as the applicability threshold moves: all attributes pooled, and each one.

    `marked` is the threshold the model uses, drawn as a dot on every curve.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = figure.subplots()
    for name, curve in curves.items():
        recall, precision = np.array(curve["recall"], dtype=float), np.array(curve["precision"], dtype=float)
        pooled = name == "all"
        axes.plot(recall, precision, label="all attributes" if pooled else name.removesuffix("_labels"),
                  color="black" if pooled else None, linewidth=2.2 if pooled else 1.0)  # fmt: skip
        if marked is not None:
            at = int(np.argmin(np.abs(np.array(curve["threshold"]) - marked)))
            axes.plot([recall[at]], [precision[at]], "o", color="black" if pooled else axes.lines[-1].get_color())
    axes.set(xlim=(0, 1.01), ylim=(0, 1.01), xlabel="tag recall (share of what the photos show, tagged right)",
             ylabel="tag precision (share of tags shown, right)",
             title="Tags as a catalogue shows them, over the applicability threshold")  # fmt: skip
    axes.title.set_fontsize(10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower left", ncols=2)
    _save(figure, path)


TAG_HEADER = ("attribute", "tags shown", "precision %", "values shown in photos", "recall %", "on a photo showing the "
              "part %", "parts shown tagged %")  # fmt: skip


def tag_scores_section(scores: dict[str, Any], plot_name: str | None = None) -> list[str]:
    """Markdown: tag precision and recall per attribute and overall, how often each attribute is tagged per labelled
    set, and the precision-recall plot (`TagScores.to_dict()`)."""

    def row(name: str, entry: dict[str, Any]) -> list[str]:
        return [name, str(entry["shown"]), _percent_cell(entry["precision"]), str(entry["visible"]),
                _percent_cell(entry["recall"]), _percent_cell(entry.get("decision_precision")),
                _percent_cell(entry.get("decision_recall"))]  # fmt: skip

    rows = [row(name.removesuffix("_labels"), entry) for name, entry in scores["attributes"].items()]
    rows.append(row("**all**", scores["overall"]))
    lines = ["## Tags as a catalogue shows them", "",
             f"Every attribute asked of each of {scores['images']} images, scored against complete labels: a tag is "
             "shown only where the model decides the attribute applies. Precision: of the tags shown (where the truth "
             "is known), the share right; recall: of the values the photos truly show, the share tagged right. The "
             "last two columns score the decision alone, whatever the value: the share of tags on photos that show "
             "the part, and the share of shown parts tagged.", "",
             markdown_table(rows, TAG_HEADER)]  # fmt: skip
    rates = scores.get("tag_rates") or {}
    if rates:
        names = list(scores["attributes"])
        table = [[group.removesuffix("_labels"), *(_percent_cell(rates[group].get(name)) for name in names)]
                 for group, _ in rates.items()]  # fmt: skip
        lines += ["", "How often each attribute is tagged (%), by the attribute each image is labelled for:", "",
                  markdown_table(table, ["labelled", *(n.removesuffix("_labels") for n in names)])]  # fmt: skip
    if plot_name:
        lines += ["", f"![tag precision and recall]({plot_name})"]
    return [*lines, ""]


def _plot_series(axes: Any, epochs: Sequence[Any], values: Sequence[Any], label: str, **style: Any) -> None:
    """Plot the points that exist; a series with none (e.g. no validation set) is left out of the legend."""
    points = [(epoch, float(value)) for epoch, value in zip(epochs, values, strict=True) if value is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, label=label, **style)


def _scaled(value: Any, factor: float) -> float | None:
    return None if value is None else float(value) * factor


def _to_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _save(figure: Figure, path: str | Path) -> None:
    """Render into a temporary file beside `path`, then rename, so readers never see a partial image."""
    path = Path(path)
    image_format = path.suffix.lstrip(".").lower() or "png"
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=image_format, dpi=120)


def _percent_cell(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def run_scores_table(schema: Any, scores: dict[str, Any]) -> str:
    """Markdown table of one run's best scores (a `Scores.to_dict()`): accuracy and AP per attribute, BP, mAP."""
    rows = []
    left_out = []
    for attribute in schema:
        entry = scores["attributes"].get(attribute.name)
        if entry and entry["count"]:
            rows.append([attribute.short_name, str(entry["count"]), _percent_cell(entry["accuracy"]),
                         _percent_cell(entry["average_precision"])])  # fmt: skip
            if entry["average_precision"] is None:
                left_out.append(attribute.name)
    rows.append(["**BP / mAP**", str(scores["count"]), _percent_cell(scores["basic_precision"]),
                 _percent_cell(scores["mean_average_precision"])])  # fmt: skip
    table = markdown_table(rows, ["attribute", "val images", "accuracy %", "AP %"])
    return table + "".join(f"\nNote: {note}\n" for note in map_notes(left_out, len(rows) - 1))


def calibration_section(run: RunDir, schema: Any, calibration: dict[str, Any]) -> list[str]:
    """Report lines: temperature, ECE and AP before and after calibration per attribute, and the diagram."""
    entries = calibration["attributes"]
    before, after = calibration["before"], calibration["after"]
    rows = []
    for attribute in schema:
        entry = entries.get(attribute.name)
        if entry is None:
            continue
        rows.append([attribute.short_name, str(entry["count"]), f"{entry['temperature']:.2f}",
                     _percent_cell(entry["ece_before"]), _percent_cell(entry["ece_after"]),
                     _percent_cell(before["average_precision"].get(attribute.name)),
                     _percent_cell(after["average_precision"].get(attribute.name))])  # fmt: skip
    rows.append(["**BP / mAP**", "", "", "", "", f"{_percent_cell(before['basic_precision'])} / "
                 f"{_percent_cell(before['mean_average_precision'])}", f"{_percent_cell(after['basic_precision'])} / "
                 f"{_percent_cell(after['mean_average_precision'])}"])  # fmt: skip
    header = ["attribute", "val images", "temperature", "ECE % raw", "ECE % calibrated", "AP % raw", "AP % calibrated"]
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
        markdown_table(rows, header),
        *figure,
    ]


def pointing_section(run: RunDir, schema: Any, pointing: dict[str, Any]) -> list[str]:
    """Report lines: the pointing-game score per attribute, with what a random point would score."""
    rows = []
    for attribute in schema:
        entry = pointing["attributes"].get(attribute.name)
        if entry is None:
            continue
        rows.append([attribute.short_name, entry["part"], str(entry["images"]), str(entry["correct"]),
                     str(entry["hits"]), _percent_cell(entry["score"]), _percent_cell(entry["chance"])])  # fmt: skip
    header = ["attribute", "part", "images with a part", "correctly predicted", "heatmap peak in the part",
              "pointing game %", "random point %"]  # fmt: skip
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
        markdown_table(rows, header),
    ]
    if run.pointing_examples.is_file():
        lines += [f"![heatmaps of the pointing game]({run.pointing_examples.relative_to(run.path).as_posix()})", ""]
    return lines


def write_run_report(
    run: RunDir, schema: Any, history: Sequence[dict[str, Any]], summary: dict[str, Any], scores: dict[str, Any]
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
        run_scores_table(schema, scores),
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
