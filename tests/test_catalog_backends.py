"""Catalogue backends: a location goes to the backend that claims it, found through the entry-point group
`fashionattr.catalog_backends`; one that no backend claims is an SQLite file; SQLite and PostgreSQL are there even
when the installed package metadata predates them.

A backend is one module and one entry point: `MemoryBackend` below (in-memory SQLite catalogues, `memory:NAME`) is
registered the way an installed package registers one, and `catalog index`, the readers and the torchrun check use
it without any other module knowing of it.
"""

from __future__ import annotations

import importlib.metadata
import sqlite3
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

import fashionattr.catalog.backends as backends
from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.catalog.backends import Backend, Database, Tables, backend_for, registered, shown_location
from fashionattr.catalog.backends.sqlite import SqliteDatabase
from fashionattr.cli import main
from fashionattr.distributed import DistributedContext
from fashionattr.errors import UserError
from test_catalog import make_photo_folder

REPO = Path(__file__).resolve().parent.parent


class MemoryBackend(Backend):
    """Catalogues in this process's memory, `memory:NAME`: one shared-cache in-memory SQLite database per name, kept
    alive by a connection the backend holds."""

    name = "memory"

    def __init__(self) -> None:
        self.kept: dict[str, sqlite3.Connection] = {}

    def claims(self, db: str | Path) -> bool:
        return str(db).startswith("memory:")

    def open(self, db: str | Path, write: bool, tables: Tables) -> Database:
        uri = f"file:{urllib.parse.quote(str(db), safe='')}?mode=memory&cache=shared"
        if str(db) not in self.kept:
            self.kept[str(db)] = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        return self.identified(SqliteDatabase(Path(str(db)), conn, writable=write), write, tables)

    def shown_location(self, db: str | Path) -> str:
        return f"{db} (in memory)"


class OtherMemoryBackend(MemoryBackend):
    name = "memory2"


class Impostor(MemoryBackend):
    name = "postgresql"


def install_entry_points(site: Path, distribution: str, entries: dict[str, str]) -> None:
    """What installing a package with these `fashionattr.catalog_backends` entry points leaves on `site`."""
    info = site / f"{distribution}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{backends.ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """The registry read again from the entry points as the test leaves them, and again after it."""
    registered.cache_clear()
    yield
    registered.cache_clear()


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> Iterator[MemoryBackend]:
    """`MemoryBackend` installed as a package's entry point (the class: the registry makes the instance)."""
    install_entry_points(tmp_path / "site", "memory-catalogue", {"memory": f"{__name__}:MemoryBackend"})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path)  # a location mistaken for a file path would show up here
    backend = backend_for("memory:probe")
    assert isinstance(backend, MemoryBackend)
    yield backend
    for conn in backend.kept.values():
        conn.close()


def test_a_backend_installed_as_an_entry_point_is_used_by_catalog_index_and_the_readers(memory, trained_run,
                                                                                         tmp_path, capsys):  # fmt: skip
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    code = main(["catalog", "index", str(trained_run.run), str(photos), "--catalog", "memory:shop", "--workers", "0",
                 "--batch-size", "4", "--device", "cpu"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and "broken.jpg" in err  # the unreadable photo is listed, the rest indexed
    assert "memory:shop (in memory): 9 added" in out  # the summary shows the location as its backend does
    assert "memory:shop" in memory.kept and sorted(tmp_path.iterdir()) == [tmp_path / "photos", tmp_path / "site"]

    store = open_store("memory:shop")
    assert isinstance(store.db, SqliteDatabase) and not store.db.writable and store.count() == 9
    store.close()
    catalog = Catalog("memory:shop")
    assert len(catalog) == 9 and catalog.root == photos.resolve()
    catalog.close()
    assert main(["catalog", "facets", "--catalog", "memory:shop"]) == 0
    assert capsys.readouterr().out.count("no value=9") == len(catalog.attributes)

    with pytest.raises(UserError, match="no such catalogue"):  # reading never creates one
        open_store("memory:elsewhere")


def test_tagging_on_several_processes_asks_the_backend(memory, tmp_path):
    """A backend without `shared_writers` is refused under torchrun before anything is opened or loaded."""
    two = DistributedContext(rank=0, world_size=2)
    with pytest.raises(UserError, match=r"^memory:shop \(in memory\): tagging on several processes"):
        index_catalog("memory:shop", tmp_path, tmp_path / "no-model", context=two, progress=False)
    assert "memory:shop" not in memory.kept


def test_a_location_no_backend_claims_is_an_sqlite_file(memory, tmp_path):
    db = tmp_path / "memory.sqlite"  # the registered memory backend claims `memory:` locations only
    assert backend_for(db) is backends.FALLBACK and backend_for(str(db)).name == "sqlite"
    store = open_store(db, write=True)
    assert isinstance(store.db, SqliteDatabase) and store.db.path == db
    store.close()
    assert db.read_bytes().startswith(b"SQLite format 3\x00")
    assert shown_location(db) == str(db)


@pytest.mark.parametrize("url", ["postgresql://tagger:hunter2@db.example/catalog", "POSTGRES://tagger@/catalog"])
def test_a_postgresql_url_goes_to_postgresql(memory, url):
    backend = backend_for(url)
    assert backend.name == "postgresql" and backend.shared_writers
    assert "hunter2" not in shown_location(url)


def test_the_built_in_backends_are_there_when_the_metadata_is_stale(monkeypatch, fresh_registry, tmp_path):
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: importlib.metadata.EntryPoints(()))
    assert [b.name for b in registered()] == ["sqlite", "postgresql"]
    assert backend_for("postgresql://tagger@/catalog").name == "postgresql"
    store = open_store(tmp_path / "c.sqlite", write=True)
    assert isinstance(store.db, SqliteDatabase)
    store.close()


def test_pyproject_declares_the_built_in_backends():
    """The entry points an install records, and those the registry falls back to, are the same objects."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    entries = declared[backends.ENTRY_POINT_GROUP]
    loaded = {name: importlib.metadata.EntryPoint(name, target, backends.ENTRY_POINT_GROUP).load()
              for name, target in entries.items()}  # fmt: skip
    assert loaded == {backend.name: backend for backend in backends.BUILT_IN}


def test_a_broken_backend_package_costs_only_its_own_locations(monkeypatch, fresh_registry, tmp_path):
    install_entry_points(tmp_path / "site", "broken-catalogue",
                         {"broken": "no_such_module_anywhere:BACKEND", "notone": "pathlib:Path.home",
                          "pg": f"{__name__}:Impostor"})  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.warns(RuntimeWarning) as warned:
        found = registered()
    messages = sorted(str(w.message) for w in warned)
    assert len(messages) == 3
    assert "'broken'" in messages[0] and "cannot be loaded" in messages[0]
    assert "'notone'" in messages[1] and "not a catalogue Backend" in messages[1]
    assert "'pg'" in messages[2] and "named 'postgresql', as another backend is" in messages[2]
    assert found == backends.BUILT_IN
    store = open_store(tmp_path / "c.sqlite", write=True)
    store.close()


def test_a_location_two_backends_claim_is_refused(memory, tmp_path, monkeypatch):
    install_entry_points(tmp_path / "more", "another-memory", {"memory2": f"{__name__}:OtherMemoryBackend"})
    monkeypatch.syspath_prepend(str(tmp_path / "more"))
    registered.cache_clear()
    with pytest.raises(UserError, match=r"memory:shop: claimed by several catalogue backends \(memory, memory2\)"):
        open_store("memory:shop", write=True)
    assert shown_location("postgresql://tagger:hunter2@/catalog") == "postgresql://tagger:***@/catalog"
