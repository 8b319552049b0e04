"""Browsing a catalogue: tag search with facet counts, single items, and similar garments by embedding.

`Catalog` opens the database read-only and answers from it: facet counts and filtered tag search through the
`FacetIndex`, similar-garment search through a `SimilarityIndex`. Both follow the database's generation, so an item
removed by an indexer is gone from the answers, and one added appears, without reopening anything.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.catalog.facets import FacetCounts, FacetIndex
from fashionattr.catalog.layout import TagLayout
from fashionattr.catalog.similarity import SimilarityIndex
from fashionattr.catalog.store import CatalogStore, open_store
from fashionattr.catalog.vectors import VECTOR_INDEX_KINDS, sound_rows
from fashionattr.errors import UserError
from fashionattr.schema import Schema

Filters = Mapping[str, str]
"""Active tag filters: full attribute name -> class name; an item matches when it has every one."""


@dataclass
class Tag:
    """One attribute's stored answer for an item: its value, or None where the attribute does not apply to the photo
    (a close-up has no skirt length); the head's top probability; and the applicability decision behind it."""

    value: str | None
    confidence: float
    probabilities: dict[str, float] | None = None
    applies: bool = True
    applicability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "applies": self.applies, "applicability": self.applicability,
                               "confidence": self.confidence}  # fmt: skip
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        return out


@dataclass
class CatalogItem:
    """One tagged image; `path` is relative to the catalogue root."""

    id: int
    path: str
    sha256: str
    size: int
    tags: dict[str, Tag] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "sha256": self.sha256, "size": self.size,
                "tags": {name: tag.to_dict() for name, tag in self.tags.items()}}  # fmt: skip


@dataclass
class SearchResult:
    """One page of matching items, best first, and how many match in all."""

    total: int
    items: list[CatalogItem]


class Catalog:
    """Read access to an indexed catalogue (SQLite file or postgresql:// URL); safe to share between threads.

    `vector_index` picks the similarity search: `exact` (cosine over every embedding), `ann` (the approximate
    index), or `auto`: exact below `ANN_MIN_ITEMS` items, approximate above.
    """

    def __init__(self, db: str | Path, vector_index: str = "auto") -> None:
        if vector_index not in VECTOR_INDEX_KINDS:
            raise UserError(f"unknown vector index {vector_index!r}; choose one of: {', '.join(VECTOR_INDEX_KINDS)}")
        self.db = db
        self.store: CatalogStore = open_store(db, write=False)
        meta = self.store.meta()
        if "schema" not in meta:
            self.store.close()
            raise UserError(f"{self.store.name}: the catalogue has not been indexed yet (its first `catalog index` "
                            "did not get past the start); index it again")  # fmt: skip
        self.root = Path(meta["root"])
        self.model = meta["model"]
        self.model_fingerprint = meta["model_fingerprint"]
        self.schema = Schema.from_dict(json.loads(meta["schema"]), source=f"{self.store.name} (schema)")
        self.similarity = SimilarityIndex(self.store, vector_index)
        self.facet_index = FacetIndex(self.store, TagLayout.from_schema(self.schema))

    def close(self) -> None:
        self.store.close()

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def attributes(self) -> list[str]:
        return self.schema.names

    def __len__(self) -> int:
        return self.store.count()

    def errors(self) -> list[tuple[str, str]]:
        return self.store.errors()

    # -- filters --------------------------------------------------------------------------------------------------

    def parse_filters(self, expressions: Iterable[str]) -> dict[str, str]:
        """`attribute=Class` strings (short attribute names, any letter case) -> validated `Filters`."""
        filters: dict[str, str] = {}
        for expression in expressions:
            name, sep, value = expression.partition("=")
            if not sep:
                example = self.schema.attributes[0]
                raise UserError(f"filter {expression!r} should read attribute=value, e.g. "
                                f"{example.short_name}={example.classes[-1]}")  # fmt: skip
            attribute, value = self._resolve(name.strip(), value.strip())
            if filters.get(attribute, value) != value:
                raise UserError(f"{attribute} is filtered twice ({filters[attribute]!r} and {value!r}); "
                                "an item has one value per attribute")  # fmt: skip
            filters[attribute] = value
        return filters

    def _resolve(self, name: str, value: str) -> tuple[str, str]:
        try:
            attribute = self.schema.attribute(name)
        except KeyError:
            known = ", ".join(f"{a.name} ({a.short_name})" for a in self.schema)
            raise UserError(f"unknown attribute {name!r}; the catalogue has: {known}") from None
        for cls in attribute.classes:
            if cls.lower() == value.lower():
                return attribute.name, cls
        raise UserError(f"{attribute.name} has no class {value!r}; its classes are: {', '.join(attribute.classes)}")

    # -- tag search -----------------------------------------------------------------------------------------------

    def search(
        self, filters: Filters | None = None, min_confidence: float = 0.0, limit: int = 50, offset: int = 0
    ) -> SearchResult:
        """Items carrying every filtered tag (applying, at `min_confidence` or more), most confident first (the least
        confident filter decides, ties to the earlier indexed item); without filters every item, by path."""
        filters = dict(filters or {})
        if not filters:  # every item, by path: the database alone answers (no columns to load for a listing)
            return SearchResult(total=self.store.count(), items=self._with_tags(self.store.list_by_path(limit, offset)))
        total, ids = self.facet_index.search(filters, min_confidence, limit, offset)
        rows = {int(r[0]): r for r in self.store.rows_by_id(ids)}
        return SearchResult(total=total, items=self._with_tags([rows[i] for i in ids if i in rows]))

    def facets(self, filters: Filters | None = None, min_confidence: float = 0.0) -> dict[str, dict[str, int]]:
        """For every attribute, how many items would match if its value were added to (or replaced in) `filters`.

        Each attribute's counts apply the *other* attributes' filters only, the usual faceted-search rule, so a
        user can switch a filter's value and see what every alternative would give. Only tags that apply count.
        """
        return self.facet_counts(filters, min_confidence).counts

    def facet_counts(self, filters: Filters | None = None, min_confidence: float = 0.0) -> FacetCounts:
        """`facets` with, per attribute, how many matching items have no value for it, and the matching total."""
        return self.facet_index.counts(dict(filters or {}), min_confidence)

    def no_value_counts(self, filters: Filters | None = None, min_confidence: float = 0.0) -> dict[str, int]:
        """Per attribute, how many items matching the other attributes' filters it does not apply to (a close-up has
        no skirt length): what the catalogue page states beside each facet."""
        return self.facet_counts(filters, min_confidence).not_applicable

    def item(self, key: int | str | Path, probabilities: bool = False) -> CatalogItem | None:
        """An item by id, by its stored path (relative to the root), or by a file path inside the root."""
        if isinstance(key, int):
            rows = self.store.rows_by_id([key])
        else:
            candidates = [] if Path(key).is_absolute() else [Path(key).as_posix()]
            with contextlib.suppress(ValueError, OSError):
                candidates.append(Path(key).resolve().relative_to(self.root.resolve()).as_posix())
            rows = []
            for relative in candidates:
                rows = self.store.rows_by_path(relative)
                if rows:
                    break
        items = self._with_tags(rows, probabilities)
        return items[0] if items else None

    def image_file(self, item_id: int) -> Path | None:
        """The file of an indexed item, only if it still resolves to a regular file inside the root."""
        relative = self.store.path_of(item_id)
        if relative is None:
            return None
        root = self.root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def _with_tags(self, rows: Sequence[tuple[Any, ...]], probabilities: bool = False) -> list[CatalogItem]:
        items = {int(r[0]): CatalogItem(id=int(r[0]), path=r[1], sha256=r[2], size=int(r[3])) for r in rows}
        if not items:
            return []
        order = {name: n for n, name in enumerate(self.schema.names)}
        tag_rows = sorted(self.store.tags_of(list(items)), key=lambda r: order.get(r[1], 0))
        for item_id, attribute, value, confidence, probs, applies, applicability in tag_rows:
            tag = Tag(value if applies else None, float(confidence), json.loads(probs) if probabilities else None,
                      applies=bool(applies), applicability=float(applicability))  # fmt: skip
            items[int(item_id)].tags[attribute] = tag
        return list(items.values())

    # -- similar garments ------------------------------------------------------------------------------------------

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix N x D) of every item, sorted by id."""
        changes = self.store.changes_since(None)
        ids = np.array([i for i, _ in changes.upserted], dtype=np.int64)
        dim = len(changes.upserted[0][1]) // 4 if changes.upserted else 0
        matrix = np.frombuffer(b"".join(e for _, e in changes.upserted), dtype=np.float32).reshape(len(ids), dim)
        return ids, matrix

    def embedding(self, item_id: int) -> np.ndarray | None:
        rows = self.store.embeddings_of([item_id])
        if not rows:
            return None
        data = rows[0][1]
        return np.frombuffer(data[: len(data) - len(data) % 4], dtype=np.float32)

    def similar(self, query: int | str | Path | np.ndarray, k: int = 10) -> list[tuple[CatalogItem, float]]:
        """The `k` items whose embeddings are most cosine-similar to the query's (an item queried is its own first).

        Scores are exact cosine similarities of the stored embeddings, whichever index found the candidates;
        ties go to the lower id.
        """
        vector = self._query_vector(query)
        if k < 1:
            return []
        dim = self.similarity.dim()
        if dim and vector.shape != (dim,):
            raise UserError(f"the query embedding has {vector.size} numbers but the catalogue's have {dim}; "
                            f"embed it with the catalogue's model ({self.model})")  # fmt: skip
        ranked = self.similarity.search(vector, k)
        rows = {int(r[0]): r for r in self.store.rows_by_id([i for i, _ in ranked])}
        ranked = [(i, s) for i, s in ranked if i in rows][:k]  # an item removed a moment ago is never returned
        items = {item.id: item for item in self._with_tags([rows[i] for i, _ in ranked])}
        return [(items[i], score) for i, score in ranked]

    def _query_vector(self, query: int | str | Path | np.ndarray) -> np.ndarray:
        if isinstance(query, np.ndarray):
            return query.astype(np.float32).ravel()
        found = self.item(query)
        if found is None:
            raise UserError(f"{query} is not in the catalogue (root {self.root}); give an indexed path or id, "
                            "or a new image file to embed")  # fmt: skip
        vector = self.embedding(found.id)
        assert vector is not None  # the item was just found
        dim = self.similarity.dim()
        if found.id in self.similarity.damaged or vector.size != dim or not sound_rows(vector.reshape(1, -1))[0]:
            raise UserError(f"{self.name}: the stored embedding of {found.path} is damaged, so it cannot be compared; "
                            "`fashionattr catalog index --rehash` tags it again")  # fmt: skip
        return vector
