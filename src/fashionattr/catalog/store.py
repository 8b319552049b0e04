"""The catalogue's tables and every SQL statement that reads or writes them, for both storage backends.

A database is a catalogue when its `fashionattr_catalog` table carries the format marker; anything else that
already holds tables belongs to another program and is refused before a single byte is written. Every write
transaction first bumps `catalog_state.generation` (in PostgreSQL that row lock also puts concurrent writers one
after another) and stamps the rows it changes with it; removed items leave a tombstone with theirs. A similarity
index that remembers the generation it reflects can therefore catch up by reading only what changed since.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionattr.catalog.backends import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    is_postgres,
    reopen_for_reading,
    sqlite_state,
)
from fashionattr.errors import UserError

MARKER_TABLE = "fashionattr_catalog"
KIND = "fashionattr-catalog"
FORMAT_VERSION = "2"
"""Bumped when the tables change shape; another version is refused with a message rather than misread."""

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
    generation BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_generation ON items (generation);
CREATE TABLE IF NOT EXISTS tags (
    item_id BIGINT NOT NULL REFERENCES items(id),
    attribute {text_key} NOT NULL,
    value {text_key} NOT NULL,
    confidence {real} NOT NULL,
    probabilities TEXT NOT NULL,
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
    attribute: str
    value: str
    confidence: float
    probabilities: str


@dataclass(frozen=True)
class Changes:
    """What changed after a generation: items added or re-embedded, and ids of items gone."""

    generation: int
    upserted: list[tuple[int, bytes]]
    removed: list[int]


def open_store(db: str | Path, write: bool = False) -> CatalogStore:
    """The catalogue at `db` (a file path or a postgresql:// URL), identified before anything is written.

    Read-only (`write=False`) never creates or changes anything: a missing, empty or foreign database is a
    `UserError`. For writing, a missing or empty database becomes a new catalogue; a foreign one is refused.
    """
    if is_postgres(db):
        return _open_postgres(str(db), write)
    return _open_sqlite(Path(db), write)


def _open_sqlite(path: Path, write: bool) -> CatalogStore:
    state = sqlite_state(path)
    if state == "other":
        raise UserError(f"{path}: not a catalogue database (not an SQLite file); it is left untouched, give "
                        "another --db")  # fmt: skip
    if not write:
        if state in ("missing", "empty"):
            raise UserError(f"{path}: no such catalogue; make one with `fashionattr catalog index DIR --model CKPT "
                            f"--db {path}`")  # fmt: skip
        peek = SqliteDatabase.open(path, write=False)
        try:
            CatalogStore(peek).identify(allow_new=False)
        except BaseException:
            peek.close()
            raise
        return CatalogStore(reopen_for_reading(peek))
    if state == "sqlite":  # identified read-only first: a foreign file is never opened for writing
        peek = SqliteDatabase.open(path, write=False)
        try:
            CatalogStore(peek).identify(allow_new=True)
        finally:
            peek.close()
    elif state == "missing" and not path.parent.is_dir():
        raise UserError(f"{path}: the folder {path.parent} does not exist")
    database = SqliteDatabase.open(path, write=True)
    try:
        database.take_writer_lock()
        store = CatalogStore(database)
        store.create_tables()
        database.enable_wal()
    except BaseException:
        database.close()
        raise
    return store


def _open_postgres(url: str, write: bool) -> CatalogStore:
    database = PostgresDatabase.open(url, write)
    store = CatalogStore(database)
    try:
        if write:
            store.create_tables()
        else:
            store.identify(allow_new=False)
    except BaseException:
        database.close()
        raise
    return store


class CatalogStore:
    """All SQL of the catalogue over one `Database`: identification, the indexer's writes, the readers' queries."""

    def __init__(self, database: Database) -> None:
        self.db = database

    @property
    def name(self) -> str:
        return self.db.name

    @property
    def dialect(self) -> str:
        return self.db.dialect

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
            if meta.get("format") != FORMAT_VERSION:
                raise UserError(f"{self.name}: a fashionattr catalogue of format {meta.get('format')}, this version "
                                f"reads format {FORMAT_VERSION}; index into a new --db")  # fmt: skip
            return False
        if not tables:
            if allow_new:
                return True
            raise UserError(f"{self.name}: no such catalogue (the database is empty); make one with "
                            "`fashionattr catalog index DIR --model CKPT --db ...`")  # fmt: skip
        old: dict[str, str] = {}
        if "meta" in tables and "items" in tables:
            with contextlib.suppress(Exception):  # another program's `meta` table may have any shape
                old = dict(self.db.execute("SELECT key, value FROM meta"))
        if "model_fingerprint" in old:
            raise UserError(f"{self.name}: a catalogue made by an older fashionattr (format {old.get('format')}); "
                            "it is left untouched, index the folder into a new --db")  # fmt: skip
        shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        raise UserError(f"{self.name}: not a fashionattr catalogue: it holds other tables ({shown}); it is left "
                        "untouched, give a new or empty database as --db")  # fmt: skip

    def create_tables(self) -> None:
        """Make a new catalogue's tables, or check an existing one; one process at a time (setup lock)."""
        with self.db.transaction():
            self.db.lock_for_setup()
            if not self.identify(allow_new=True):
                return
            for statement in TABLES.format(**self.db.types).split(";"):
                if statement.strip():
                    self.db.execute(statement)
            self.db.execute("INSERT INTO catalog_state (id, generation) VALUES (1, 0)")
            self._set_meta({"kind": KIND, "format": FORMAT_VERSION})

    # -- metadata and generation ---------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self.db.execute(f"SELECT key, value FROM {MARKER_TABLE}"))

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

    def known_items(self) -> dict[str, str]:
        """path -> content hash of every tagged item."""
        return dict(self.db.execute("SELECT path, sha256 FROM items"))

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

    def touch(self, stats: Sequence[tuple[int, float, str]]) -> None:
        """Refresh (size, mtime) of unchanged files, by path."""
        if stats:
            with self.writing():
                self.db.executemany("UPDATE items SET size = ?, mtime = ? WHERE path = ?", stats)

    def write_batch(self, tagged: Sequence[tuple[ItemRow, Sequence[TagRow]]],
                    failed: Sequence[tuple[ItemRow, str]], now: float) -> None:  # fmt: skip
        """One batch of results in one transaction: tagged files become items, failed ones error entries."""
        with self.writing() as generation:
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
            ids: dict[str, int] = {}
            for start in range(0, len(tagged), ROWS_PER_STATEMENT):
                part = [(row.path, row.sha256, row.size, row.mtime, row.embedding, now, generation)
                        for row, _ in tagged[start : start + ROWS_PER_STATEMENT]]  # fmt: skip
                returned = self.db.execute(
                    "INSERT INTO items (path, sha256, size, mtime, embedding, indexed_at, generation) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(part))
                    + " ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                    "mtime = excluded.mtime, embedding = excluded.embedding, indexed_at = excluded.indexed_at, "
                    "generation = excluded.generation RETURNING id, path",
                    [value for row in part for value in row],
                )
                ids.update((path, int(item_id)) for item_id, path in returned)
            self._in_values("DELETE FROM tags WHERE item_id IN ({})", list(ids.values()))
            self.db.insert_rows("tags", ("item_id", "attribute", "value", "confidence", "probabilities"),
                                [(ids[row.path], t.attribute, t.value, t.confidence, t.probabilities)
                                 for row, tags in tagged for t in tags])  # fmt: skip

    # -- the readers' queries ------------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items")[0][0])

    def errors(self) -> list[tuple[str, str]]:
        return [(p, r) for p, r in self.db.execute("SELECT path, reason FROM errors ORDER BY path")]

    @staticmethod
    def _filter_joins(
        filters: Mapping[str, str], min_confidence: float, item_id: str = "i.id"
    ) -> tuple[str, list[Any]]:
        """JOINs keeping the rows whose `item_id` carries every filtered tag at or above `min_confidence`."""
        joins, params = [], []
        for n, (attribute, value) in enumerate(sorted(filters.items())):
            joins.append(f"JOIN tags f{n} ON f{n}.item_id = {item_id} AND f{n}.attribute = ? AND f{n}.value = ? "
                         f"AND f{n}.confidence >= ?")  # fmt: skip
            params += [attribute, value, min_confidence]
        return " ".join(joins), params

    def search(self, filters: Mapping[str, str], min_confidence: float, limit: int,
               offset: int) -> tuple[int, list[tuple[Any, ...]]]:  # fmt: skip
        """(how many match, one page of item rows) carrying every filtered tag, the most confident first."""
        joins, params = self._filter_joins(filters, min_confidence)
        total = self.db.execute(f"SELECT COUNT(*) FROM items i {joins}", params)[0][0]
        if not filters:
            order = "i.path"
        elif len(filters) == 1:
            order = "f0.confidence DESC, i.path"
        else:
            scores = ", ".join(f"f{n}.confidence" for n in range(len(filters)))
            order = f"{self.db.least}({scores}) DESC, i.path"
        rows = self.db.execute(f"SELECT {ITEM_COLUMNS} FROM items i {joins} ORDER BY {order} LIMIT ? OFFSET ?",
                               [*params, max(0, limit), max(0, offset)])  # fmt: skip
        return int(total), rows

    def value_counts(self, filters: Mapping[str, str], min_confidence: float,
                     attribute: str | None = None) -> dict[str, dict[str, int]]:  # fmt: skip
        """attribute -> value -> how many items matching `filters` carry that value (at `min_confidence` or more);
        of one `attribute`, or of every attribute at once (one query)."""
        # Counted on the tags alone (every tag belongs to an item): without filters, one pass over the tags.
        joins, params = self._filter_joins(filters, min_confidence, item_id="t.item_id")
        only = "t.attribute = ? AND " if attribute is not None else ""
        rows = self.db.execute(f"SELECT t.attribute, t.value, COUNT(*) FROM tags t {joins} WHERE {only}"
                               "t.confidence >= ? GROUP BY t.attribute, t.value",
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
        """(item_id, attribute, value, confidence, probabilities JSON) of every tag of `ids`."""
        return self._in("SELECT item_id, attribute, value, confidence, probabilities FROM tags "
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

    # -- the saved similarity index -------------------------------------------------------------------------------

    def saved_vector_index(self) -> tuple[dict[str, Any], bytes] | None:
        """(description, bytes) of the similarity index saved by the last indexer, if any."""
        described = self.meta().get("vector_index")
        if not described:
            return None
        with self.db.transaction(write=False):
            parts = self.db.execute("SELECT data FROM vector_index ORDER BY part")
            description = json.loads(self.meta().get("vector_index") or "null")
        data = b"".join(bytes(p) for (p,) in parts)
        if not description or len(data) != description.get("bytes"):
            return None
        return description, data

    def save_vector_index(self, description: Mapping[str, Any], data: bytes) -> None:
        """Replace the saved similarity index (a reader applies the changes made after its generation)."""
        with self.writing():
            self.db.execute("DELETE FROM vector_index")
            self.db.executemany("INSERT INTO vector_index (part, data) VALUES (?, ?)",
                                [(n, data[start : start + VECTOR_PART_BYTES]) for n, start in
                                 enumerate(range(0, len(data), VECTOR_PART_BYTES))])  # fmt: skip
            self._set_meta({"vector_index": json.dumps({**description, "bytes": len(data)})})

    def drop_vector_index(self) -> None:
        if self.meta().get("vector_index"):
            with self.writing():
                self.db.execute("DELETE FROM vector_index")
                self.db.execute(f"DELETE FROM {MARKER_TABLE} WHERE key = 'vector_index'")
