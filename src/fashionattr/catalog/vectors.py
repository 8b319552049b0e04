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


def resolve_kind(requested: str, count: int) -> str:
    """'exact' or 'ann' for `requested` ('auto', 'exact' or 'ann') at a catalogue of `count` items."""
    if requested == "auto":
        return "ann" if count >= ANN_MIN_ITEMS else "exact"
    return requested


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

    def __init__(self, dim: int, threads: int = 0, index: Any = None) -> None:
        from usearch.index import Index

        super().__init__(dim)
        self.threads = threads
        self.index = index or Index(ndim=dim, metric="cos", dtype=STORAGE, connectivity=CONNECTIVITY,
                                    expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)  # fmt: skip
        self.index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # a setter mypy does not see
        self._lock = threading.Lock()  # usearch's add and remove must not overlap a search

    def __len__(self) -> int:
        return len(self.index)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(ids, dtype=np.uint64)
        if len(keys) == 0:
            return
        with self._lock:
            self._drop_present(keys)
            self.index.add(keys, unit(vectors).reshape(len(keys), self.dim), threads=self.threads)

    def remove(self, ids: np.ndarray) -> None:
        keys = np.asarray(ids, dtype=np.uint64)
        if len(keys) == 0:
            return
        with self._lock:
            self._drop_present(keys)

    def _drop_present(self, keys: np.ndarray) -> None:
        """Remove those of `keys` the graph holds; the caller holds the lock."""
        present = np.asarray(self.index.contains(keys), dtype=bool).reshape(-1)
        if present.any():
            self.index.remove(keys[present])

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k < 1:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with self._lock:
            matches = self.index.search(unit(query), k, threads=1)
        return np.asarray(matches.keys, dtype=np.int64), 1.0 - np.asarray(matches.distances, dtype=np.float32)

    def to_bytes(self) -> bytes:
        with self._lock:
            saved = self.index.save()
        assert saved is not None  # save() without a path returns the bytes
        return bytes(saved)

    @classmethod
    def from_bytes(cls, dim: int, data: bytes) -> ApproximateIndex:
        from usearch.index import Index

        return cls(dim, index=Index.restore(bytearray(data)))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "library": "usearch", "storage": STORAGE, "connectivity": CONNECTIVITY}


def create_index(kind: str, dim: int, threads: int = 0) -> VectorIndex:
    return ApproximateIndex(dim, threads=threads) if kind == "ann" else ExactIndex(dim)


def index_from_bytes(description: dict[str, Any], data: bytes) -> VectorIndex | None:
    """A saved index, or None when it was saved in a form this version does not read."""
    dim = int(description.get("dim", 0))
    if description.get("kind") == "exact":
        return ExactIndex.from_bytes(dim, data)
    if description.get("kind") == "ann" and description.get("library") == "usearch":
        return ApproximateIndex.from_bytes(dim, data)
    return None
