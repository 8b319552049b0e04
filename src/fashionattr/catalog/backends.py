"""Where a catalogue lives: one SQLite file (the embedded default) or a PostgreSQL database (shared by many).

Everything that differs between the two is here: how to connect (read-only where only reading is asked), the
column types, the parameter style, how a writer takes the catalogue, and what a database holds before anything
is written to it. The catalogue's SQL itself is written once, in `store.py`, with `?` placeholders.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from fashionattr.errors import UnavailableError, UserError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_HEADER = b"SQLite format 3\x00"


def is_postgres(db: str | Path) -> bool:
    """A postgresql:// (or postgres://) URL, the scheme in any letter case (as URL schemes are)."""
    return str(db).lower().startswith(POSTGRES_SCHEMES)


def _libpq_url(url: str) -> str:
    """The URL with its scheme in lower case, the only spelling libpq reads."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest


_USERINFO_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:@/?]*:)(.*)@", re.IGNORECASE | re.DOTALL)
"""The password of `scheme://user:password@...`; greedy to the last '@', so a password holding '@' or '/' (which
libpq would misread, but a user may still type) is covered whole."""
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def _passwords(url: str) -> list[str]:
    """Every spelling of the passwords in a connection URL (as typed and percent-decoded), longest first."""
    userinfo = _USERINFO_PASSWORD.match(url)
    found = ([userinfo.group(2)] if userinfo else []) + [value for _, value in _QUERY_PASSWORD.findall(url)]
    spellings = {p for p in found if p} | {urllib.parse.unquote(p) for p in found if p}
    return sorted(spellings, key=len, reverse=True)


def shown_location(db: str | Path) -> str:
    """Where a catalogue lives, for people: a file path as it is; a connection URL with every password replaced
    by ***. The one rendering used by errors, summaries, logs, the page and anything stored."""
    text = str(db)
    if "://" not in text:
        return text  # a file path
    text = _USERINFO_PASSWORD.sub(r"\1***@", text)
    return _QUERY_PASSWORD.sub(r"\1***", text)


def without_secrets(text: str, db: str | Path) -> str:
    """`text` (an error from a database library, which may quote parts of the URL) with `db`'s passwords masked."""
    for password in _passwords(str(db)):
        text = text.replace(password, "***")
    return text


class Database:
    """One connection to a catalogue's database, shared by threads (every call holds the lock).

    `execute` takes SQL with `?` placeholders and returns all rows; `transaction` runs a block atomically.
    """

    dialect = ""
    types: ClassVar[dict[str, str]] = {}
    """Column types named in the catalogue's table definitions: id, text_key, real, blob."""
    least = ""
    """The function giving the smallest of several values in one row."""

    def __init__(self, name: str, writable: bool) -> None:
        self.name = name
        self.writable = writable
        self.lock = threading.RLock()
        self.in_transaction = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Plain inserts of many rows (no conflict possible), the fastest way the database offers."""
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def table_names(self) -> set[str]:
        raise NotImplementedError

    def begin_write(self) -> None:
        raise NotImplementedError

    def begin_snapshot(self) -> None:
        """Start a read-only transaction whose reads all see one consistent state."""
        raise NotImplementedError

    def lock_for_setup(self) -> None:
        """Inside a write transaction: keep other processes from creating the tables at the same moment."""

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[None]:
        """Statements inside commit together or not at all; a killed process leaves no half of them."""
        with self.lock:
            self.begin_write() if write else self.begin_snapshot()
            self.in_transaction = True
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection has rolled back by itself
                    self.execute("ROLLBACK")
                raise
            else:
                self.execute("COMMIT")
            finally:
                self.in_transaction = False


# ---------------------------------------------------------------------------------------------------------------
# SQLite


class SqliteDatabase(Database):
    dialect = "sqlite"
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


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL


def _connect(url: str, write: bool) -> Any:
    try:
        import psycopg
    except ImportError:
        needed = "a postgresql:// catalogue needs the psycopg package: pip install 'psycopg[binary]'"
        raise UserError(needed) from None
    try:
        conn = psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=15, application_name="fashionattr")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnavailableError(
            f"{shown_location(url)}: cannot connect to PostgreSQL ({without_secrets(reason, url)})"
        ) from None
    if not write:
        conn.execute("SET default_transaction_read_only = on")
    return conn


class PostgresDatabase(Database):
    dialect = "postgresql"
    types: ClassVar[dict[str, str]] = {
        "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "text_key": 'TEXT COLLATE "C"',
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
    }
    least = "LEAST"
    """Paths sort by code point (collation "C") exactly as in SQLite, so both backends list items in one order."""

    SETUP_LOCK = 7_361_902_118
    """Advisory lock key held while the tables are checked and created (any constant, the same everywhere)."""

    def __init__(self, url: str, conn: Any, writable: bool) -> None:
        super().__init__(shown_location(url), writable)
        self.url = url
        self.conn = conn

    @classmethod
    def open(cls, url: str, write: bool) -> PostgresDatabase:
        return cls(url, _connect(url, write), writable=write)

    def _connected(self) -> Any:
        """The connection; a lost one (the server restarted, the network dropped) is replaced between
        transactions, so a long-running service recovers instead of failing every request from then on."""
        if self.conn.broken or self.conn.closed:
            if self.in_transaction:  # its statements so far are gone with it: never carry on outside it
                raise UnavailableError(f"{self.name}: lost the connection to PostgreSQL in the middle of a transaction "
                                "(nothing of it was kept); run the command again")  # fmt: skip
            self.conn.close()
            self.conn = _connect(self.url, self.writable)
        return self.conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with self.lock:
            try:
                cursor = self._connected().execute(sql.replace("?", "%s"), tuple(params) or None)
            except psycopg.OperationalError:
                if self.in_transaction or not self.conn.broken:
                    raise
                # The connection was found dead by this statement, which ran alone: run it on a new one.
                cursor = self._connected().execute(sql.replace("?", "%s"), tuple(params) or None)
            return cursor.fetchall() if cursor.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        with self.lock, self._connected().cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY: about five times the rows per second of pipelined INSERTs (tags come eight per image)."""
        if not rows:
            return
        with (
            self.lock,
            self._connected().cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def table_names(self) -> set[str]:
        rows = self.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {name for (name,) in rows}

    def begin_write(self) -> None:
        self.execute("BEGIN")

    def begin_snapshot(self) -> None:
        self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock_for_setup(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", [self.SETUP_LOCK])

    def close(self) -> None:
        self.conn.close()
