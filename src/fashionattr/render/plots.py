"""Every plot of the project's reports: confusion matrices, learning curves, the grid's bars, reliability diagrams
and the tags' precision-recall curves. Run reports, evaluations and the grid draw here, and nowhere else.

Plots are drawn on a bare `matplotlib.figure.Figure` (no pyplot, so no global state and no display needed) and
saved atomically, so a crashed or interrupted run never leaves a half-written image. matplotlib is imported inside
the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionattr.io import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    """Three panels per epoch: the training loss, the validation loss, and validation accuracy (mean bold, each
    attribute thin).

    The two losses are different quantities and get a panel each: training's is the smoothed, soft-target
    cross-entropy of augmented images (plus the applicability head's share), validation's the plain negative
    log-likelihood of the labelled class. Rows carry `epoch`, `train_loss`, `val_loss` (either may be missing or
    None), `val_mean_accuracy` and `val_accuracy/<attribute>`; accuracies are fractions, drawn as percentages.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15.0, 4.5), layout="constrained")
    train_axes, val_axes, accuracy_axes = figure.subplots(1, 3)
    epochs = [row.get("epoch", index + 1) for index, row in enumerate(history)]
    _plot_series(train_axes, epochs, [row.get("train_loss") for row in history], label="train", marker="o")
    _plot_series(val_axes, epochs, [row.get("val_loss") for row in history], label="validation", marker="o",
                 color="#c2410c")  # fmt: skip
    attribute_keys = sorted({key for row in history for key in row if key.startswith("val_accuracy/")})
    for key in attribute_keys:
        values = [_scaled(row.get(key), 100.0) for row in history]
        _plot_series(accuracy_axes, epochs, values, label=key.removeprefix("val_accuracy/").removesuffix("_labels"),
                     linewidth=1.0, alpha=0.7)  # fmt: skip
    mean_values = [_scaled(row.get("val_mean_accuracy"), 100.0) for row in history]
    _plot_series(accuracy_axes, epochs, mean_values, label="mean", linewidth=2.5, color="black", marker="o")

    train_axes.set(title="training loss (soft targets, smoothed, augmented)", xlabel="epoch", ylabel="loss")
    val_axes.set(title="validation loss (negative log-likelihood)", xlabel="epoch", ylabel="loss")
    accuracy_axes.set(title="validation accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for axes in (train_axes, val_axes, accuracy_axes):
        axes.title.set_fontsize(10)
        axes.grid(alpha=0.3)
        if axes is accuracy_axes and axes.get_legend_handles_labels()[0]:
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
