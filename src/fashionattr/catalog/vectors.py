"""The vector-index seam: one small interface for similar-garment search, an exact and an approximate implementation.

`ExactIndex` scores the query against every embedding (one matrix product): exact, no build, the default for
catalogues below `ANN_MIN_ITEMS`. `ApproximateIndex` is an HNSW graph from usearch, with vectors stored as
16-bit floats: a few milliseconds per query at a million items, items added and removed in place. usearch was
chosen over faiss-cpu by measurement (benchmarks/ann_choice.py, figures in benchmarks/README.md): the same
recall and memory at 16 bits; faiss answers faster, but only usearch removes and replaces vectors in place,
which incremental updates need. Both take and return item ids; scores are cosine similarities.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

VECTOR_INDEX_KINDS = ("auto", "exact", "ann")
ANN_MIN_ITEMS = 50_000
"""From here on `auto` uses the approximate index. Exact search grows linearly with the items: on the project's
2-core machine 0.6 ms at 10,000 items of 512 numbers (the approximate index: 0.5 ms), 9 ms at 100,000 (3.3 ms)
and 100 ms at a million (4 ms; p50, benchmarks/README.md), while the approximate index must be built, which
only pays off for larger catalogues."""

CONNECTIVITY = 32
"""Neighbours per node of the HNSW graph ("M")."""
EXPANSION_ADD = 80
"""Search depth while inserting ("efConstruction")."""
EXPANSION_SEARCH = 192
"""Search depth of a query ("ef"): reaches recall@10 >= 0.95 on the benchmark's embeddings up to a million items."""
STORAGE = "f16"
CANDIDATES_FACTOR = 2
"""The approximate index is asked for this many times k candidates (at least k + 10), re-scored exactly, cut to k."""
NEIGHBOURHOOD = CONNECTIVITY
"""Items near a new one whose reachability is checked again after it is added: those whose neighbour lists adding
it may have pruned."""
CHECK_EXPANSION = 16
"""Search depth of the reachability check's first pass: 0.17 ms a query against 1.4 ms at `EXPANSION_SEARCH` (30,000
items of 512 numbers, 2 threads); an item missed there is searched for again at the full depth."""
MAX_DIM = 65_536
"""The largest embedding a saved index may declare: far above any backbone's, and a bound before any allocation."""


def candidate_count(k: int) -> int:
    """How many candidates a search for the `k` most similar items asks the approximate index for."""
    return max(k * CANDIDATES_FACTOR, k + 10)


SELF_CHECK = candidate_count(1)
"""An item is reachable when a search with its own vector finds it among this many candidates: the fewest any query
asks for, so `similar` of an item's own vector returns it whatever k."""


def resolve_kind(requested: str, count: int) -> str:
    """'exact' or 'ann' for `requested` ('auto', 'exact' or 'ann') at a catalogue of `count` items."""
    if requested == "auto":
        return "ann" if count >= ANN_MIN_ITEMS else "exact"
    return requested


def sound_rows(matrix: np.ndarray) -> np.ndarray:
    """Which rows of a float32 matrix of stored embeddings can be indexed: finite numbers, not all zero (a unit
    embedding never is). Anything else is damaged bytes, never handed to the vector library."""
    return np.isfinite(matrix).all(axis=1) & (np.abs(matrix).sum(axis=1) > 0)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class VectorIndex(ABC):
    """Item ids and their unit embeddings; `search` gives the ids most cosine-similar to a query, best first."""

    kind = ""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add items, or replace the vectors of ids already present."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Forget these ids (ids not present are ignored)."""

    @abstractmethod
    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosine similarities) of up to `k` items, best first."""

    @abstractmethod
    def to_bytes(self) -> bytes: ...

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "count": len(self)}


class ExactIndex(VectorIndex):
    """Every embedding in one float32 matrix; a query is one matrix-vector product."""

    kind = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.ids = np.empty(0, dtype=np.int64)
        self.matrix = np.empty((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.remove(ids)
        self.ids = np.concatenate([self.ids, ids])
        self.matrix = np.concatenate([self.matrix, unit(vectors).reshape(len(ids), self.dim)])

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self.ids, self.matrix = self.ids[keep], self.matrix[keep]

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.ids))
        if k < 1:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = self.matrix @ unit(query)
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.lexsort((self.ids[best], -scores[best]))]
        return self.ids[best], scores[best]

    def to_bytes(self) -> bytes:
        order = np.argsort(self.ids)
        return self.ids[order].tobytes() + self.matrix[order].tobytes()

    @classmethod
    def from_bytes(cls, dim: int, data: bytes) -> ExactIndex:
        count = len(data) // (8 + 4 * dim)
        index = cls(dim)
        index.ids = np.frombuffer(data[: 8 * count], dtype=np.int64).copy()
        index.matrix = np.frombuffer(data[8 * count :], dtype=np.float32).reshape(count, dim).copy()
        return index


class ApproximateIndex(VectorIndex):
    """An HNSW graph (usearch) over 16-bit float vectors with cosine distance, keyed by item id."""

    kind = "ann"

    def __init__(self, dim: int, threads: int = 0, index: Any = None, spilled: np.ndarray | None = None) -> None:
        from usearch.index import Index

        super().__init__(dim)
        self.threads = threads
        self.index = index or Index(ndim=dim, metric="cos", dtype=STORAGE, connectivity=CONNECTIVITY,
                                    expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)  # fmt: skip
        self.index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # a setter mypy does not see
        self.spilled = ExactIndex(dim)
        """Items the graph does not lead to from their own vector, searched exactly beside it (usually none)."""
        if spilled is not None and len(spilled):
            self.spilled.upsert(spilled, self._stored(np.asarray(spilled, dtype=np.uint64)))
        self._lock = threading.Lock()  # usearch's add and remove must not overlap a search

    def __len__(self) -> int:
        return len(self.index)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace items, then make sure each is reachable from its own vector (`_keep_reachable`)."""
        keys = np.asarray(ids, dtype=np.uint64)
        if len(keys) == 0:
            return
        vectors = unit(vectors).reshape(len(keys), self.dim)
        with self._lock:
            self._drop_present(keys)
            self.spilled.remove(keys.astype(np.int64))
            self.index.add(keys, vectors, threads=self.threads)
            self._keep_reachable(keys, vectors)

    def _keep_reachable(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """HNSW graphs built on several threads, or over near-identical vectors, can leave a node that no search
        reaches, so `similar` of that very item would never return it; and adding a node prunes its neighbours'
        links, which can cut off an older node nearby. So after every addition the items just added and their
        neighbourhood (every item, when the addition is a large share of the graph) are searched for with their own
        vectors; one not found is inserted again, alone, and one still not found is kept in `spilled`, an exact
        index searched beside the graph."""
        if len(keys) * NEIGHBOURHOOD >= len(self.index):
            suspects = np.asarray(self.index.keys, dtype=np.uint64)
        else:
            nearby = self._search(vectors, NEIGHBOURHOOD, NEIGHBOURHOOD)
            suspects = np.unique(np.concatenate([keys, *nearby]).astype(np.uint64))
        lost = self._unreachable(suspects, self._stored(suspects))
        if len(lost):
            lost_vectors = self._stored(lost)
            self.index.remove(lost)
            self.index.add(lost, lost_vectors, threads=1)
            still = self._unreachable(lost, lost_vectors)
            if len(still):
                self.spilled.upsert(still.astype(np.int64), lost_vectors[np.isin(lost, still)])

    def _unreachable(self, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Those of `keys` a search with their own vector does not find among `SELF_CHECK` candidates: first at a
        shallow depth (eight times cheaper; nearly every item is found there), then, for the rest, at the depth
        queries use."""
        missed = np.ones(len(keys), dtype=bool)
        for depth in (CHECK_EXPANSION, EXPANSION_SEARCH):
            found = self._search(vectors[missed], min(SELF_CHECK, len(self.index)), depth)
            missed[missed] = [key not in row for key, row in zip(keys[missed], found, strict=True)]
            if not missed.any():
                break
        return keys[missed]

    def _search(self, vectors: np.ndarray, count: int, depth: int) -> list[np.ndarray]:
        """The keys found for each of `vectors` at search depth `depth`; the caller holds the lock."""
        if len(vectors) == 0:
            return []
        self.index.expansion_search = depth  # type: ignore[misc]  # a setter mypy does not see
        try:
            found = self.index.search(vectors, count, threads=self.threads)
        finally:
            self.index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]
        keys = np.asarray(found.keys).reshape(len(vectors), -1)
        # One query gives usearch's `Matches` (no `counts`), several its `BatchMatches`.
        counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1)
        return [row[:n] for row, n in zip(keys, counts, strict=True)]

    def remove(self, ids: np.ndarray) -> None:
        keys = np.asarray(ids, dtype=np.uint64)
        if len(keys) == 0:
            return
        with self._lock:
            self._drop_present(keys)
            self.spilled.remove(keys.astype(np.int64))

    def _stored(self, keys: np.ndarray) -> np.ndarray:
        """The graph's own (16-bit) vectors of `keys`, as float32 rows."""
        if len(keys) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        stored: Any = self.index.get(np.asarray(keys, dtype=np.uint64), dtype="f32")  # one array per key
        return np.stack([np.asarray(vector, dtype=np.float32) for vector in stored]).reshape(len(keys), self.dim)

    def _drop_present(self, keys: np.ndarray) -> None:
        """Remove those of `keys` the graph holds; the caller holds the lock."""
        present = np.asarray(self.index.contains(keys), dtype=bool).reshape(-1)
        if present.any():
            self.index.remove(keys[present])

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `k` items from the graph and the spilled items together, best first."""
        k = min(k, len(self))
        if k < 1:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with self._lock:
            matches = self.index.search(unit(query), k, threads=1)
            ids = np.asarray(matches.keys, dtype=np.int64)
            scores = 1.0 - np.asarray(matches.distances, dtype=np.float32)
            if len(self.spilled):
                extra_ids, extra_scores = self.spilled.search(query, k)
                fresh = ~np.isin(extra_ids, ids)
                ids = np.concatenate([ids, extra_ids[fresh]])
                scores = np.concatenate([scores, extra_scores[fresh]])
                best = np.lexsort((ids, -scores))[:k]
                ids, scores = ids[best], scores[best]
        return ids, scores

    def to_bytes(self) -> bytes:
        with self._lock:
            saved = self.index.save()
        assert saved is not None  # save() without a path returns the bytes
        return bytes(saved)

    @classmethod
    def from_bytes(cls, dim: int, data: bytes, spilled: np.ndarray | None = None) -> ApproximateIndex:
        from usearch.index import Index

        return cls(dim, index=Index.restore(bytearray(data)), spilled=spilled)

    def describe(self) -> dict[str, Any]:
        from usearch import __version__

        return {**super().describe(), "library": "usearch", "library_version": __version__, "storage": STORAGE,
                "connectivity": CONNECTIVITY, "spilled": [int(i) for i in np.sort(self.spilled.ids)]}  # fmt: skip


def create_index(kind: str, dim: int, threads: int = 0) -> VectorIndex:
    return ApproximateIndex(dim, threads=threads) if kind == "ann" else ExactIndex(dim)


def index_from_bytes(description: dict[str, Any], data: bytes) -> VectorIndex | None:
    """A saved index, or None when it was saved in a form this version does not read.

    The bytes must have been checked first (`catalog.blobs.verify`): usearch reads them as they are, and damaged
    bytes can crash the process rather than raise.
    """
    from usearch import __version__

    dim = description.get("dim")
    if not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        return None
    if description.get("kind") == "exact":
        return ExactIndex.from_bytes(dim, data) if len(data) % (8 + 4 * dim) == 0 else None
    if (description.get("kind") == "ann" and description.get("library") == "usearch"
            and str(description.get("library_version", "")).split(".")[0] == __version__.split(".")[0]):  # fmt: skip
        spilled = np.asarray(description.get("spilled", []), dtype=np.int64)
        return ApproximateIndex.from_bytes(dim, data, spilled=spilled)
    return None
