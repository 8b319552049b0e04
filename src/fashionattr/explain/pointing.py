"""The pointing game: does a heatmap peak on the part its attribute is about?

For each correctly predicted image whose labelled part is visible, the peak of the attribute's heatmap (for the
predicted class) either falls inside one of the part's boxes, mapped into the letterboxed input, or it does not
(Zhang et al., "Top-down neural attention by excitation backprop", 2016). The share of hits is the score; beside
it stands what a random peak would score, the share of the photo (the letterboxed input less its padding) the boxes
cover, so a generous box cannot pass for a sharp heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.data.labels import LabelRecord
from fashionattr.data.parts import PartRow
from fashionattr.data.preprocessing import Preprocessing, letterbox_placement
from fashionattr.explain.cam import Explainer, Heatmap
from fashionattr.explain.pictures import contact_sheet, mark_boxes, overlay, write_png
from fashionattr.io import write_json
from fashionattr.run_dir import RunDir

Box = tuple[float, float, float, float]
EXAMPLES_PER_ATTRIBUTE = 6
TOLERANCE = 15 / 224
"""How far outside a box a peak may land and still count, as a share of the input side: the pointing game's
customary 15 pixels at 224 (Zhang et al.), so the same image scores the same at any input size."""


def letterboxed_boxes(rows: Sequence[PartRow], image_size: tuple[int, int], preprocessing: Preprocessing) -> list[Box]:
    """The part boxes of an image of `image_size` (width, height), in pixels of its letterboxed input."""
    placement = letterbox_placement(*image_size, preprocessing)
    return [placement.map_box(row.box) for row in rows]


def widened(boxes: Sequence[Box], margin: float) -> list[Box]:
    return [(x0 - margin, y0 - margin, x1 + margin, y1 + margin) for x0, y0, x1, y1 in boxes]


def peak_inside(peak: tuple[int, int], boxes: Sequence[Box], margin: float = 0.0) -> bool:
    """Whether the pixel at `peak` (its centre) lies inside any box, or within `margin` pixels of one."""
    x, y = peak[0] + 0.5, peak[1] + 0.5
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in widened(boxes, margin))


def photo_region(image_size: tuple[int, int], preprocessing: Preprocessing) -> Box:
    """Where the photo itself lies in its letterboxed input (the rest is padding), in input pixels."""
    placement = letterbox_placement(*image_size, preprocessing)
    return (placement.left, placement.top, placement.left + placement.width, placement.top + placement.height)


def covered_share(boxes: Sequence[Box], region: Box, margin: float = 0.0) -> float:
    """The share of the photo's `region` of the input that the boxes (widened by `margin` pixels) cover: the chance
    of a hit for a peak drawn at random over the photo (a peak on the letterbox padding can never hit a part)."""
    left, top, right, bottom = (round(v) for v in region)
    mask = np.zeros((max(1, bottom - top), max(1, right - left)), dtype=bool)
    for x0, y0, x1, y1 in widened(boxes, margin):
        rows = slice(max(0, round(y0) - top), max(0, round(y1) - top))
        cols = slice(max(0, round(x0) - left), max(0, round(x1) - left))
        mask[rows, cols] = True
    return float(mask.mean())


@dataclass
class AttributePointing:
    """One attribute's pointing game."""

    part: str
    images: int = 0
    correct: int = 0
    hits: int = 0
    chance_sum: float = 0.0
    examples: list[tuple[np.ndarray, str, bool]] = field(default_factory=list)

    @property
    def score(self) -> float:
        return self.hits / self.correct if self.correct else float("nan")

    @property
    def chance(self) -> float:
        return self.chance_sum / self.correct if self.correct else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def finite(value: float) -> float | None:
            return None if np.isnan(value) else value

        return {"part": self.part, "images": self.images, "correct": self.correct, "hits": self.hits,
                "score": finite(self.score), "chance": finite(self.chance)}  # fmt: skip


@dataclass
class PointingGame:
    """The pointing game of one model on one split."""

    split: str
    method: str
    smooth: bool
    layers: list[str]
    command: str
    tolerance: float
    attributes: dict[str, AttributePointing]

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "method": self.method, "smooth": self.smooth, "layers": self.layers,
                "command": self.command,
                "tolerance": self.tolerance,
                "attributes": {name: entry.to_dict() for name, entry in self.attributes.items()}}  # fmt: skip


def play(
    explainer: Explainer,
    root: Path,
    records: Sequence[LabelRecord],
    parts: dict[tuple[str, str], list[PartRow]],
    split: str,
    command: str,
    batch_size: int = 32,
    tolerance: float = TOLERANCE,
) -> PointingGame:
    """Score every record whose part is visible (it has boxes); unreadable images are left out.

    A peak counts within `tolerance` (a share of the input side) of a box, and so does the random baseline.
    """
    from fashionattr.data.images import ImageError, probe_image

    results: dict[str, AttributePointing] = {}
    layers: list[str] = []
    for attribute in explainer.attributes:
        rows = [(r, parts[(r.path, r.attribute)]) for r in records if r.attribute == attribute and parts.get((r.path,
                r.attribute))]  # fmt: skip
        if not rows:
            continue
        entry = results[attribute] = AttributePointing(part=rows[0][1][0].part)
        layers = sorted({*layers, *explainer.layers_for(attribute)})
        preprocessing = explainer.model_for(attribute).preprocessing
        margin = tolerance * preprocessing.img_size
        for start in range(0, len(rows), batch_size):
            batch, sizes, boxes_of = [], [], []
            for record, boxes in rows[start : start + batch_size]:
                path = root / record.path
                try:
                    batch.append(explainer.load(path))
                    sizes.append(probe_image(path))  # as the model sees it: upright, EXIF rotation applied
                except ImageError:
                    continue
                boxes_of.append((record, boxes))
            for heatmap, size, (record, boxes) in zip(explainer.explain(batch, attribute), sizes, boxes_of,
                                                      strict=True):  # fmt: skip
                entry.images += 1
                if heatmap.predicted_index != record.target:
                    continue
                mapped = letterboxed_boxes(boxes, size, preprocessing)
                hit = peak_inside(heatmap.peak, mapped, margin)
                entry.correct += 1
                entry.hits += hit
                entry.chance_sum += covered_share(mapped, photo_region(size, preprocessing), margin)
                _keep_example(entry, heatmap, mapped, hit)
    return PointingGame(split, explainer.method, explainer.smooth, layers, command, tolerance, results)


def _keep_example(entry: AttributePointing, heatmap: Heatmap, boxes: list[Box], hit: bool) -> None:
    """Hits and misses for the report's sheet: half each, each of another class while there are other classes."""
    wanted = EXAMPLES_PER_ATTRIBUTE // 2
    kept = [text for _, text, kept_hit in entry.examples if kept_hit == hit]
    if len(kept) < wanted and not any(text.startswith(f"{heatmap.class_name} ") for text in kept):
        picture = mark_boxes(overlay(heatmap), boxes, heatmap.peak, hit)
        entry.examples.append((picture, f"{heatmap.class_name} {heatmap.probability:.0%}", hit))


def write_pointing_game(run: RunDir, game: PointingGame) -> None:
    """pointing_game.json and the sheet of examples (green dot: peak inside the part's box; red: outside)."""
    write_json(run.pointing_game, game.to_dict())
    rows = [(f"{name.removesuffix('_labels')} ({entry.part}): {entry.hits}/{entry.correct} peaks in the box",
             [(picture, ("hit: " if hit else "miss: ") + text) for picture, text, hit in entry.examples])
            for name, entry in game.attributes.items() if entry.examples]  # fmt: skip
    if rows:
        run.plots.mkdir(parents=True, exist_ok=True)
        write_png(run.pointing_examples, contact_sheet(rows, tile=128))
