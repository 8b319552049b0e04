"""Tagged catalogue: a folder of product photos tagged by a model, kept in SQLite, browsed by tag and by likeness.

`index_catalog` tags new and changed files and drops removed ones. Each batch is written in one transaction, so
a killed run leaves a consistent database and a rerun carries on where it stopped. `Catalog` answers tag search
with facet counts (tag navigation) and finds similar garments by cosine similarity of the stored, unit-length
backbone embeddings, all of them held in one matrix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionattr.errors import UserError
from fashionattr.inference import IMAGE_SUFFIXES, find_checkpoints
from fashionattr.schema import Schema

if TYPE_CHECKING:
    from fashionattr.inference import Predictor

FORMAT_VERSION = "1"
"""Bumped when the tables change shape; an older database is refused with a message rather than misread."""

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    embedding BLOB NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    item_id INTEGER NOT NULL REFERENCES items(id),
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities TEXT NOT NULL,
    PRIMARY KEY (item_id, attribute)
);
CREATE INDEX IF NOT EXISTS tags_by_value ON tags (attribute, value, confidence);
CREATE TABLE IF NOT EXISTS errors (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    reason TEXT NOT NULL
);
"""

Filters = Mapping[str, str]
"""Active tag filters: full attribute name -> class name; an item matches when it has every one."""


# ---------------------------------------------------------------------------------------------------------------
# Database plumbing


def connect(db: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL, so readers never block the indexer."""
    conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All statements inside commit together or not at all (a killed process rolls back on next open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def write_meta(conn: sqlite3.Connection, values: Mapping[str, str]) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model: str | Path) -> str:
    """Content hash of the model file(s), so re-indexing with a retrained model re-tags everything."""
    path = Path(model)
    return files_fingerprint([path] if path.is_file() else find_checkpoints(path))


def files_fingerprint(files: Iterable[str | Path]) -> str:
    """One hash over the names and contents of `files`, in order; the service uses it to match a catalogue."""
    digest = hashlib.sha256()
    for file in map(Path, files):
        digest.update(file.name.encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def scan_images(root: Path) -> list[str]:
    """Image files under `root`, as sorted '/'-separated relative paths; hidden files and folders are skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------------
# Indexing


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

    @property
    def tagged(self) -> int:
        return self.added + self.updated


@dataclass(frozen=True)
class _FileState:
    path: str
    sha256: str
    size: int
    mtime: float


def index_catalog(
    db: str | Path,
    root: str | Path,
    model: str | Path,
    predictor: Predictor | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    load: Callable[[str | Path], Predictor] | None = None,
) -> IndexReport:
    """Tag every image under `root` into the catalogue `db`, skipping files whose content is unchanged.

    `predictor` (or `load(model)`, default `load_predictor`) must be the model at `model`: the path and its
    fingerprint are recorded so a later run with another model re-tags everything instead of mixing answers.
    """
    from tqdm import tqdm

    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise UserError(f"{root}: no such folder to index")
    conn = connect(db)
    try:
        conn.executescript(TABLES)
        meta = read_meta(conn)
        _check_same_root(meta, root_path, db)
        if predictor is None:
            from fashionattr.inference import load_predictor

            predictor = (load or load_predictor)(model)
        fingerprint = model_fingerprint(model)
        report = IndexReport(root=root_path)
        with transaction(conn):
            if meta.get("model_fingerprint") not in (None, fingerprint):
                conn.execute("DELETE FROM tags")
                conn.execute("DELETE FROM items")
                conn.execute("DELETE FROM errors")
                report.retagged_for_new_model = True
            schema = predictor.schema.subset(predictor.attributes)
            write_meta(conn, {"format": FORMAT_VERSION, "root": str(root_path), "model": str(Path(model).resolve()),
                              "model_fingerprint": fingerprint, "schema": json.dumps(schema.to_dict())})  # fmt: skip
        files = scan_images(root_path)
        misnamed = {rel: _shown_name(rel) for rel in files if _shown_name(rel) != rel}
        files = [rel for rel in files if rel not in misnamed]
        report.removed = _drop_missing(conn, set(files) | set(misnamed.values()))
        _record_misnamed(conn, list(misnamed.values()))
        pending = _changed_files(conn, root_path, files, report, progress)
        _tag_files(conn, root_path, pending, predictor, report, batch_size, workers, progress, tqdm)
        report.errors = [tuple(row) for row in conn.execute("SELECT path, reason FROM errors ORDER BY path")]
        return report
    finally:
        conn.close()


def _check_same_root(meta: Mapping[str, str], root: Path, db: str | Path) -> None:
    if meta.get("format") not in (None, FORMAT_VERSION):
        raise UserError(f"{db}: catalogue format {meta['format']} is not this version's ({FORMAT_VERSION}); "
                        "index into a new --db file")  # fmt: skip
    if "root" in meta and Path(meta["root"]) != root:
        raise UserError(f"{db}: this catalogue indexes {meta['root']}, not {root}; use another --db for this folder")


def _shown_name(rel: str) -> str:
    """`rel` itself when it is valid UTF-8 text, else with the offending bytes written as `\\xNN`."""
    return os.fsencode(rel).decode("utf-8", errors="backslashreplace")


def _record_misnamed(conn: sqlite3.Connection, shown: Sequence[str]) -> None:
    """A name that is not UTF-8 cannot be stored or served as text: list the file as an error, by its escaped name."""
    reason = "the file name is not valid UTF-8 text; rename the file to index it"
    with transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO errors (path, sha256, size, mtime, reason) VALUES (?, '', 0, 0, ?)",
                         [(name, reason) for name in shown])  # fmt: skip


def _drop_missing(conn: sqlite3.Connection, present: set[str]) -> int:
    """Remove items and errors whose file is gone; returns how many items went."""
    gone = [(i, p) for i, p in conn.execute("SELECT id, path FROM items") if p not in present]
    gone_errors = [(p,) for (p,) in conn.execute("SELECT path FROM errors") if p not in present]
    with transaction(conn):
        conn.executemany("DELETE FROM tags WHERE item_id = ?", [(i,) for i, _ in gone])
        conn.executemany("DELETE FROM items WHERE id = ?", [(i,) for i, _ in gone])
        conn.executemany("DELETE FROM errors WHERE path = ?", gone_errors)
    return len(gone)


def _changed_files(
    conn: sqlite3.Connection, root: Path, files: Sequence[str], report: IndexReport, progress: bool
) -> list[_FileState]:
    """Files whose content hash differs from what was tagged (or that are new); the rest count as unchanged."""
    from tqdm import tqdm

    known = {p: h for p, h in conn.execute("SELECT path, sha256 FROM items")}
    failed = {p: h for p, h in conn.execute("SELECT path, sha256 FROM errors")}
    pending: list[_FileState] = []
    touched: list[tuple[int, float, str]] = []
    for rel in tqdm(files, desc="hashing", unit="file", disable=not progress, leave=False):
        path = root / rel
        try:
            stat = path.stat()
            digest = file_sha256(path)
        except OSError as exc:
            pending.append(_FileState(rel, f"unreadable:{exc.errno}", 0, 0.0))
            continue
        if known.get(rel) == digest:
            report.unchanged += 1
            touched.append((stat.st_size, stat.st_mtime, rel))
        elif failed.get(rel) == digest:
            continue  # still the same unreadable file: listed among the errors again, not retried
        else:
            pending.append(_FileState(rel, digest, stat.st_size, stat.st_mtime))
    with transaction(conn):
        conn.executemany("UPDATE items SET size = ?, mtime = ? WHERE path = ?", touched)
    return pending


def _tag_files(
    conn: sqlite3.Connection,
    root: Path,
    pending: Sequence[_FileState],
    predictor: Predictor,
    report: IndexReport,
    batch_size: int,
    workers: int,
    progress: bool,
    tqdm: Any,
) -> None:
    """Run the model over `pending` and write each batch's rows in one transaction."""
    from fashionattr.data.images import ImageError

    if not pending:
        return
    known = {p for (p,) in conn.execute("SELECT path FROM items")}
    states = {str(root / f.path): f for f in pending}
    rows: list[tuple[_FileState, Any]] = []
    with tqdm(total=len(pending), desc="tagging", unit="img", disable=not progress) as bar:
        for entry in predictor.predict_paths(list(states), batch_size=batch_size, workers=workers, embed=True):
            state = states[entry.path if isinstance(entry, ImageError) else entry.source]
            rows.append((state, entry))
            if len(rows) >= batch_size:
                _write_rows(conn, rows, predictor, known, report)
                rows = []
            bar.update(1)
        _write_rows(conn, rows, predictor, known, report)


def _write_rows(
    conn: sqlite3.Connection, rows: Sequence[tuple[_FileState, Any]], predictor: Predictor, known: set[str],
    report: IndexReport,
) -> None:  # fmt: skip
    from fashionattr.data.images import ImageError

    now = time.time()
    with transaction(conn):
        for state, entry in rows:
            if isinstance(entry, ImageError):
                conn.execute("DELETE FROM tags WHERE item_id IN (SELECT id FROM items WHERE path = ?)", (state.path,))
                conn.execute("DELETE FROM items WHERE path = ?", (state.path,))
                conn.execute("INSERT OR REPLACE INTO errors (path, sha256, size, mtime, reason) VALUES (?, ?, ?, ?, ?)",
                             (state.path, state.sha256, state.size, state.mtime, entry.reason))  # fmt: skip
                continue
            embedding = np.asarray(entry.embedding, dtype=np.float32)
            conn.execute("DELETE FROM errors WHERE path = ?", (state.path,))
            item_id = conn.execute(
                "INSERT INTO items (path, sha256, size, mtime, embedding, indexed_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, "
                "mtime = excluded.mtime, embedding = excluded.embedding, indexed_at = excluded.indexed_at "
                "RETURNING id",
                (state.path, state.sha256, state.size, state.mtime, embedding.tobytes(), now),
            ).fetchone()[0]
            conn.execute("DELETE FROM tags WHERE item_id = ?", (item_id,))
            conn.executemany(
                "INSERT INTO tags (item_id, attribute, value, confidence, probabilities) VALUES (?, ?, ?, ?, ?)",
                [(item_id, name, predictor.schema.attribute(name).classes[result.index], result.confidence,
                  json.dumps(result.probabilities)) for name, result in entry.attributes.items()],
            )  # fmt: skip
            if state.path in known:
                report.updated += 1
            else:
                report.added += 1
                known.add(state.path)
        dims = {int(np.asarray(e.embedding).size) for _, e in rows if not isinstance(e, ImageError)}
        if dims:
            write_meta(conn, {"embedding_dim": str(dims.pop())})


# ---------------------------------------------------------------------------------------------------------------
# Reading


@dataclass
class Tag:
    """One attribute's stored answer for an item: the most probable class and its probability."""

    value: str
    confidence: float
    probabilities: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "confidence": self.confidence}
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
    """Read access to an indexed catalogue; safe to share between threads (one connection behind a lock)."""

    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)
        if not self.db.is_file():
            raise UserError(f"{db}: no such catalogue; make one with `fashionattr catalog index DIR --model CKPT "
                            f"--db {db}`")  # fmt: skip
        self._lock = threading.RLock()
        try:
            self._conn = connect(self.db)
            meta = read_meta(self._conn)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{db}: not a catalogue database ({exc})") from None
        if meta.get("format") != FORMAT_VERSION or "schema" not in meta:
            raise UserError(f"{db}: not a fashionattr catalogue (or made by another version); index it again")
        self.root = Path(meta["root"])
        self.model = meta["model"]
        self.model_fingerprint = meta["model_fingerprint"]
        self.schema = Schema.from_dict(json.loads(meta["schema"]), source=f"{db} (schema)")
        self._matrix: tuple[int, np.ndarray, np.ndarray] | None = None

    def close(self) -> None:
        self._conn.close()

    @property
    def attributes(self) -> list[str]:
        return self.schema.names

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM items")[0][0])

    def errors(self) -> list[tuple[str, str]]:
        return [(p, r) for p, r in self._query("SELECT path, reason FROM errors ORDER BY path")]

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

    def check_filters(self, filters: Mapping[str, str]) -> dict[str, str]:
        """Validate a filters mapping given with (possibly short) names; returns it with canonical names."""
        return self.parse_filters(f"{name}={value}" for name, value in filters.items())

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

    def _filter_sql(self, filters: Filters, min_confidence: float) -> tuple[str, list[Any]]:
        """JOINs selecting items with every filtered tag at or above `min_confidence`, and their score."""
        joins, params = [], []
        for n, (attribute, value) in enumerate(sorted(filters.items())):
            joins.append(f"JOIN tags f{n} ON f{n}.item_id = i.id AND f{n}.attribute = ? AND f{n}.value = ? "
                         f"AND f{n}.confidence >= ?")  # fmt: skip
            params += [attribute, value, min_confidence]
        return " ".join(joins), params

    def search(
        self, filters: Filters | None = None, min_confidence: float = 0.0, limit: int = 50, offset: int = 0
    ) -> SearchResult:
        """Items carrying every filtered tag, most confident first (the least confident filter decides)."""
        filters = dict(filters or {})
        joins, params = self._filter_sql(filters, min_confidence)
        total = self._query(f"SELECT COUNT(*) FROM items i {joins}", params)[0][0]
        if not filters:
            order = "i.path"
        elif len(filters) == 1:
            order = "f0.confidence DESC, i.path"
        else:
            order = f"MIN({', '.join(f'f{n}.confidence' for n in range(len(filters)))}) DESC, i.path"
        rows = self._query(f"SELECT i.id, i.path, i.sha256, i.size FROM items i {joins} ORDER BY {order} "
                           "LIMIT ? OFFSET ?", [*params, max(0, limit), max(0, offset)])  # fmt: skip
        return SearchResult(total=int(total), items=self._with_tags(rows))

    def facets(self, filters: Filters | None = None, min_confidence: float = 0.0) -> dict[str, dict[str, int]]:
        """For every attribute, how many items would match if its value were added to (or replaced in) `filters`.

        Each attribute's counts apply the *other* attributes' filters only, the usual faceted-search rule, so a
        user can switch a filter's value and see what every alternative would give.
        """
        facets: dict[str, dict[str, int]] = {}
        for attribute in self.schema:
            others = {a: v for a, v in (filters or {}).items() if a != attribute.name}
            joins, params = self._filter_sql(others, min_confidence)
            rows = self._query(f"SELECT t.value, COUNT(*) FROM items i {joins} JOIN tags t ON t.item_id = i.id "
                               "AND t.attribute = ? AND t.confidence >= ? GROUP BY t.value",
                               [*params, attribute.name, min_confidence])  # fmt: skip
            counts = dict(rows)
            facets[attribute.name] = {cls: int(counts.get(cls, 0)) for cls in attribute.classes}
        return facets

    def item(self, key: int | str | Path, probabilities: bool = False) -> CatalogItem | None:
        """An item by id, by its stored path (relative to the root), or by a file path inside the root."""
        if isinstance(key, int):
            rows = self._query("SELECT id, path, sha256, size FROM items WHERE id = ?", [key])
        else:
            candidates = [] if Path(key).is_absolute() else [Path(key).as_posix()]
            with contextlib.suppress(ValueError, OSError):
                candidates.append(Path(key).resolve().relative_to(self.root.resolve()).as_posix())
            rows = []
            for relative in candidates:
                rows = self._query("SELECT id, path, sha256, size FROM items WHERE path = ?", [relative])
                if rows:
                    break
        items = self._with_tags(rows, probabilities)
        return items[0] if items else None

    def image_file(self, item_id: int) -> Path | None:
        """The file of an indexed item, only if it still resolves to a regular file inside the root."""
        rows = self._query("SELECT path FROM items WHERE id = ?", [item_id])
        if not rows:
            return None
        root = self.root.resolve()
        path = (root / rows[0][0]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def _with_tags(self, rows: Sequence[tuple[Any, ...]], probabilities: bool = False) -> list[CatalogItem]:
        items = {row[0]: CatalogItem(id=row[0], path=row[1], sha256=row[2], size=row[3]) for row in rows}
        if not items:
            return []
        marks = ", ".join("?" * len(items))
        tag_rows = self._query(f"SELECT item_id, attribute, value, confidence, probabilities FROM tags "
                               f"WHERE item_id IN ({marks})", list(items))  # fmt: skip
        order = {name: n for n, name in enumerate(self.schema.names)}
        for item_id, attribute, value, confidence, probs in sorted(tag_rows, key=lambda r: order.get(r[1], 0)):
            items[item_id].tags[attribute] = Tag(value, confidence, json.loads(probs) if probabilities else None)
        return list(items.values())

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix N x D) of every item, cached until another connection writes to the database."""
        with self._lock:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if self._matrix is None or self._matrix[0] != version:
                rows = self._conn.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
                ids = np.array([r[0] for r in rows], dtype=np.int64)
                dim = len(rows[0][1]) // 4 if rows else 0
                matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
                self._matrix = (version, ids, matrix)
            return self._matrix[1], self._matrix[2]

    def embedding(self, item_id: int) -> np.ndarray | None:
        rows = self._query("SELECT embedding FROM items WHERE id = ?", [item_id])
        return np.frombuffer(rows[0][0], dtype=np.float32) if rows else None

    def similar(self, query: int | str | Path | np.ndarray, k: int = 10) -> list[tuple[CatalogItem, float]]:
        """The `k` items whose embeddings are most cosine-similar to the query's (an item queried is its own first)."""
        vector = self._query_vector(query)
        ids, matrix = self.embeddings()
        if len(ids) == 0 or k < 1:
            return []
        if vector.shape != (matrix.shape[1],):
            raise UserError(f"the query embedding has {vector.size} numbers but the catalogue's have "
                            f"{matrix.shape[1]}; embed it with the catalogue's model ({self.model})")  # fmt: skip
        scores = matrix @ (vector / max(float(np.linalg.norm(vector)), 1e-12))
        k = min(k, len(ids))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.lexsort((ids[best], -scores[best]))]
        items = {item.id: item for item in self._with_tags([self._row(int(ids[i])) for i in best])}
        return [(items[int(ids[i])], float(scores[i])) for i in best]

    def _row(self, item_id: int) -> tuple[Any, ...]:
        return self._query("SELECT id, path, sha256, size FROM items WHERE id = ?", [item_id])[0]

    def _query_vector(self, query: int | str | Path | np.ndarray) -> np.ndarray:
        if isinstance(query, np.ndarray):
            return query.astype(np.float32).ravel()
        found = self.item(query)
        if found is None:
            raise UserError(f"{query} is not in the catalogue (root {self.root}); give an indexed path or id, "
                            "or a new image file to embed")  # fmt: skip
        vector = self.embedding(found.id)
        assert vector is not None  # the item was just found
        return vector
