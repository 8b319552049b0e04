"""Tagging a folder into a catalogue: new and changed files are tagged, unchanged ones skipped, removed ones dropped.

Each batch is written in one transaction, so a killed run leaves a consistent catalogue and a rerun carries on
where it stopped (files are matched by content hash). Under `torchrun` every rank tags its own shard of the
files into one shared PostgreSQL catalogue; rank 0 alone sets the catalogue up, drops removed files and, at the
end, saves the similarity index for readers to start from.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionattr.applicability import THRESHOLD
from fashionattr.catalog.backends import backend_for, shown_location
from fashionattr.catalog.files import file_state, files_fingerprint, model_fingerprint, scan_images, shown_name
from fashionattr.catalog.similarity import SimilarityIndex
from fashionattr.catalog.store import CatalogStore, ItemRow, KnownItem, TagRow, open_store
from fashionattr.catalog.vectors import VECTOR_INDEX_KINDS, resolve_kind
from fashionattr.distributed import DistributedContext, barrier, broadcast_object, gather_objects
from fashionattr.errors import UserError
from fashionattr.io import FileReadError

if TYPE_CHECKING:
    from fashionattr.inference import Predictor

MISNAMED_REASON = "the file name is not valid UTF-8 text; rename the file to index it"
RACY_SECONDS = 2.0
"""A file modified less than this before it was tagged is hashed on the next run rather than trusted by its size and
time (the coarsest common file-system time resolution: FAT's 2 s)."""


@dataclass
class IndexReport:
    """What one `index_catalog` run did; `errors` lists every unreadable file now in the folder."""

    root: Path
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    retagged_for_new_model: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)
    vector_index: str = ""
    """The similarity index saved for readers ('ann'), or '' when readers search exactly."""
    tagged_per_process: list[int] = field(default_factory=list)
    """Under torchrun: how many files each rank tagged, in rank order."""
    notes: list[str] = field(default_factory=list)
    """What was found damaged and repaired (a saved similarity index rebuilt), one line each."""

    @property
    def tagged(self) -> int:
        return self.added + self.updated

    def merge(self, other: IndexReport) -> None:
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged


@dataclass(frozen=True)
class _Setup:
    """What rank 0 found and decided before tagging, for every rank: the files, or the error to stop with."""

    files: list[str] = field(default_factory=list)
    removed: int = 0
    retagged: bool = False
    error: str | None = None


def index_catalog(
    db: str | Path,
    root: str | Path,
    model: str | Path,
    predictor: Predictor | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    load: Callable[[str | Path], Predictor] | None = None,
    context: DistributedContext | None = None,
    vector_index: str = "auto",
    rehash: bool = False,
    categories: str | Path | None = None,
) -> IndexReport:
    """Tag every image under `root` into the catalogue `db`, skipping files whose content is unchanged.

    A file tagged before is unchanged when its size and modification time are as recorded (nothing is read), else
    when its content hash is; `rehash` hashes every file whatever its size and time.

    `categories` is a file of `path,category` rows (paths relative to `root`): a photo filed under a category is
    tagged only with the attributes the schema's `categories` mapping gives it (a skirt's photo gets no sleeve length),
    on top of the model's own decision. A catalogue indexed with other categories is tagged again whole.

    `predictor` (or `load(model)`, default `load_predictor`) must be the model at `model`: the path and its
    fingerprint are recorded so a later run with another model re-tags everything instead of mixing answers.
    Under torchrun (`context` with several ranks) each rank tags a disjoint shard; the report is complete on
    rank 0 only.
    """
    context = context or DistributedContext()
    if vector_index not in VECTOR_INDEX_KINDS:
        raise UserError(f"unknown vector index {vector_index!r}; choose one of: {', '.join(VECTOR_INDEX_KINDS)}")
    root_path = Path(root).resolve()
    if context.enabled and not backend_for(db).shared_writers:
        raise UserError(f"{shown_location(db)}: tagging on several processes writes into one shared catalogue; "
                        "give a PostgreSQL one (--catalog postgresql://user@host/db), or run `catalog index` without "
                        "torchrun")  # fmt: skip
    store: CatalogStore | None = None
    try:
        setup = _Setup()
        if context.is_main:
            try:
                store, predictor, setup = _set_up(db, root_path, model, predictor, load, progress, categories)
            except UserError as exc:
                setup = _Setup(error=str(exc))
        setup = broadcast_object(setup, context)
        if setup.error is not None:
            raise UserError(setup.error)
        if store is None:
            store = open_store(db, write=True)
        if predictor is None:
            predictor = _load(model, load)
        allowed = allowed_attributes(categories, predictor) if categories is not None else None
        report = IndexReport(root=root_path, removed=setup.removed, retagged_for_new_model=setup.retagged)
        shard = setup.files[context.rank :: context.world_size]
        pending = _changed_files(store, root_path, shard, report, progress, rehash)
        _tag_files(store, root_path, pending, predictor, report, batch_size, workers, progress, allowed)
        reports = gather_objects(report, context)
        if context.is_main:
            report.tagged_per_process = [r.tagged for r in reports] if context.enabled else []
            for other in reports[1:]:
                report.merge(other)
            if report.tagged or report.removed:
                store.analyze()
            report.vector_index = _save_vector_index(store, vector_index, report)
            report.errors = store.errors()
        barrier(context)
        return report
    finally:
        if store is not None:
            store.close()


def _load(model: str | Path, load: Callable[[str | Path], Predictor] | None) -> Predictor:
    from fashionattr.inference import load_predictor

    return (load or load_predictor)(model)


def allowed_attributes(categories: str | Path, predictor: Predictor) -> dict[str, frozenset[str]]:
    """Photo path -> the attributes its product category can show (`Schema.categories`), from a `path,category` file."""
    from fashionattr.data.complete_labels import read_categories

    mapping = predictor.schema.categories
    if not mapping:
        raise UserError(f"{categories}: the model's schema {predictor.schema.name!r} maps no product categories to "
                        "attributes; add 'categories' to the dataset's schema file")  # fmt: skip
    return {path: frozenset(mapping[category]) for path, category in read_categories(categories, mapping).items()}


def _set_up(
    db: str | Path, root: Path, model: str | Path, predictor: Predictor | None,
    load: Callable[[str | Path], Predictor] | None, progress: bool, categories: str | Path | None = None,
) -> tuple[CatalogStore, Predictor, _Setup]:  # fmt: skip
    """Open (or create) the catalogue, check it is this folder's, record the model, list the files, drop the gone."""
    if not root.is_dir():
        raise UserError(f"{root}: no such folder to index")
    predictor = predictor if predictor is not None else _load(model, load)
    if categories is not None:
        allowed_attributes(categories, predictor)  # refused before the catalogue is opened, when it is wrong
    store = open_store(db, write=True)
    try:
        meta = store.meta()
        if "root" in meta and Path(meta["root"]) != root:
            raise UserError(f"{store.name}: this catalogue indexes {meta['root']}, not {root}; use another --catalog "
                            "for this folder")  # fmt: skip
        # What decides the tags: the model, the categories photos are filed under, and where a tag starts to apply.
        fingerprint = model_fingerprint(model)
        filed = files_fingerprint([categories]) if categories is not None else ""
        threshold = repr(float(predictor.applicability_threshold))
        decided_by = (fingerprint, filed, threshold)
        recorded = (meta.get("model_fingerprint"), meta.get("categories_fingerprint", ""),
                    meta.get("applicability_threshold", repr(THRESHOLD)))  # fmt: skip
        retagged = "model_fingerprint" in meta and recorded != decided_by
        if retagged:
            store.clear()
        schema = predictor.schema.subset(predictor.attributes)
        store.set_meta({"root": str(root), "model": str(Path(model).resolve()), "model_fingerprint": fingerprint,
                        "categories_fingerprint": filed, "applicability_threshold": threshold,
                        "schema": json.dumps(schema.to_dict())})  # fmt: skip
        files = scan_images(root)
        misnamed = {rel: shown_name(rel) for rel in files if shown_name(rel) != rel}
        files = [rel for rel in files if rel not in misnamed]
        present = set(files) | set(misnamed.values())
        gone_items = [p for p in store.known_items() if p not in present]
        gone_errors = [p for p in store.known_errors() if p not in present]
        store.remove_paths(gone_items, gone_errors)
        misnamed_rows = [(ItemRow(name, "", 0, 0.0, b""), MISNAMED_REASON) for name in misnamed.values()]
        if misnamed_rows:
            store.write_batch([], misnamed_rows, time.time())
    except BaseException:
        store.close()
        raise
    return store, predictor, _Setup(files=files, removed=len(gone_items), retagged=retagged)


def unchanged_by_stat(path: Path, recorded: KnownItem) -> bool:
    """Whether a tagged file is unchanged by its size and modification time alone, without reading it.

    Trusted only for a regular file whose time is older than the moment it was tagged by `RACY_SECONDS`: a file
    written again within the file system's time resolution of being hashed could keep its size and time with new
    content (git's "racily clean" entries), so such a file is hashed instead.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return False
    return (stat.S_ISREG(info.st_mode) and info.st_size == recorded.size and info.st_mtime == recorded.mtime
            and info.st_mtime < recorded.indexed_at - RACY_SECONDS)  # fmt: skip


def _changed_files(store: CatalogStore, root: Path, files: Sequence[str], report: IndexReport,
                   progress: bool, rehash: bool) -> list[ItemRow]:  # fmt: skip
    """Files that are new or whose content differs from what was tagged; the rest count as unchanged.

    A tagged file whose size and modification time are as recorded is unchanged without being read
    (`unchanged_by_stat`); any other is hashed, and counts as changed only when its content hash differs. `rehash`
    hashes every file. A file that cannot be read, or is not a regular file (a FIFO, a link to a device), is
    recorded as an error at once: it is never handed to the decoder, which could block on it.
    """
    from fashionattr.progress import tracked

    known = store.known_items()
    failed = store.known_errors()
    damaged = store.damaged_embeddings() if rehash else set()
    pending: list[ItemRow] = []
    unreadable: list[tuple[ItemRow, str]] = []
    touched: list[tuple[int, float, float, str]] = []
    for rel in tracked(files, desc="checking", unit="file", enabled=progress, leave=False):
        recorded = known.get(rel)
        if recorded is not None and not rehash and unchanged_by_stat(root / rel, recorded):
            report.unchanged += 1
            continue
        checked_at = time.time()
        try:
            digest, size, mtime = file_state(root / rel)
        except FileReadError as exc:
            if failed.get(rel) != f"unreadable:{exc.reason}":
                unreadable.append((ItemRow(rel, f"unreadable:{exc.reason}", 0, 0.0, b""), exc.reason))
            continue
        if recorded is not None and recorded.sha256 == digest and rel not in damaged:
            report.unchanged += 1
            touched.append((size, mtime, checked_at, rel))  # the next run can trust its size and time
        elif failed.get(rel) == digest:
            continue  # still the same undecodable file: listed among the errors again, not retried
        else:
            pending.append(ItemRow(rel, digest, size, mtime, b""))
    store.touch(touched)
    if unreadable:
        store.write_batch([], unreadable, time.time())
    return pending


def _tag_files(store: CatalogStore, root: Path, pending: Sequence[ItemRow], predictor: Predictor,
               report: IndexReport, batch_size: int, workers: int, progress: bool,
               allowed: Mapping[str, frozenset[str]] | None = None) -> None:  # fmt: skip
    """Run the model over `pending` and write each batch's rows in one transaction."""
    from fashionattr.progress import progress as progress_bar

    if not pending:
        return
    known = set(store.known_items())
    states = {str(root / f.path): f for f in pending}
    rows: list[tuple[ItemRow, Any]] = []
    with progress_bar(len(pending), desc="tagging", unit="img", enabled=progress) as bar:
        for entry in predictor.predict_paths(list(states), batch_size=batch_size, workers=workers, embed=True):
            rows.append((states[_source(entry)], entry))
            if len(rows) >= batch_size:
                _write_rows(store, rows, predictor, known, report, allowed)
                rows = []
            bar.update(1)
        _write_rows(store, rows, predictor, known, report, allowed)


def _source(entry: Any) -> str:
    from fashionattr.data.images import ImageError

    return str(entry.path if isinstance(entry, ImageError) else entry.source)


def _write_rows(store: CatalogStore, rows: Sequence[tuple[ItemRow, Any]], predictor: Predictor, known: set[str],
                report: IndexReport, allowed: Mapping[str, frozenset[str]] | None = None) -> None:  # fmt: skip
    from fashionattr.data.images import ImageError

    if not rows:
        return
    tagged: list[tuple[ItemRow, list[TagRow]]] = []
    failed: list[tuple[ItemRow, str]] = []
    for state, entry in rows:
        if isinstance(entry, ImageError):
            failed.append((state, entry.reason))
            continue
        embedding = np.asarray(entry.embedding, dtype=np.float32).tobytes()
        can_show = allowed.get(state.path) if allowed is not None else None  # None: filed under no category
        tags = [TagRow(name, predictor.schema.attribute(name).classes[result.index], float(result.confidence),
                       json.dumps(result.probabilities),
                       applies=bool(result.applies) and (can_show is None or name in can_show),
                       applicability=float(result.applicability))
                for name, result in entry.attributes.items()]  # fmt: skip
        tagged.append((ItemRow(state.path, state.sha256, state.size, state.mtime, embedding), tags))
    store.write_batch(tagged, failed, time.time())
    for state, _ in tagged:
        if state.path in known:
            report.updated += 1
        else:
            report.added += 1
            known.add(state.path)
    dims = {len(row.embedding) // 4 for row, _ in tagged}
    if dims and store.meta().get("embedding_dim") != str(min(dims)):
        store.set_meta({"embedding_dim": str(min(dims))})


def _save_vector_index(store: CatalogStore, requested: str, report: IndexReport) -> str:
    """Save the approximate index in the catalogue when readers will use one, so they need not build it; a saved
    one that is current and sound is left as it is."""
    if resolve_kind(requested, store.count()) != "ann":
        store.drop_vector_index()
        return ""
    similarity = SimilarityIndex(store, requested, threads=os.cpu_count() or 1)
    index = similarity.refresh()
    report.notes += similarity.notes
    if index is None or index.kind != "ann":
        store.drop_vector_index()
        return ""
    if similarity.origin != "saved" or similarity.saved_generation != similarity.generation:
        store.save_vector_index({**index.describe(), "generation": similarity.generation}, index.to_bytes())
    return index.kind
