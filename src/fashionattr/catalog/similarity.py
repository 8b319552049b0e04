"""A vector index kept in step with the catalogue database, for similar-garment search.

The index remembers the catalogue generation it reflects. Before each search it asks the database for the
current generation (one tiny query) and, when writers have been at work, applies only what changed since: new
and re-embedded items are upserted, removed ones (their tombstones) dropped. It starts from the index the last
indexer saved in the database when there is one, so a service replica does not rebuild a million-item graph.
Candidates are re-scored with the stored float32 embeddings, so scores are exact whichever index found them.

Nothing unchecked reaches the vector library: the saved index is verified against its checksum first (a damaged
one is rebuilt from the stored embeddings, with a note), and a stored embedding of the wrong length or with
non-finite numbers is left out (with a note naming the fix) rather than indexed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from fashionattr.catalog.blobs import verify
from fashionattr.catalog.store import CatalogStore, Changes
from fashionattr.catalog.vectors import (
    MAX_DIM,
    VectorIndex,
    candidate_count,
    create_index,
    index_from_bytes,
    resolve_kind,
    sound_rows,
    unit,
)

REBUILT = "built it from the stored embeddings instead; the next `fashionattr catalog index` saves a sound one"


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
        self.notes: list[str] = []
        """What was found wrong and worked around (a damaged saved index, damaged embeddings), one line each."""
        self.on_note: Callable[[str], None] | None = None
        """Told each note as it is found (a long-running service logs them)."""
        self.saved_generation: int | None = None
        """The generation of the saved index this one started from."""
        self.damaged: set[int] = set()
        """Items whose stored embedding is damaged: left out of the index."""
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
        """From the saved index when it is sound and fits the request, else nothing yet (everything comes in as
        changes)."""
        saved = self.store.saved_vector_index()
        if saved is not None:
            description, data = saved
            index = self._restore(description, data)
            if index is not None and resolve_kind(self.requested, len(index)) == index.kind:
                self.index, self.generation, self.origin = index, int(description["generation"]), "saved"
                self.saved_generation = self.generation
                return
        self._rebuild(self.store.changes_since(None))

    def _restore(self, description: Any, data: bytes) -> VectorIndex | None:
        problem = verify(description, data)
        if problem is None and not isinstance(description.get("generation"), int):
            problem = "its description names no generation"
        if problem is None:
            try:
                index = index_from_bytes(description, data)
            except Exception as exc:  # sound bytes the library still refuses (a format it no longer reads)
                problem = f"the vector library could not read it ({type(exc).__name__}: {exc})"
            else:
                if index is not None:
                    return index
                problem = "it was saved in a form this version does not read"
        self._note(f"{self.store.name}: the saved similarity index cannot be used ({problem}); {REBUILT}")
        return None

    def _note(self, note: str) -> None:
        self.notes.append(note)
        if self.on_note is not None:
            self.on_note(note)

    def _rebuild(self, everything: Changes) -> None:
        self.index = None
        self.generation = None
        self.origin = "built"
        self._apply(everything)

    def _vectors(self, upserted: list[tuple[int, bytes]]) -> tuple[int, np.ndarray, np.ndarray]:
        """(dim, ids, matrix) of the sound embeddings among `upserted`; damaged ones (a length other than the
        index's, or numbers that are not finite) are recorded in `damaged` and left out."""
        if self.index is not None and len(self.index):
            dim = self.index.dim
        else:
            lengths = Counter(len(e) for _, e in upserted if len(e) % 4 == 0 and 0 < len(e) <= 4 * MAX_DIM)
            dim = lengths.most_common(1)[0][0] // 4 if lengths else 0
        good = [(i, e) for i, e in upserted if len(e) == 4 * dim]
        ids = np.array([i for i, _ in good], dtype=np.int64)
        matrix = np.frombuffer(b"".join(e for _, e in good), dtype=np.float32).reshape(len(good), dim)
        finite = sound_rows(matrix)
        damaged = {i for i, _ in upserted} - set(ids[finite].tolist())
        self.damaged = (self.damaged - set(ids[finite].tolist())) | damaged
        self._note_damaged(damaged)
        return dim, ids[finite], matrix[finite]

    def _note_damaged(self, damaged: set[int]) -> None:
        if damaged:
            shown = ", ".join(map(str, sorted(damaged)[:5])) + (", ..." if len(damaged) > 5 else "")
            self._note(f"{self.store.name}: {len(damaged)} stored embedding(s) are damaged (item ids {shown}) "
                              "and left out of similar search; `fashionattr catalog index --rehash` tags those "
                              "images again")  # fmt: skip

    def _apply(self, changes: Changes) -> None:
        if changes.upserted:
            dim, ids, vectors = self._vectors(changes.upserted)
            if len(ids) and (self.index is None or self.index.dim != dim or len(self.index) == 0):
                self.index = create_index(resolve_kind(self.requested, len(ids)), dim, self.threads)
            if self.index is not None:
                self.index.remove(np.array(sorted(self.damaged), dtype=np.int64))
                self.index.upsert(ids, vectors)
        if changes.removed and self.index is not None:
            self.index.remove(np.array(changes.removed, dtype=np.int64))
        self.damaged -= set(changes.removed)
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
            ids, _ = index.search(query, candidate_count(k))
            dim = index.dim
        candidates = self.store.embeddings_of([int(i) for i in ids])
        stored = [(i, e) for i, e in candidates if len(e) == 4 * dim]
        matrix = np.frombuffer(b"".join(e for _, e in stored), dtype=np.float32).reshape(len(stored), dim)
        sound = sound_rows(matrix)
        damaged = {i for i, _ in candidates} - {i for (i, _), ok in zip(stored, sound, strict=True) if ok}
        if damaged - self.damaged:  # damaged since the index was built: left out, and said once
            with self._lock:
                self._note_damaged(damaged - self.damaged)
                self.damaged |= damaged
        scores = unit(matrix[sound]) @ unit(query)
        ranked = zip([i for (i, _), ok in zip(stored, sound, strict=True) if ok], scores.tolist(), strict=True)
        return sorted(ranked, key=lambda p: (-p[1], p[0]))[:k]
