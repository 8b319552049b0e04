"""Every table of scores, in Markdown: the challenge's per-attribute scores, calibration, the pointing game, the tags a
catalogue shows. The command line prints these, and the reports embed them; each table has one function here.

Tables take the JSON-friendly dicts the scores are stored as (`Scores.to_dict()`, `calibration.json`,
`pointing_game.json`, `TagScores.to_dict()`), so a report rebuilt from a run's files reads exactly as the one written
when the run finished.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fashionattr.metrics import map_notes
from fashionattr.schema import Schema


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table; `|` inside a cell is escaped so it cannot split the cell."""
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"table row {number} has {len(row)} cells but the header has {len(header)}")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)]) + "\n"


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage cell; `n/a` for a score that is undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{decimals}f}"


def scores_table(schema: Schema, scores: dict[str, Any], images: str = "images") -> str:
    """The challenge's scores (a `Scores.to_dict()`): accuracy and AP per attribute, then BP and mAP, and the note
    when an attribute is left out of mAP. `images` heads the count column and says what was scored."""
    rows, left_out = [], []
    for attribute in schema:
        entry = scores["attributes"].get(attribute.name)
        if entry and entry["count"]:
            rows.append([attribute.short_name, str(entry["count"]), percent(entry["accuracy"]),
                         percent(entry["average_precision"])])  # fmt: skip
            if entry["average_precision"] is None:
                left_out.append(attribute.name)
    rows.append(["**BP / mAP**", str(scores["count"]), percent(scores["basic_precision"]),
                 percent(scores["mean_average_precision"])])  # fmt: skip
    table = markdown_table(rows, ["attribute", images, "accuracy %", "AP %"])
    return table + "".join(f"\nNote: {note}\n" for note in map_notes(left_out, len(rows) - 1))


def calibration_table(schema: Schema, calibration: dict[str, Any]) -> str:
    """Temperature, ECE and AP before and after calibration per attribute (a `calibration.json`)."""
    entries, before, after = calibration["attributes"], calibration["before"], calibration["after"]
    rows = []
    for attribute in schema:
        entry = entries.get(attribute.name)
        if entry is None:
            continue
        rows.append([attribute.short_name, str(entry["count"]), f"{entry['temperature']:.2f}",
                     percent(entry["ece_before"]), percent(entry["ece_after"]),
                     percent(before["average_precision"].get(attribute.name)),
                     percent(after["average_precision"].get(attribute.name))])  # fmt: skip
    rows.append(["**BP / mAP**", "", "", "", "",
                 f"{percent(before['basic_precision'])} / {percent(before['mean_average_precision'])}",
                 f"{percent(after['basic_precision'])} / {percent(after['mean_average_precision'])}"])  # fmt: skip
    header = ["attribute", "val images", "temperature", "ECE % raw", "ECE % calibrated", "AP % raw", "AP % calibrated"]
    return markdown_table(rows, header)


def pointing_table(schema: Schema, pointing: dict[str, Any]) -> str:
    """The pointing game per attribute (a `pointing_game.json`), beside what a random point would score."""
    rows = []
    for attribute in schema:
        entry = pointing["attributes"].get(attribute.name)
        if entry is None:
            continue
        rows.append([attribute.short_name, entry["part"], str(entry["images"]), str(entry["correct"]),
                     str(entry["hits"]), percent(entry["score"]), percent(entry["chance"])])  # fmt: skip
    header = ["attribute", "part", "images with a part", "correctly predicted", "heatmap peak in the part",
              "pointing game %", "random point %"]  # fmt: skip
    return markdown_table(rows, header)


TAG_HEADER = ("attribute", "tags shown", "precision %", "values shown in photos", "recall %",
              "on a photo showing the part %", "parts shown tagged %")  # fmt: skip


def tag_table(tags: dict[str, Any]) -> str:
    """Tag precision and recall per attribute and overall, and the decision's own (a `TagScores.to_dict()`)."""

    def row(name: str, entry: dict[str, Any]) -> list[str]:
        return [name, str(entry["shown"]), percent(entry["precision"]), str(entry["visible"]),
                percent(entry["recall"]), percent(entry.get("decision_precision")),
                percent(entry.get("decision_recall"))]  # fmt: skip

    rows = [row(name.removesuffix("_labels"), entry) for name, entry in tags["attributes"].items()]
    rows.append(row("**all**", tags["overall"]))
    return markdown_table(rows, TAG_HEADER)


def tag_rates_table(tags: dict[str, Any]) -> str:
    """How often each attribute is tagged (%) on the images of each labelled attribute."""
    names = list(tags["attributes"])
    rates = tags.get("tag_rates") or {}
    rows = [[group.removesuffix("_labels"), *(percent(rates[group].get(name)) for name in names)] for group in rates]
    return markdown_table(rows, ["labelled", *(name.removesuffix("_labels") for name in names)])
