"""An SQLite file: the embedded default, and where every location no other backend claims goes (a file path).

A file is identified on a read-only connection before it is ever opened for writing, so another program's database
is left byte for byte as it was; a writer holds an exclusive lock on the file, one indexer at a time.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from fashionattr.catalog.backends.base import Backend, Database, Tables
from fashionattr.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"


class SqliteDatabase(Database):
    types: ClassVar[dict[str, str]] = {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "text_key": "TEXT",
        "real": "REAL",
        "blob": "BLOB",
    }
    least = "MIN"

    def __init__(self, path: Path, conn: sqlite3.Connection, writable: bool) -> None:
        super().__init__(str(path), writable)
        self.path = path
        self.conn = conn
        self._lock_file: int | None = None

    @classmethod
    def open(cls, path: Path, write: bool) -> SqliteDatabase:
        """Read-only (`mode=ro`, nothing created, the journal mode left alone) unless `write`.

        Writing needs a file that is missing, empty, or already a catalogue: the caller identifies it with a
        read-only connection first (`peek`), so a foreign file is never opened for writing at all.
        """
        if write:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=60)
            database = cls(path, conn, writable=True)
            database.execute("PRAGMA busy_timeout = 60000")
            return database
        return cls(path, _connect_read_only(path), writable=False)

    def enable_wal(self) -> None:
        """Readers never block the indexer nor it them; set only on a file that is this program's catalogue."""
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")

    def take_writer_lock(self) -> None:
        """One indexer at a time per file: a second one is told so at once instead of interleaving with it."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy = (f"{self.name}: another `fashionattr catalog index` is writing this catalogue right now; wait "
                    "for it to finish (or use a PostgreSQL catalogue for many writers)")  # fmt: skip
            raise UserError(busy) from None
        self._lock_file = fd

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.lock:
            self.conn.executemany(sql, [tuple(r) for r in rows])

    def table_names(self) -> set[str]:
        return {name for (name,) in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def begin_snapshot(self) -> None:
        self.execute("BEGIN")

    def close(self) -> None:
        self.conn.close()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None


class SqliteBackend(Backend):
    name = "sqlite"
    shared_writers = False  # one indexer at a time per file (`take_writer_lock`)

    def claims(self, db: str | Path) -> bool:
        """None: SQLite is the fallback, taking every location that no other backend claims, as a file path."""
        return False

    def open(self, db: str | Path, write: bool, tables: Tables) -> Database:
        path = Path(db)
        state = sqlite_state(path)
        if state == "other":
            raise UserError(f"{path}: not a catalogue database (not an SQLite file); it is left untouched, give "
                            "another --catalog")  # fmt: skip
        if not write:
            if state in ("missing", "empty"):
                raise UserError(f"{path}: no such catalogue; make one with `fashionattr catalog index MODEL DIR "
                                f"--catalog {path}`")  # fmt: skip
            peek = SqliteDatabase.open(path, write=False)
            try:
                tables.identify(peek, allow_new=False)
            except BaseException:
                peek.close()
                raise
            return reopen_for_reading(peek)
        if state == "sqlite":  # identified read-only first: a foreign file is never opened for writing
            peek = SqliteDatabase.open(path, write=False)
            try:
                tables.identify(peek, allow_new=True)
            finally:
                peek.close()
        elif state == "missing" and not path.parent.is_dir():
            raise UserError(f"{path}: the folder {path.parent} does not exist")
        database = SqliteDatabase.open(path, write=True)
        try:
            database.take_writer_lock()
            tables.create(database)
            database.enable_wal()
        except BaseException:
            database.close()
            raise
        return database

    def outage_errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.OperationalError,)


BACKEND = SqliteBackend()


def sqlite_state(path: Path) -> str:
    """'missing', 'empty', 'sqlite' or 'other': what is at `path`, found without opening it as a database.

    Only a regular file can be a catalogue; a FIFO or device would hang or never end, so it is never opened.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        return "other"
    if info.st_size == 0:
        return "empty"
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return "sqlite" if header == SQLITE_HEADER else "other"


def _uri(path: Path, **options: str) -> str:
    return f"file:{urllib.parse.quote(str(path.resolve()))}?{urllib.parse.urlencode(options)}"


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write. A database in WAL mode closed cleanly (no -wal file beside it) is read as
    immutable, which creates no -wal/-shm files beside another program's database; one in use is read normally."""
    in_use = Path(f"{path}-wal").exists()
    options = {"mode": "ro"} if in_use else {"mode": "ro", "immutable": "1"}
    try:
        conn = sqlite3.connect(_uri(path, **options), uri=True, isolation_level=None, check_same_thread=False,
                               timeout=60)  # fmt: skip
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path}: not a catalogue database ({exc})") from None
    return conn


def reopen_for_reading(database: SqliteDatabase) -> SqliteDatabase:
    """After identification as immutable: a normal read-only connection, which sees an indexer's new commits."""
    try:
        conn = sqlite3.connect(_uri(database.path, mode="ro"), uri=True, isolation_level=None,
                               check_same_thread=False, timeout=60)  # fmt: skip
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.OperationalError:
        return database  # read-only storage: no -shm can be made, and nobody can write it either
    database.close()
    return SqliteDatabase(database.path, conn, writable=False)
