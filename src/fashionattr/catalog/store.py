"""The catalogue's tables and every SQL statement that reads or writes them, for every storage backend.

A database is a catalogue when its `fashionattr_catalog` table carries the format marker; anything else that
already holds tables belongs to another program and is refused before a single byte is written. Every write
transaction first bumps `catalog_state.generation` (in PostgreSQL that row lock also puts concurrent writers one
after another) and stamps the rows it changes with it; removed items leave a tombstone with theirs. A similarity
index that remembers the generation it reflects can therefore catch up by reading only what changed since.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.catalog.backends import Database, backend_for
from fashionattr.catalog.blobs import seal
from fashionattr.catalog.layout import TagLayout, as_float32
from fashionattr.errors import UserError

MARKER_TABLE = "fashionattr_catalog"
KIND = "fashionattr-catalog"
FORMAT_VERSION = "3"
"""Bumped when the tables change shape; another version is refused with a message rather than misread."""
READABLE_FORMATS = ("2", FORMAT_VERSION)
"""Formats this version opens. Format 2 (no `applies` per tag, no packed tag rows) is read as it is, every tag
applying; `catalog index` upgrades it in place (`_upgrade_from_2`), re-tagging nothing."""

TABLES = """
CREATE TABLE IF NOT EXISTS fashionattr_catalog (key {text_key} PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_state (id INTEGER PRIMARY KEY, generation BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id {id},
    path {text_key} NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime {real} NOT NULL,
    embedding {blob} NOT NULL,
    indexed_at {real} NOT NULL,
    generation BIGINT NOT NULL,
    tag_row {blob}
);
CREATE INDEX IF NOT EXISTS items_by_generation ON items (generation);
CREATE TABLE IF NOT EXISTS tags (
    item_id BIGINT NOT NULL REFERENCES items(id),
    attribute {text_key} NOT NULL,
    value {text_key} NOT NULL,
    confidence {real} NOT NULL,
    probabilities TEXT NOT NULL,
    applies INTEGER NOT NULL DEFAULT 1,
    applicability {real} NOT NULL DEFAULT 1,
    PRIMARY KEY (item_id, attribute)
);
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (attribute, value, confidence);
CREATE TABLE IF NOT EXISTS errors (
    path {text_key} PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime {real} NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS removed_items (item_id BIGINT PRIMARY KEY, generation BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS removed_by_generation ON removed_items (generation);
CREATE TABLE IF NOT EXISTS vector_index (part INTEGER PRIMARY KEY, data {blob} NOT NULL);
"""

ITEM_COLUMNS = "i.id, i.path, i.sha256, i.size"
TAG_COLUMNS = ("item_id", "attribute", "value", "confidence", "probabilities", "applies", "applicability")
UPGRADE_ITEMS = 20_000
"""Items whose packed tag rows one step of the format 2 -> 3 upgrade computes (bounds its memory)."""
ROWS_PER_STATEMENT = 200
"""Items upserted by one multi-row INSERT: one round trip for many rows, far below both databases' limits."""
VECTOR_PART_BYTES = 16 << 20
"""A saved similarity index is stored in parts of this size (SQLite and PostgreSQL both cap one value near 1 GB)."""


@dataclass(frozen=True)
class ItemRow:
    """What one tagged file was when it was written: its content hash, size, time and embedding bytes."""

    path: str
    sha256: str
    size: int
    mtime: float
    embedding: bytes


@dataclass(frozen=True)
class TagRow:
    """One attribute's answer for an item: the head's top class and its probability, and whether it applies.

    `value` is the head's top class even where the tag does not apply (`applies` False), as the probabilities are
    kept; readers show no value there, and facets and search never count or match it.
    """

    attribute: str
    value: str
    confidence: float
    probabilities: str
    applies: bool = True
    applicability: float = 1.0


@dataclass(frozen=True)
class Changes:
    """What changed after a generation: items added or re-written (id and one of their columns), and ids of items
    gone."""

    generation: int
    upserted: list[tuple[int, bytes]]
    removed: list[int]


@dataclass(frozen=True)
class KnownItem:
    """What the catalogue recorded of a tagged file: its content hash, and the size and time it had then."""

    sha256: str
    size: int
    mtime: float
    indexed_at: float


def open_store(db: str | Path, write: bool = False) -> CatalogStore:
    """The catalogue at `db` (a file path, a postgresql:// URL, or a location an installed backend claims),
    identified before anything is written.

    Read-only (`write=False`) never creates or changes anything: a missing, empty or foreign database is a
    `UserError`. For writing, a missing or empty database becomes a new catalogue; a foreign one is refused.
    """
    tables = _Tables()
    store = CatalogStore(backend_for(db).open(db, write, tables))
    store.format = tables.format
    return store


class _Tables:
    """The store's part of a backend's opening (`Tables`): identification and set-up, remembering the format found."""

    def __init__(self) -> None:
        self.format = FORMAT_VERSION

    def identify(self, database: Database, allow_new: bool) -> None:
        found = CatalogStore(database)
        found.identify(allow_new)
        self.format = found.format

    def create(self, database: Database) -> None:
        store = CatalogStore(database)
        store.create_tables()
        self.format = store.format


class CatalogStore:
    """All SQL of the catalogue over one `Database`: identification, the indexer's writes, the readers' queries."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.format = FORMAT_VERSION
        """The format of the catalogue's tables, found by `identify` (a reader may open format 2 as it is)."""
        self._layout: tuple[str, TagLayout] | None = None

    @property
    def name(self) -> str:
        return self.db.name

    def close(self) -> None:
        self.db.close()

    # -- identification and set-up ------------------------------------------------------------------------------

    def identify(self, allow_new: bool) -> bool:
        """True for a database with no tables (a new catalogue may go there), False for a catalogue of this
        version; anything else raises a `UserError` naming what was found."""
        tables = self.db.table_names()
        if MARKER_TABLE in tables:
            meta = dict(self.db.execute(f"SELECT key, value FROM {MARKER_TABLE}"))
            if meta.get("kind") != KIND:
                raise UserError(f"{self.name}: not a fashionattr catalogue (its {MARKER_TABLE} table is not ours)")
            if meta.get("format") not in READABLE_FORMATS:
                raise UserError(f"{self.name}: a fashionattr catalogue of format {meta.get('format')}, this version "
                                f"reads format {FORMAT_VERSION}; index into a new --catalog")  # fmt: skip
            self.format = str(meta["format"])
            return False
        if not tables:
            if allow_new:
                return True
            raise UserError(f"{self.name}: no such catalogue (the database is empty); make one with "
                            "`fashionattr catalog index MODEL DIR --catalog ...`")  # fmt: skip
        old: dict[str, str] = {}
        if "meta" in tables and "items" in tables:
            with contextlib.suppress(Exception):  # another program's `meta` table may have any shape
                old = dict(self.db.execute("SELECT key, value FROM meta"))
        if "model_fingerprint" in old:
            raise UserError(f"{self.name}: a catalogue made by an older fashionattr (format {old.get('format')}); "
                            "it is left untouched, index the folder into a new --catalog")  # fmt: skip
        shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        raise UserError(f"{self.name}: not a fashionattr catalogue: it holds other tables ({shown}); it is left "
                        "untouched, give a new or empty database as --catalog")  # fmt: skip

    def create_tables(self) -> None:
        """Make a new catalogue's tables, or check an existing one; one process at a time (setup lock)."""
        with self.db.transaction():
            self.db.lock_for_setup()
            if not self.identify(allow_new=True):
                if self.format == "2":
                    self._upgrade_from_2()
                return
            for statement in TABLES.format(**self.db.types).split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO catalog_state (id, generation) VALUES (1, 0)")
            self._set_meta({"kind": KIND, "format": FORMAT_VERSION})

    def _upgrade_from_2(self) -> None:
        """Format 2 -> 3 inside the set-up transaction: every stored tag applies (format 2 had no such decision),
        each item gets its packed tag row from its tag rows, and the saved similarity index, which carries no
        checksum, is dropped (the indexer saves a checked one at the end of its run). No image is tagged again."""
        types = self.db.types
        self.db.execute("ALTER TABLE tags ADD COLUMN applies INTEGER NOT NULL DEFAULT 1")
        self.db.execute(f"ALTER TABLE tags ADD COLUMN applicability {types['real']} NOT NULL DEFAULT 1")
        self.db.execute(f"ALTER TABLE items ADD COLUMN tag_row {types['blob']}")
        self.format = FORMAT_VERSION
        layout = self.layout()
        if layout is not None:
            ids = [int(i) for (i,) in self.db.execute("SELECT id FROM items ORDER BY id")]
            for start in range(0, len(ids), UPGRADE_ITEMS):
                part = ids[start : start + UPGRADE_ITEMS]
                rows = self._packed_from_tags(layout, "t.item_id BETWEEN ? AND ?", [part[0], part[-1]])
                self.db.executemany("UPDATE items SET tag_row = ? WHERE id = ?", [(row, i) for i, row in rows])
        self.db.execute("DELETE FROM vector_index")
        self.db.execute(f"DELETE FROM {MARKER_TABLE} WHERE key = 'vector_index'")
        self._set_meta({"format": FORMAT_VERSION})

    # -- metadata and generation ---------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute(f"SELECT key, value FROM {MARKER_TABLE}"))

    def layout(self) -> TagLayout | None:
        """What packed tag rows mean: the attributes and classes of the schema the indexer recorded (None before
        the first `catalog index` got that far)."""
        rows = self.db.execute(f"SELECT value FROM {MARKER_TABLE} WHERE key = 'schema'")
        if not rows:
            return None
        if self._layout is None or self._layout[0] != rows[0][0]:
            from fashionattr.schema import Schema

            schema = Schema.from_dict(json.loads(rows[0][0]), source=f"{self.name} (schema)")
            self._layout = (rows[0][0], TagLayout.from_schema(schema))
        return self._layout[1]

    def _set_meta(self, values: Mapping[str, str]) -> None:
        self.db.executemany(f"INSERT INTO {MARKER_TABLE} (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", list(values.items()))  # fmt: skip

    def generation(self) -> int:
        return int(self.db.execute("SELECT generation FROM catalog_state WHERE id = 1")[0][0])

    @contextlib.contextmanager
    def writing(self) -> Iterator[int]:
        """A write transaction; yields its generation. Bumping it first serialises writers in PostgreSQL."""
        with self.db.transaction():
            yield int(self.db.execute("UPDATE catalog_state SET generation = generation + 1 WHERE id = 1 "
                                      "RETURNING generation")[0][0])  # fmt: skip

    def analyze(self) -> None:
        """Refresh the query planner's statistics after many rows changed (both databases plan joins by them)."""
        with self.db.lock:
            self.db.execute("ANALYZE")

    def set_meta(self, values: Mapping[str, str]) -> None:
        with self.writing():
            self._set_meta(values)

    # -- the indexer's writes ------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every item and error (the model changed): all items leave tombstones."""
        with self.writing() as generation:
            self._remove_items("TRUE", [], generation)
            self.db.execute("DELETE FROM errors")

    def _remove_items(self, condition: str, params: Sequence[Any], generation: int) -> None:
        self.db.execute(f"INSERT INTO removed_items (item_id, generation) SELECT id, ? FROM items WHERE {condition} "
                        "ON CONFLICT (item_id) DO UPDATE SET generation = excluded.generation",
                        [generation, *params])  # fmt: skip
        self.db.execute(f"DELETE FROM tags WHERE item_id IN (SELECT id FROM items WHERE {condition})", params)
        self.db.execute(f"DELETE FROM items WHERE {condition}", params)

    def known_items(self) -> dict[str, KnownItem]:
        """path -> what was recorded of every tagged item (content hash, size, modification time, when tagged)."""
        rows = self.db.execute("SELECT path, sha256, size, mtime, indexed_at FROM items")
        return {path: KnownItem(sha, int(size), float(mtime), float(at)) for path, sha, size, mtime, at in rows}

    def damaged_embeddings(self) -> set[str]:
        """Paths of items whose stored embedding is not `embedding_dim` finite float32 numbers (read in parts)."""
        from fashionattr.catalog.vectors import sound_rows

        dim = int(self.meta().get("embedding_dim") or 0)
        damaged: set[str] = set()
        if dim < 1:
            return damaged  # nothing tagged yet, so nothing to judge by
        last = -1
        while True:
            rows = self.db.execute("SELECT id, path, embedding FROM items WHERE id > ? ORDER BY id LIMIT ?",
                                   [last, UPGRADE_ITEMS])  # fmt: skip
            for _, path, embedding in rows:
                data = bytes(embedding)
                if len(data) != 4 * dim or not sound_rows(np.frombuffer(data, dtype=np.float32).reshape(1, dim))[0]:
                    damaged.add(path)
            if not rows:
                return damaged
            last = int(rows[-1][0])

    def known_errors(self) -> dict[str, str]:
        """path -> content hash of every file recorded as unreadable."""
        return dict(self.db.execute("SELECT path, sha256 FROM errors"))

    def remove_paths(self, items: Iterable[str], errors: Iterable[str]) -> None:
        """Drop the items and error entries of files that are gone, in one transaction."""
        items, errors = list(items), list(errors)
        if not items and not errors:
            return
        with self.writing() as generation:
            for path in items:
                self._remove_items("path = ?", [path], generation)
            self.db.executemany("DELETE FROM errors WHERE path = ?", [(p,) for p in errors])

    def touch(self, stats: Sequence[tuple[int, float, float, str]]) -> None:
        """Record (size, mtime, when the content was found unchanged) of files whose content hash matched, by path.

        No item's tags or embedding change, so the generation stays: readers have nothing to catch up on."""
        if stats:
            with self.db.transaction():
                self.db.executemany("UPDATE items SET size = ?, mtime = ?, indexed_at = ? WHERE path = ?", stats)

    def write_batch(self, tagged: Sequence[tuple[ItemRow, Sequence[TagRow]]],
                    failed: Sequence[tuple[ItemRow, str]], now: float) -> None:  # fmt: skip
        """One batch of results in one transaction: tagged files become items, failed ones error entries."""
        with self.writing() as generation:
            layout = self.layout() if tagged else None
            if tagged and layout is None:
                raise RuntimeError("tags written before the catalogue's schema was recorded (set_meta 'schema')")
            for row, reason in failed:
                self._remove_items("path = ?", [row.path], generation)
                self.db.execute("INSERT INTO errors (path, sha256, size, mtime, reason) VALUES (?, ?, ?, ?, ?) "
                                "ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                                "mtime = excluded.mtime, reason = excluded.reason",
                                [row.path, row.sha256, row.size, row.mtime, reason])  # fmt: skip
            if not tagged:
                return
            paths = [row.path for row, _ in tagged]
            self._in_values("DELETE FROM errors WHERE path IN ({})", paths)
            assert layout is not None
            # Both the tag rows and the packed row hold the confidence as a float32 number, so facets counted from
            # either agree at any threshold.
            tagged = [(row, [replace(t, confidence=as_float32(t.confidence)) for t in tags]) for row, tags in tagged]
            ids: dict[str, int] = {}
            for start in range(0, len(tagged), ROWS_PER_STATEMENT):
                part = [(row.path, row.sha256, row.size, row.mtime, row.embedding, now, generation,
                         layout.encode((t.attribute, t.value, t.confidence, t.applies) for t in tags))
                        for row, tags in tagged[start : start + ROWS_PER_STATEMENT]]  # fmt: skip
                returned = self.db.execute(
                    "INSERT INTO items (path, sha256, size, mtime, embedding, indexed_at, generation, tag_row) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
                    + " ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                    "mtime = excluded.mtime, embedding = excluded.embedding, indexed_at = excluded.indexed_at, "
                    "generation = excluded.generation, tag_row = excluded.tag_row RETURNING id, path",
                    [value for row in part for value in row],
                )
                ids.update((path, int(item_id)) for item_id, path in returned)
            self._in_values("DELETE FROM tags WHERE item_id IN ({})", list(ids.values()))
            self.db.insert_rows("tags", TAG_COLUMNS,
                                [(ids[row.path], t.attribute, t.value, t.confidence, t.probabilities, int(t.applies),
                                  float(t.applicability)) for row, tags in tagged for t in tags])  # fmt: skip

    # -- the readers' queries ------------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items")[0][0])

    def errors(self) -> list[tuple[str, str]]:
        return [(p, r) for p, r in self.db.execute("SELECT path, reason FROM errors ORDER BY path")]

    def _applies(self, alias: str) -> str:
        """SQL true for a tag row that applies (every tag of a format 2 catalogue does)."""
        return f"{alias}.applies = 1" if self.format != "2" else "TRUE"

    def _filter_joins(
        self, filters: Mapping[str, str], min_confidence: float, item_id: str = "i.id"
    ) -> tuple[str, list[Any]]:
        """JOINs keeping the rows whose `item_id` carries every filtered tag, applying, at or above `min_confidence`."""
        joins, params = [], []
        for n, (attribute, value) in enumerate(sorted(filters.items())):
            joins.append(f"JOIN tags f{n} ON f{n}.item_id = {item_id} AND f{n}.attribute = ? AND f{n}.value = ? "
                         f"AND f{n}.confidence >= ? AND {self._applies(f'f{n}')}")  # fmt: skip
            params += [attribute, value, min_confidence]
        return " ".join(joins), params

    def list_by_path(self, limit: int, offset: int) -> list[tuple[Any, ...]]:
        """One page of every item's rows (id, path, sha256, size), by path."""
        return self.db.execute(f"SELECT {ITEM_COLUMNS} FROM items i ORDER BY i.path LIMIT ? OFFSET ?",
                               [max(0, limit), max(0, offset)])  # fmt: skip

    def search(self, filters: Mapping[str, str], min_confidence: float, limit: int,
               offset: int) -> tuple[int, list[tuple[Any, ...]]]:  # fmt: skip
        """(how many match, one page of item rows) carrying every filtered tag, by joins over the tag rows.

        The order of `FacetIndex.search`: the least confident filtered tag first decides, then the lower id. Readers
        answer from the facet index; this is the full count it is tested and measured against.
        """
        joins, params = self._filter_joins(filters, min_confidence)
        total = self.db.execute(f"SELECT COUNT(*) FROM items i {joins}", params)[0][0]
        if not filters:
            order = "i.path"
        elif len(filters) == 1:
            order = "f0.confidence DESC, i.id"
        else:
            scores = ", ".join(f"f{n}.confidence" for n in range(len(filters)))
            order = f"{self.db.least}({scores}) DESC, i.id"
        rows = self.db.execute(f"SELECT {ITEM_COLUMNS} FROM items i {joins} ORDER BY {order} LIMIT ? OFFSET ?",
                               [*params, max(0, limit), max(0, offset)])  # fmt: skip
        return int(total), rows

    def value_counts(self, filters: Mapping[str, str], min_confidence: float,
                     attribute: str | None = None) -> dict[str, dict[str, int]]:  # fmt: skip
        """attribute -> value -> how many items matching `filters` carry that value, applying, at `min_confidence` or
        more; of one `attribute`, or of every attribute at once (one GROUP BY over the tag rows).

        Readers count from the facet index; this full count is what it is tested and measured against.
        """
        joins, params = self._filter_joins(filters, min_confidence, item_id="t.item_id")
        only = "t.attribute = ? AND " if attribute is not None else ""
        rows = self.db.execute(f"SELECT t.attribute, t.value, COUNT(*) FROM tags t {joins} WHERE {only}"
                               f"t.confidence >= ? AND {self._applies('t')} GROUP BY t.attribute, t.value",
                               [*params, *([attribute] if attribute is not None else []), min_confidence])  # fmt: skip
        counts: dict[str, dict[str, int]] = {}
        for name, value, count in rows:
            counts.setdefault(name, {})[value] = int(count)
        return counts

    def rows_by_id(self, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """Item rows (id, path, sha256, size) of those `ids` still in the catalogue, in no particular order."""
        return self._in("SELECT i.id, i.path, i.sha256, i.size FROM items i WHERE i.id IN ({})", ids)

    def rows_by_path(self, path: str) -> list[tuple[Any, ...]]:
        return self.db.execute(f"SELECT {ITEM_COLUMNS} FROM items i WHERE i.path = ?", [path])

    def tags_of(self, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """(item_id, attribute, value, confidence, probabilities JSON, applies, applicability) of every tag of `ids`."""
        applies = "applies, applicability" if self.format != "2" else "1, 1.0"
        return self._in(f"SELECT item_id, attribute, value, confidence, probabilities, {applies} FROM tags "
                        "WHERE item_id IN ({})", ids)  # fmt: skip

    def embeddings_of(self, ids: Sequence[int]) -> list[tuple[int, bytes]]:
        return [(int(i), bytes(e)) for i, e in self._in("SELECT id, embedding FROM items WHERE id IN ({})", ids)]

    def path_of(self, item_id: int) -> str | None:
        rows = self.db.execute("SELECT path FROM items WHERE id = ?", [item_id])
        return rows[0][0] if rows else None

    def _in(self, sql: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        return self._in_values(sql, [int(i) for i in ids])

    def _in_values(self, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """`sql` with its `IN ({})` filled with placeholders for `values`, run in parts of 500."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(values), 500):
            part = list(values[start : start + 500])
            rows += self.db.execute(sql.format(", ".join("?" * len(part))), part)
        return rows

    def changes_since(self, generation: int | None) -> Changes:
        """Every item (generation None) or what changed after `generation`, read in one consistent snapshot."""
        with self.db.transaction(write=False):
            current = self.generation()
            if generation is None:
                upserted = self.db.execute("SELECT id, embedding FROM items ORDER BY id")
                removed: list[tuple[Any, ...]] = []
            else:
                upserted = self.db.execute("SELECT id, embedding FROM items WHERE generation > ? ORDER BY id",
                                           [generation])  # fmt: skip
                removed = self.db.execute("SELECT item_id FROM removed_items WHERE generation > ?", [generation])
        return Changes(current, [(int(i), bytes(e)) for i, e in upserted], [int(i) for (i,) in removed])

    def tag_changes_since(self, generation: int | None, layout: TagLayout) -> Changes:
        """Packed tag rows of every item (generation None) or of those written after `generation`, and the ids
        removed since, in one consistent snapshot. A format 2 catalogue has none stored: they are packed from its
        tag rows here."""
        with self.db.transaction(write=False):
            current = self.generation()
            after = "" if generation is None else "WHERE i.generation > ?"
            params = [] if generation is None else [generation]
            if self.format == "2":
                upserted = self._packed_from_tags(layout, f"t.item_id IN (SELECT i.id FROM items i {after})", params)
            else:
                rows = self.db.execute(f"SELECT i.id, i.tag_row FROM items i {after} ORDER BY i.id", params)
                upserted = [(int(i), bytes(row) if row is not None else b"") for i, row in rows]
            removed: list[tuple[Any, ...]] = []
            if generation is not None:
                removed = self.db.execute("SELECT item_id FROM removed_items WHERE generation > ?", [generation])
        return Changes(current, upserted, [int(i) for (i,) in removed])

    def packed_rows(self, ids: Sequence[int], layout: TagLayout) -> list[tuple[int, bytes]]:
        """(item id, packed tag row) of `ids`, packed from their tag rows (when a stored one is found damaged)."""
        rows: list[tuple[int, bytes]] = []
        for start in range(0, len(ids), 500):
            part = [int(i) for i in ids[start : start + 500]]
            rows += self._packed_from_tags(layout, f"t.item_id IN ({', '.join('?' * len(part))})", part)
        return rows

    def _packed_from_tags(self, layout: TagLayout, condition: str, params: Sequence[Any]) -> list[tuple[int, bytes]]:
        """(item id, packed tag row) built from the tag rows matching `condition` (on alias t)."""
        applies = "t.applies" if self.format != "2" else "1"
        rows = self.db.execute(f"SELECT t.item_id, t.attribute, t.value, t.confidence, {applies} FROM tags t "
                               f"WHERE {condition} ORDER BY t.item_id", params)  # fmt: skip
        return [(int(item_id), layout.encode((a, v, as_float32(c), bool(ok)) for _, a, v, c, ok in tags))
                for item_id, tags in itertools.groupby(rows, key=lambda row: row[0])]  # fmt: skip

    # -- the saved similarity index -------------------------------------------------------------------------------

    def saved_vector_index(self) -> tuple[Any, bytes] | None:
        """(description, bytes) of the similarity index saved by the last indexer, if any, read in one snapshot.

        Nothing here is checked: the description may be anything (None when it is not JSON); the reader verifies
        both with `blobs.verify` before the bytes reach the vector library.
        """
        if not self.meta().get("vector_index"):
            return None
        with self.db.transaction(write=False):
            parts = self.db.execute("SELECT data FROM vector_index ORDER BY part")
            described = self.meta().get("vector_index") or "null"
        try:
            description = json.loads(described)
        except ValueError:
            description = None
        return description, b"".join(bytes(p) for (p,) in parts)

    def save_vector_index(self, description: Mapping[str, Any], data: bytes) -> None:
        """Replace the saved similarity index, sealed with its checksum (a reader applies later changes itself)."""
        with self.writing():
            self.db.execute("DELETE FROM vector_index")
            self.db.executemany("INSERT INTO vector_index (part, data) VALUES (?, ?)",
                                [(n, data[start : start + VECTOR_PART_BYTES]) for n, start in
                                 enumerate(range(0, len(data), VECTOR_PART_BYTES))])  # fmt: skip
            self._set_meta({"vector_index": json.dumps(seal(description, data))})

    def drop_vector_index(self) -> None:
        if self.meta().get("vector_index"):
            with self.writing():
                self.db.execute("DELETE FROM vector_index")
                self.db.execute(f"DELETE FROM {MARKER_TABLE} WHERE key = 'vector_index'")
