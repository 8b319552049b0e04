"""A vector index kept in step with the catalogue database, for similar-garment search.

The index remembers the catalogue generation it reflects. Before each search it asks the database for the
current generation (one tiny query) and, when writers have been at work, applies only what changed since: new
and re-embedded items are upserted, removed ones (their tombstones) dropped. It starts from the index the last
indexer saved in the database when there is one, so a service replica does not rebuild a million-item graph.
Candidates are re-scored with the stored float32 embeddings, so scores are exact whichever index found them.
"""

from __future__ import annotations

import threading

import numpy as np

from fashionattr.catalog.store import CatalogStore, Changes
from fashionattr.catalog.vectors import VectorIndex, create_index, index_from_bytes, resolve_kind, unit

CANDIDATES_FACTOR = 2
"""The approximate index is asked for this many times k candidates, re-scored exactly, and cut to k."""


class SimilarityIndex:
    """The catalogue's vector index of the kind `requested` ('auto', 'exact' or 'ann'), refreshed on demand."""

    def __init__(self, store: CatalogStore, requested: str = "auto", threads: int = 0) -> None:
        self.store = store
        self.requested = requested
        self.threads = threads
        self.index: VectorIndex | None = None
        self.generation: int | None = None
        self.origin = ""
        """'saved' when the index started from the one the indexer saved, 'built' when built here."""
        self._lock = threading.RLock()

    def dim(self) -> int:
        self.refresh()
        return self.index.dim if self.index is not None else 0

    def refresh(self) -> VectorIndex | None:
        """Bring the index up to the database's current generation; returns it (None for an empty catalogue)."""
        with self._lock:
            current = self.store.generation()
            if self.index is not None and current == self.generation:
                return self.index
            if self.index is None:
                self._start()
            if self.generation != current:
                self._apply(self.store.changes_since(self.generation))
            wanted = resolve_kind(self.requested, len(self.index) if self.index is not None else 0)
            if self.index is not None and self.index.kind != wanted:
                self._rebuild(self.store.changes_since(None))
            return self.index

    def _start(self) -> None:
        """From the saved index when it fits the request, else nothing yet (everything comes in as changes)."""
        saved = self.store.saved_vector_index()
        if saved is not None:
            description, data = saved
            index = index_from_bytes(description, data)
            if index is not None and resolve_kind(self.requested, len(index)) == index.kind:
                self.index, self.generation, self.origin = index, int(description["generation"]), "saved"
                return
        self._rebuild(self.store.changes_since(None))

    def _rebuild(self, everything: Changes) -> None:
        dim = len(everything.upserted[0][1]) // 4 if everything.upserted else 0
        self.index = create_index(resolve_kind(self.requested, len(everything.upserted)), dim, self.threads)
        self.generation = None
        self.origin = "built"
        self._apply(everything)

    def _apply(self, changes: Changes) -> None:
        if changes.upserted:
            dim = len(changes.upserted[0][1]) // 4
            if self.index is None or self.index.dim != dim or len(self.index) == 0:
                self.index = create_index(resolve_kind(self.requested, len(changes.upserted)), dim, self.threads)
            ids = np.array([i for i, _ in changes.upserted], dtype=np.int64)
            vectors = np.frombuffer(b"".join(e for _, e in changes.upserted), dtype=np.float32).reshape(len(ids), dim)
            self.index.upsert(ids, vectors)
        if changes.removed and self.index is not None:
            self.index.remove(np.array(changes.removed, dtype=np.int64))
        self.generation = changes.generation

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(item id, cosine similarity) of up to `k` items, best first, ties to the lower id."""
        with self._lock:  # a refresh in another thread must not swap the index out from under this search
            index = self.refresh()
            if index is None or len(index) == 0 or k < 1:
                return []
            if index.kind == "exact":
                ids, scores = index.search(query, k)
                return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
            ids, _ = index.search(query, max(k * CANDIDATES_FACTOR, k + 10))
        stored = self.store.embeddings_of([int(i) for i in ids])
        if not stored:
            return []
        matrix = np.frombuffer(b"".join(e for _, e in stored), dtype=np.float32).reshape(len(stored), -1)
        scores = unit(matrix) @ unit(query)
        ranked = sorted(zip((i for i, _ in stored), scores.tolist(), strict=True), key=lambda p: (-p[1], p[0]))
        return ranked[:k]
