"""What every catalogue backend provides: a `Database` (one connection, SQL with `?` placeholders) and a `Backend`
(which locations it takes, how it opens one, whether several processes may write at once, how it shows one).

The catalogue's SQL itself is written once, in `store.py`; a backend supplies only what differs: how to connect
(read-only where only reading is asked), the column types, the parameter style, bulk inserts, how a writer takes
the catalogue, and what a location holds before anything is written to it. Its opening calls back into the
store (`Tables`) for the identification and the tables, so it never writes SQL of the catalogue's own.
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

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


def masked_location(db: str | Path) -> str:
    """A location for people: a file path as it is; a connection URL with every password replaced by ***."""
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


class Tables(Protocol):
    """The store's part of opening a catalogue, which a backend calls at the right moments on the right connection:
    the backend decides when and where, the store what is checked and created (store.py implements it)."""

    def identify(self, database: Database, allow_new: bool) -> None:
        """Refuse (a `UserError` naming what was found) a database that is not a catalogue this version reads; an
        empty one passes only with `allow_new`. Nothing is written."""

    def create(self, database: Database) -> None:
        """On a writable connection: make a new catalogue's tables, or check (and upgrade) an existing one's."""


class Backend:
    """One place a catalogue can live: which locations it takes, how it opens one, and what callers must know.

    A backend is registered under the entry-point group `fashionattr.catalog_backends` (see `backends/__init__.py`);
    its module is all the code it needs.
    """

    name: ClassVar[str] = ""
    """Its name, one per backend (and its entry point's, by convention)."""
    shared_writers: ClassVar[bool] = False
    """Whether several processes may write into one catalogue at once (tagging under torchrun needs it)."""

    def __repr__(self) -> str:
        return f"<catalogue backend {self.name}>"

    def claims(self, db: str | Path) -> bool:
        """Whether `db` is a location of this backend (e.g. its URL scheme); at most one backend claims each."""
        raise NotImplementedError

    def open(self, db: str | Path, write: bool, tables: Tables) -> Database:
        """The catalogue at `db`, identified before anything is written (`tables.identify`, or `tables.create`
        for writing), or a `UserError` saying why not; nothing is left open on failure.

        Read-only (`write=False`) never creates or changes anything: a missing, empty or foreign database is a
        `UserError`. For writing, a missing or empty database becomes a new catalogue; a foreign one is refused.
        """
        raise NotImplementedError

    @staticmethod
    def identified(database: Database, write: bool, tables: Tables) -> Database:
        """`database` with the catalogue's tables made (for writing) or found (for reading); closed on failure.

        The last step of `open` for a database that holds nothing but the catalogue (a server database, memory).
        """
        try:
            if write:
                tables.create(database)
            else:
                tables.identify(database, allow_new=False)
        except BaseException:
            database.close()
            raise
        return database

    def shown_location(self, db: str | Path) -> str:
        """`db` for people, every secret in it masked: the one rendering used by errors, summaries, logs, the page
        and anything stored."""
        return masked_location(db)

    def outage_errors(self) -> tuple[type[Exception], ...]:
        """The exceptions of its database library that mean the database is unreachable or failing (the service
        answers them with 503), not that the request is wrong."""
        return ()
