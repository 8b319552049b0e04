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
from fashionattr.data.links import LinkProblem, Tree, resolve_file, walk_files
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


def plan_import(source: Path, attribute: str | None) -> tuple[dict[str, list[str]], list[FolderImage], int,
                                                             list[tuple[Path, str]]]:  # fmt: skip
    """The attributes with their classes, every image with its class, the files left out as not images, and the
    paths the link rule refuses (a link that loops, dangles or leads out of the source), read from the folder layout.

    The source may itself be a link (resolved once); inside it, links are followed while they stay in it.
    """
    if not source.is_dir():
        raise UserError(f"{source}: folder not found")
    tree = Tree.of(source)
    layout = {attribute: source} if attribute else {folder.name: folder for folder in _subfolders(source)}
    if not layout:
        raise UserError(f"{source}: no sub-folders; expect SRC/<class>/ (with --attribute) or SRC/<attribute>/<class>/")
    classes: dict[str, list[str]] = {}
    images: list[FolderImage] = []
    refused: list[tuple[Path, str]] = []
    ignored = 0
    for name, folder in layout.items():
        class_folders = _subfolders(folder)
        if len(class_folders) < 2:
            hint = "" if attribute else "; for SRC/<class>/ folders give --attribute NAME"
            raise UserError(f"{folder}: {len(class_folders)} class folder(s); an attribute needs at least 2{hint}")
        classes[name] = [c.name for c in class_folders]
        for target, class_folder in enumerate(class_folders):
            files, not_entered = walk_files(tree, class_folder)
            refused += not_entered
            found = [path for path in files if path.suffix.lower() in IMAGE_SUFFIXES]
            ignored += len(files) - len(found)
            if not found and not not_entered:
                raise UserError(f"{class_folder}: no images in this class folder ({', '.join(IMAGE_SUFFIXES)}); "
                                "add some or remove the folder")  # fmt: skip
            images.extend(FolderImage(name, target, path) for path in found)
    return classes, images, ignored, refused


def _readable(tree: Tree, images: list[FolderImage],
              classes: dict[str, list[str]]) -> tuple[dict[Path, str], list[tuple[Path, str]]]:  # fmt: skip
    """The real file of each usable image, and (path, reason) for each that is not: refused by the link rule (the one
    `check` applies), unreadable, or one file met twice in an attribute (which `check` refuses too): in one class
    the first is kept, in two classes neither, since which label is right cannot be known."""
    real_of: dict[Path, str] = {}
    bad: list[tuple[Path, str]] = []
    by_file: dict[tuple[str, str], list[FolderImage]] = {}
    for image in images:
        try:
            real = resolve_file(tree, image.source)
            probe_image(real)
        except (LinkProblem, ImageError) as exc:
            bad.append((image.source, exc.reason))
            continue
        by_file.setdefault((image.attribute, real), []).append(image)
    for (attribute, real), found in by_file.items():
        first, *again = found
        labels = sorted({classes[attribute][image.target] for image in found})
        if len(labels) > 1:
            bad += [(image.source, f"one file in classes {' and '.join(labels)} of {attribute}; which is right "
                     "cannot be known") for image in found]  # fmt: skip
            continue
        real_of[first.source] = real
        bad += [(image.source, f"the same file as {first.source}; give each image once") for image in again]
    return real_of, bad


def _place(source: str, destination: Path, mode: str) -> None:
    """Hard-link (or copy) the real file, never a link to it: a link copied into the dataset would point elsewhere."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        try:
            os.link(source, destination, follow_symlinks=False)
            return
        except OSError as exc:  # another file system, or links not allowed: copy instead
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    shutil.copyfile(source, destination)


def import_folders(source: str | Path, out: str | Path, attribute: str | None = None, mode: str = "link",
                   skip_bad: bool = False) -> ImportReport:  # fmt: skip
    """Write the dataset; a file `check` would refuse (a link out of the source, a link loop, an unreadable image,
    one file twice) stops it (listed, first 20) unless `skip_bad`, which leaves them out and lists them.

    Everything is decided before the first file is written, and a failure while writing removes only what this
    import made: a folder the user had made is kept.
    """
    source, out = Path(source), Path(out)
    if mode not in ("link", "copy"):
        raise UserError(f"mode must be link or copy, got {mode!r}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: not empty; import into a new folder so that no dataset is overwritten")
    tree = Tree.of(source)
    if tree.contains(os.path.realpath(out)):
        raise UserError(f"{out}: inside the source folder {source}; import into a folder outside it")
    classes, images, ignored, refused = plan_import(source, attribute)
    try:
        schema = Schema.from_dict({"name": out.name or "imported",
                                   "attributes": [{"name": a, "classes": c} for a, c in classes.items()]},
                                  source=str(source))  # fmt: skip
    except SchemaError as exc:
        raise UserError(str(exc)) from None
    real_of, bad = _readable(tree, images, classes)
    bad = refused + bad
    if bad and not skip_bad:
        listed = "; ".join(f"{path}: {reason}" for path, reason in bad[:MAX_REPORTED_PROBLEMS])
        more = f" (and {len(bad) - MAX_REPORTED_PROBLEMS} more)" if len(bad) > MAX_REPORTED_PROBLEMS else ""
        raise UserError(f"{len(bad)} image(s) check would refuse: {listed}{more}; fix or remove them, or pass "
                        "--skip-bad to leave them out")  # fmt: skip
    kept = [image for image in images if image.source in real_of]
    per_class: dict[str, dict[str, int]] = {a: dict.fromkeys(c, 0) for a, c in classes.items()}
    for image in kept:
        per_class[image.attribute][classes[image.attribute][image.target]] += 1
    empty = [f"{a}/{c}" for a, counts in per_class.items() for c, n in counts.items() if n == 0]
    if empty:
        raise UserError(f"{source}: no usable image left in {', '.join(empty)}; a class needs at least one")
    created = not out.exists()
    try:
        _write(out, kept, real_of, classes, schema, mode)
    except BaseException:
        _remove_made(out, created)
        raise
    return ImportReport(schema, len(kept), per_class, bad, ignored)


def _write(out: Path, kept: list[FolderImage], real_of: dict[Path, str], classes: dict[str, list[str]],
           schema: Schema, mode: str) -> None:  # fmt: skip
    labels, sources = io.StringIO(), io.StringIO()
    label_rows, source_rows = csv.writer(labels, lineterminator="\n"), csv.writer(sources, lineterminator="\n")
    for number, image in enumerate(kept):
        relative = f"Images/{path_component(image.attribute, 'attribute')}/{number:06d}{image.source.suffix.lower()}"
        _place(real_of[image.source], out / relative, mode)
        label_rows.writerow([relative, image.attribute, label_string(image.target, len(classes[image.attribute]))])
        source_rows.writerow([relative, str(image.source)])
    schema.save(out / "schema.json")
    atomic_write_text(out / SOURCES_RELPATH, sources.getvalue())
    atomic_write_text(out / LABELS_RELPATH, labels.getvalue())  # last: its presence means the import finished


def _remove_made(out: Path, created: bool) -> None:
    """Undo a failed import: the folder itself only if this import created it, else only what it put inside."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in ("Images", "Annotations"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "schema.json").unlink(missing_ok=True)
