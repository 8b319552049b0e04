"""Your own data the easy way: class-per-subfolder image folders turned into a dataset in the FashionAI shape.

`SRC/<class>/*.jpg` (as torchvision's `ImageFolder` reads it) becomes one attribute; `SRC/<attribute>/<class>/*`
becomes several. The result is `OUT/Images/<attribute>/NNNNNN.<ext>` (hard links where the file system allows,
else copies), `OUT/Annotations/label.csv`, `OUT/Annotations/sources.csv` (which original each image is) and
`OUT/schema.json` with the classes in sorted folder order, as `ImageFolder` numbers them.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fashionattr.data.images import IMAGE_SUFFIXES, ImageError, probe_image
from fashionattr.data.labels import LABELS_RELPATH, MAX_REPORTED_PROBLEMS, label_string
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text
from fashionattr.names import path_component
from fashionattr.schema import Schema, SchemaError

SOURCES_RELPATH = Path("Annotations") / "sources.csv"


@dataclass(frozen=True)
class FolderImage:
    attribute: str
    target: int
    source: Path


@dataclass
class ImportReport:
    schema: Schema
    images: int
    per_class: dict[str, dict[str, int]]
    skipped: list[tuple[Path, str]]
    ignored: int
    """Files left out because their names do not end like an image."""


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> tuple[list[Path], int]:
    files = sorted(p for p in folder.rglob("*") if not p.is_dir() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, len(files) - len(images)


def plan_import(source: Path, attribute: str | None) -> tuple[dict[str, list[str]], list[FolderImage], int]:
    """The attributes with their classes, and every image with its class, read from the folder layout."""
    if not source.is_dir():
        raise UserError(f"{source}: folder not found")
    layout = {attribute: source} if attribute else {folder.name: folder for folder in _subfolders(source)}
    if not layout:
        raise UserError(f"{source}: no sub-folders; expect SRC/<class>/ (with --attribute) or SRC/<attribute>/<class>/")
    classes: dict[str, list[str]] = {}
    images: list[FolderImage] = []
    ignored = 0
    for name, folder in layout.items():
        class_folders = _subfolders(folder)
        if len(class_folders) < 2:
            hint = "" if attribute else "; for SRC/<class>/ folders give --attribute NAME"
            raise UserError(f"{folder}: {len(class_folders)} class folder(s); an attribute needs at least 2{hint}")
        classes[name] = [c.name for c in class_folders]
        for target, class_folder in enumerate(class_folders):
            found, left_out = _image_files(class_folder)
            ignored += left_out
            if not found:
                raise UserError(f"{class_folder}: no images in this class folder ({', '.join(IMAGE_SUFFIXES)}); "
                                "add some or remove the folder")  # fmt: skip
            images.extend(FolderImage(name, target, path) for path in found)
    return classes, images, ignored


def _place(source: Path, destination: Path, mode: str) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(source, destination)
            return
        except OSError as exc:  # another file system, or links not allowed: copy instead
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    shutil.copyfile(source, destination)


def import_folders(source: str | Path, out: str | Path, attribute: str | None = None, mode: str = "link",
                   skip_bad: bool = False) -> ImportReport:  # fmt: skip
    """Write the dataset; unreadable images stop it (listed, first 20) unless `skip_bad`, which leaves them out."""
    source, out = Path(source), Path(out)
    if mode not in ("link", "copy"):
        raise UserError(f"mode must be link or copy, got {mode!r}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: not empty; import into a new folder so that no dataset is overwritten")
    classes, images, ignored = plan_import(source, attribute)
    try:
        schema = Schema.from_dict({"name": out.name or "imported",
                                   "attributes": [{"name": a, "classes": c} for a, c in classes.items()]},
                                  source=str(source))  # fmt: skip
    except SchemaError as exc:
        raise UserError(str(exc)) from None
    bad: list[tuple[Path, str]] = []
    for image in images:
        try:
            probe_image(image.source)
        except ImageError as exc:
            bad.append((image.source, exc.reason))
    if bad and not skip_bad:
        listed = "; ".join(f"{path}: {reason}" for path, reason in bad[:MAX_REPORTED_PROBLEMS])
        more = f" (and {len(bad) - MAX_REPORTED_PROBLEMS} more)" if len(bad) > MAX_REPORTED_PROBLEMS else ""
        raise UserError(f"{len(bad)} unreadable image(s): {listed}{more}; fix or remove them, or pass --skip-bad")
    refused = {path for path, _ in bad}
    labels, sources = io.StringIO(), io.StringIO()
    label_rows, source_rows = csv.writer(labels, lineterminator="\n"), csv.writer(sources, lineterminator="\n")
    per_class: dict[str, dict[str, int]] = {a: dict.fromkeys(c, 0) for a, c in classes.items()}
    for number, image in enumerate(i for i in images if i.source not in refused):
        relative = f"Images/{path_component(image.attribute, 'attribute')}/{number:06d}{image.source.suffix.lower()}"
        _place(image.source, out / relative, mode)
        num_classes = len(classes[image.attribute])
        label_rows.writerow([relative, image.attribute, label_string(image.target, num_classes)])
        source_rows.writerow([relative, str(image.source)])
        per_class[image.attribute][classes[image.attribute][image.target]] += 1
    empty = [f"{a}/{c}" for a, counts in per_class.items() for c, n in counts.items() if n == 0]
    if empty:
        shutil.rmtree(out, ignore_errors=True)
        raise UserError(f"{source}: no readable image left in {', '.join(empty)}; a class needs at least one")
    schema.save(out / "schema.json")
    atomic_write_text(out / SOURCES_RELPATH, sources.getvalue())
    atomic_write_text(out / LABELS_RELPATH, labels.getvalue())  # last: its presence means the import finished
    return ImportReport(schema, len(images) - len(refused), per_class, bad, ignored)
