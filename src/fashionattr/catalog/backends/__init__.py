"""Where a catalogue lives: one SQLite file (the embedded default), a PostgreSQL database (shared by many), or what an
installed backend offers.

A backend is one module holding a `Database` subclass and a `Backend` (see `base.py`), registered in its package's
pyproject.toml under the entry-point group `fashionattr.catalog_backends`:

    [project.entry-points."fashionattr.catalog_backends"]
    duckdb = "mypackage.duckdb_catalog:BACKEND"

The target is a `Backend` instance (or a subclass, which is instantiated). SQLite and PostgreSQL are built in and
always available, whatever the installed package metadata says; an entry point of a built-in's name refers to it.
A location goes to the one backend that claims it, and one that no backend claims is an SQLite file path.
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings
from pathlib import Path

from fashionattr.catalog.backends import postgres, sqlite
from fashionattr.catalog.backends.base import Backend, Database, Tables, masked_location, without_secrets
from fashionattr.errors import UserError

ENTRY_POINT_GROUP = "fashionattr.catalog_backends"
BUILT_IN: tuple[Backend, ...] = (sqlite.BACKEND, postgres.BACKEND)
FALLBACK: Backend = sqlite.BACKEND
"""The backend of every location that no backend claims: a file path."""

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "FALLBACK",
    "Backend",
    "Database",
    "Tables",
    "backend_for",
    "outage_errors",
    "registered",
    "shown_location",
    "without_secrets",
]


@functools.cache
def registered() -> tuple[Backend, ...]:
    """Every backend: the built-ins, then those of the installed entry points (in the order of their names). An entry
    point that cannot be loaded, is not a `Backend`, or gives another backend's name is skipped with a warning, so a
    broken package costs its own locations only."""
    found = {backend.name: backend for backend in BUILT_IN}
    entries = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name)
    for entry in entries:
        try:
            loaded = entry.load()
            backend = loaded() if isinstance(loaded, type) and issubclass(loaded, Backend) else loaded
        except Exception as exc:
            _skip(entry, f"cannot be loaded ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(backend, Backend):
            _skip(entry, f"is a {type(backend).__name__}, not a catalogue Backend")
        elif found.setdefault(backend.name, backend) is not backend:
            _skip(entry, f"is named {backend.name!r}, as another backend is")
    return tuple(found.values())


def _skip(entry: importlib.metadata.EntryPoint, why: str) -> None:
    warnings.warn(f"catalogue backend {entry.name!r} ({entry.value}) {why}; it is not used", RuntimeWarning,
                  stacklevel=3)  # fmt: skip


def _claiming(db: str | Path) -> list[Backend]:
    return [backend for backend in registered() if backend.claims(db)]


def backend_for(db: str | Path) -> Backend:
    """The backend of the location `db`: the one that claims it, or SQLite (a file path) when none does."""
    claiming = _claiming(db)
    if len(claiming) > 1:
        names = ", ".join(backend.name for backend in claiming)
        raise UserError(f"{masked_location(db)}: claimed by several catalogue backends ({names}); uninstall the "
                        "packages of all but one")  # fmt: skip
    return claiming[0] if claiming else FALLBACK


def shown_location(db: str | Path) -> str:
    """Where a catalogue lives, for people, as its backend renders it: a file path as it is; a connection URL with
    every password replaced by ***. The one rendering used by errors, summaries, logs, the page and anything
    stored."""
    claiming = _claiming(db)
    return (claiming[0] if len(claiming) == 1 else FALLBACK).shown_location(db)  # any backend masks a URL's passwords


def outage_errors() -> tuple[type[Exception], ...]:
    """Every backend's exceptions that mean its database is unreachable or failing, not that a request is wrong."""
    return tuple(dict.fromkeys(kind for backend in registered() for kind in backend.outage_errors()))
