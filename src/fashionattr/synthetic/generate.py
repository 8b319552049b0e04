"""Synthetic garment data in FashionAI's layout and schema: the project's built-in demo and test data.

Real FashionAI images cannot be shipped, so the generator draws figures whose labelled part shows the class
(see :mod:`fashionattr.synthetic.scenes`) and writes them exactly as FashionAI lays them out. Each image has
its own random generator seeded from (seed, attribute, class, index), so parallel and serial runs agree
byte for byte, and growing `per_class` keeps the images already made.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fashionattr.data.complete_labels import (
    CATEGORIES_RELPATH,
    COMPLETE_RELPATH,
    TEST_CATEGORIES_RELPATH,
    TEST_COMPLETE_RELPATH,
    format_categories,
    format_complete,
)
from fashionattr.data.labels import ANSWERS_RELPATH, LABELS_RELPATH, QUESTIONS_RELPATH, LabelRecord, format_rows
from fashionattr.data.parts import PARTS_RELPATH, TEST_PARTS_RELPATH, PartRow, format_parts
from fashionattr.io import atomic_write_text
from fashionattr.parallel import map_in_processes
from fashionattr.schema import FASHIONAI
from fashionattr.synthetic.scenes import PartBox, render, render_scene

__all__ = ["FLIPPED_RELPATH", "draw_preview", "flip_labels", "generate_dataset", "render_sample"]

FLIPPED_RELPATH = Path("Annotations") / "flipped.csv"
"""With label noise: the flipped rows of label.csv, with their true labels (label.csv format)."""


def render_sample(
    attribute: str, target: int, rng: np.random.Generator, size: int = 512
) -> tuple[Image.Image, tuple[int, ...]]:
    """Draw one RGB image whose `attribute` shows class `target`.

    Returns the image and the class indices marked 'm' (maybe): set when the sample is drawn part-way towards a
    neighbouring class.
    """
    attr = FASHIONAI.attribute(attribute)
    if not 0 <= target < attr.num_classes:
        raise ValueError(f"{attr.name} has classes 0..{attr.num_classes - 1}; got target {target}")
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    return render(attr, target, rng, size)


@dataclass(frozen=True)
class _Job:
    """One image to make: which attribute and class, its index in the class, and where it goes."""

    attr_index: int
    target: int
    index: int
    test: bool


def _image_name(seed: int, attribute: str, target: int, index: int) -> str:
    return hashlib.sha1(f"{seed}/{attribute}/{target}/{index}".encode()).hexdigest()[:32]


def _image_rng(seed: int, job: _Job) -> np.random.Generator:
    return np.random.default_rng([seed, job.attr_index, job.target, job.index])


@dataclass(frozen=True)
class _Made:
    """What drawing one image produced: the job, the image's path, its `m` classes and its part boxes."""

    job: _Job
    path: str
    maybe: tuple[int, ...]
    parts: tuple[PartBox, ...]
    truth: dict[str, str]
    category: str

    @property
    def record(self) -> LabelRecord:
        return LabelRecord(self.path, FASHIONAI.attributes[self.job.attr_index].name, self.job.target, self.maybe)

    def part_rows(self) -> list[PartRow]:
        attribute = FASHIONAI.attributes[self.job.attr_index].name
        return [PartRow(self.path, attribute, part.name, part.box) for part in self.parts]

    def complete_rows(self) -> list[tuple[str, str, str]]:
        return [(self.path, attribute, value) for attribute, value in self.truth.items()]


def _make_image(args: tuple[str, int, int, _Job]) -> _Made:
    """Draw, encode and atomically write one image; runs in a worker process."""
    root, size, seed, job = args
    attr = FASHIONAI.attributes[job.attr_index]
    rng = _image_rng(seed, job)
    rendered = render_scene(attr, job.target, rng, size)
    image = rendered.image
    rel = f"Images/{attr.name}/{_image_name(seed, attr.name, job.target, job.index)}.jpg"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    path = Path(root) / rel
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return _Made(job, rel, rendered.maybe, rendered.parts, rendered.truth, rendered.category)


TEST_FRACTION = 0.1
"""The share of each class held out for Tests/ unless told otherwise."""


def held_out_per_class(per_class: int, test_fraction: float = TEST_FRACTION) -> int:
    """How many of each class's images go to Tests/: the fraction, rounded to the nearest whole image."""
    return int(per_class * test_fraction + 0.5)


def fewest_per_class_with_a_test_image(test_fraction: float = TEST_FRACTION) -> int:
    """The smallest `per_class` that holds out at least one image of each class at `test_fraction` (above 0)."""
    fewest = max(1, math.ceil(0.5 / test_fraction) - 1)
    while not held_out_per_class(fewest, test_fraction):
        fewest += 1
    return fewest


def _jobs(per_class: int, test_fraction: float, attributes: Sequence[str] | None = None) -> list[_Job]:
    n_test = held_out_per_class(per_class, test_fraction)
    wanted = set(attributes) if attributes else set(FASHIONAI.names)
    return [
        _Job(a, c, k, test=k >= per_class - n_test)
        for a, attr in enumerate(FASHIONAI.attributes)
        if attr.name in wanted
        for c in range(attr.num_classes)
        for k in range(per_class)
    ]


def generate_dataset(
    out: str | Path,
    per_class: int = 40,
    size: int = 512,
    seed: int = 0,
    test_fraction: float = TEST_FRACTION,
    workers: int | None = None,
    progress: bool = True,
    label_noise: float = 0.0,
    attributes: Sequence[str] | None = None,
) -> dict:
    """Write a FashionAI-layout dataset; returns a summary dict (counts per attribute, m rate, paths).

    `label_noise` is the share of training rows whose label is switched to a random other class, as crowd labels
    sometimes are; the true labels of those rows go to `Annotations/flipped.csv`, so a label review can be scored.
    `attributes` (full or short names) limits the dataset to some attributes; their images are the ones a full
    dataset of the same seed holds.
    """
    try:
        attributes = FASHIONAI.resolve_names(list(attributes)) if attributes else None
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label noise must be in [0, 1), got {label_noise}")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if int(per_class * test_fraction + 0.5) >= per_class:
        raise ValueError(f"test_fraction {test_fraction} leaves no training image of {per_class} per class")
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    from fashionattr.progress import progress as progress_bar

    start = time.perf_counter()
    root = Path(out)
    for attr in FASHIONAI:
        if attributes is None or attr.name in attributes:
            (root / "Images" / attr.name).mkdir(parents=True, exist_ok=True)
    jobs = _jobs(per_class, test_fraction, attributes)
    tasks = [(str(root), size, seed, job) for job in jobs]
    results: list[_Made] = []
    with progress_bar(len(tasks), desc="synth", unit="img", enabled=progress) as bar:
        for result in map_in_processes(_make_image, tasks, workers, chunksize=16):
            results.append(result)
            bar.update()
    train = [made.record for made in results if not made.job.test]
    test = [made.record for made in results if made.job.test]
    given, flipped = flip_labels(train, label_noise, seed)
    atomic_write_text(root / LABELS_RELPATH, format_rows(given, FASHIONAI))
    if flipped:
        atomic_write_text(root / FLIPPED_RELPATH, format_rows(flipped, FASHIONAI))
    elif (root / FLIPPED_RELPATH).exists():
        (root / FLIPPED_RELPATH).unlink()  # a rerun without noise must not leave the last run's record behind
    atomic_write_text(root / ANSWERS_RELPATH, format_rows(test, FASHIONAI))
    atomic_write_text(root / PARTS_RELPATH, format_parts(r for m in results if not m.job.test for r in m.part_rows()))
    atomic_write_text(root / TEST_PARTS_RELPATH, format_parts(r for m in results if m.job.test for r in m.part_rows()))
    sides = ((False, COMPLETE_RELPATH, CATEGORIES_RELPATH), (True, TEST_COMPLETE_RELPATH, TEST_CATEGORIES_RELPATH))
    for test_side, complete_path, categories_path in sides:
        made = [m for m in results if m.job.test == test_side]
        atomic_write_text(root / complete_path, format_complete(row for m in made for row in m.complete_rows()))
        atomic_write_text(root / categories_path, format_categories((m.path, m.category) for m in made))
    questions = [LabelRecord(r.path, r.attribute, -1) for r in test]
    atomic_write_text(root / QUESTIONS_RELPATH, format_rows(questions, FASHIONAI))
    per_attribute = {
        attr.name: {
            "train": sum(r.attribute == attr.name for r in train),
            "test": sum(r.attribute == attr.name for r in test),
        }
        for attr in FASHIONAI
        if attributes is None or attr.name in attributes
    }
    return {
        "root": str(root),
        "images": len(results),
        "train": len(train),
        "test": len(test),
        "per_attribute": per_attribute,
        "m_rate": sum(bool(r.maybe) for r in train) / max(1, len(train)),
        "flipped": len(flipped),
        "labels": str(root / LABELS_RELPATH),
        "questions": str(root / QUESTIONS_RELPATH),
        "answers": str(root / ANSWERS_RELPATH),
        "parts": str(root / PARTS_RELPATH),
        "complete_labels": str(root / COMPLETE_RELPATH),
        "size": size,
        "seed": seed,
        "seconds": time.perf_counter() - start,
    }


def flip_labels(records: list[LabelRecord], share: float, seed: int) -> tuple[list[LabelRecord], list[LabelRecord]]:
    """Records with `share` of them (chosen by `seed`) switched to a random other class; and the originals switched.

    A switched row loses its `m` marks: whoever mislabelled it did not hedge.
    """
    count = round(share * len(records))
    if count == 0:
        return list(records), []
    rng = np.random.default_rng([seed, 7919])
    chosen = sorted(int(i) for i in rng.choice(len(records), size=count, replace=False))
    given = list(records)
    for i in chosen:
        record = records[i]
        num_classes = FASHIONAI.attribute(record.attribute).num_classes
        other = int(rng.integers(num_classes - 1))
        given[i] = LabelRecord(record.path, record.attribute, other + (other >= record.target))
    return given, [records[i] for i in chosen]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_preview(out_png: str | Path, per_class: int = 2, size: int = 160, seed: int = 0) -> None:
    """Contact sheet: every class of every attribute, labelled with attribute and class name."""
    if per_class < 1 or size < 16:
        raise ValueError("draw_preview needs per_class >= 1 and size >= 16")
    columns = max(FASHIONAI.num_classes)
    caption, title, gap = 14 + size // 16, 22, 6
    band = title + caption + per_class * (size + gap)
    sheet = Image.new("RGB", (columns * (size + gap) + gap, len(FASHIONAI) * band + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    title_font, caption_font = _font(16), _font(max(9, min(13, size // 12)))
    for a, attr in enumerate(FASHIONAI.attributes):
        y0 = a * band + gap
        draw.text((gap, y0), attr.name, fill=(0, 0, 0), font=title_font)
        for c, class_name in enumerate(attr.classes):
            x = gap + c * (size + gap)
            draw.text((x, y0 + title), f"{c} {class_name}", fill=(40, 40, 120), font=caption_font)
            for k in range(per_class):
                job = _Job(a, c, k, test=False)
                image, maybe = render_sample(attr.name, c, _image_rng(seed, job), size)
                image.thumbnail((size, size))
                y = y0 + title + caption + k * (size + gap)
                sheet.paste(image, (x + (size - image.width) // 2, y))
                if maybe:
                    draw.text((x + 3, y + 2), "m:" + ",".join(map(str, maybe)), fill=(220, 0, 0), font=caption_font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    from fashionattr.io import atomic_write_bytes

    atomic_write_bytes(out_png, buffer.getvalue())
