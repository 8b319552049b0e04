"""Figure `reindex`: `catalog index` over a folder whose files are all unchanged, at `--reindex-files` files.

A folder of N files (8 KiB each, written an hour "ago") and an SQLite catalogue that already holds every one of
them (written through the store as the indexer writes it, with a saved similarity index of 64-number embeddings)
are indexed again, round by round: the way `catalog index` does it now (a file whose size and modification time
are as recorded is not read) against `--rehash` (every file read and hashed, as the previous version did). The
model is never run: a file sent to it would stop the figure. The files were just written, so they sit in the page
cache and the reading side is at its fastest; on a cold cache it is slower still.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.applicability import THRESHOLD
from fashionattr.bench.catalog import size_label
from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure
from fashionattr.io import json_text
from fashionattr.schema import FASHIONAI

FILE_BYTES = 8 << 10
EMBEDDING_DIM = 64
REINDEX_GOAL_S = 30.0
BATCH = 2000


class UnusedPredictor:
    """Stands in for the model: an unchanged catalogue must never send a file to it."""

    schema = FASHIONAI
    attributes = FASHIONAI.names
    applicability_threshold = THRESHOLD

    def predict_paths(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("re-indexing an unchanged folder sent a file to the model")


def _populate(folder: Path, db: Path, model: Path, count: int) -> None:
    """N files and a catalogue that holds them all, as a finished `catalog index` leaves it."""
    from fashionattr.catalog import model_fingerprint
    from fashionattr.catalog.store import ItemRow, TagRow, open_store

    rng = np.random.default_rng(0)
    past = time.time() - 3600
    store = open_store(db, write=True)
    try:
        schema = json_text(FASHIONAI.to_dict(), indent=None)
        store.set_meta({"root": str(folder.resolve()), "model": str(model.resolve()),
                        "model_fingerprint": model_fingerprint(model), "schema": schema,
                        "embedding_dim": str(EMBEDDING_DIM)})  # fmt: skip
        tags = [TagRow(a.name, a.classes[0], 0.9, "{}") for a in FASHIONAI]
        for start in range(0, count, BATCH):
            rows = []
            for n in range(start, min(count, start + BATCH)):
                path = folder / f"{n // 1000:03d}" / f"{n:06d}.jpg"
                path.parent.mkdir(exist_ok=True)
                content = rng.bytes(FILE_BYTES)
                path.write_bytes(content)
                os.utime(path, (past, past))
                embedding = rng.random(EMBEDDING_DIM, dtype=np.float32).tobytes()
                rows.append((ItemRow(path.relative_to(folder).as_posix(), hashlib.sha256(content).hexdigest(),
                                     FILE_BYTES, past, embedding), tags))  # fmt: skip
            store.write_batch(rows, [], now=time.time())
    finally:
        store.close()


def reindex_figures(context: BenchContext) -> list[Figure]:
    from fashionattr.catalog import index_catalog

    count = context.settings.reindex_files
    folder, db, model = context.workdir / "reindex", context.workdir / "reindex.sqlite", context.workdir / "model.pt"
    folder.mkdir()
    model.write_bytes(b"a model file: only its fingerprint is read")
    began = time.perf_counter()
    _populate(folder, db, model, count)
    predictor: Any = UnusedPredictor()
    index_catalog(db, folder, model, predictor=predictor, progress=False)  # saves the similarity index
    setup_s = time.perf_counter() - began
    reports: dict[str, Any] = {}

    def index(name: str, rehash: bool) -> Variant:
        def run() -> int:
            reports[name] = index_catalog(db, folder, model, predictor=predictor, progress=False, rehash=rehash)
            return count

        return Variant(name, run)

    measurement = measure([index("size and time", False), index("content hash (--rehash)", True)],
                          rounds=context.settings.rounds, warmup=0)  # fmt: skip
    seconds = {name: count / measurement.median(name) for name in measurement.rates}
    unchanged = {name: report.unchanged for name, report in reports.items()}
    settings = {"files": count, "file_kib": FILE_BYTES >> 10, "catalogue": "SQLite", "setup_s": round(setup_s, 1),
                "unchanged": unchanged, "vector_index": reports["size and time"].vector_index or "exact"}  # fmt: skip
    figure = compared(
        f"reindex.{size_label(count)}", f"re-indexing {count:,} unchanged files: size and time / content hash, files/s",
        measurement, "size and time", "content hash (--rehash)", goal=None, settings=settings,
        notes=["each round one whole `index_catalog` run (listing, checking, the catalogue's saved similarity "
               "index, the summary); the files were just written, so reading them hits the page cache"],
    )  # fmt: skip
    figure.unit = "files/s"
    goal = Figure(
        key="reindex.seconds", title=f"re-indexing {count:,} unchanged files, seconds", ratio=seconds["size and time"],
        goal=REINDEX_GOAL_S, at_most=True, ratio_unit=" s", unit="s",
        settings={"files": count, "with --rehash_s": round(seconds["content hash (--rehash)"], 1)},
    )  # fmt: skip
    return [figure, goal]
