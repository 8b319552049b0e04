"""The catalogue against hostile inputs: files and databases the user did not ask to change stay untouched, bad and
special image files never stop or hang `catalog index`, damaged stored bytes never reach native code, and no output
holds a database password.

A catalogue is identified (its marker table) before anything is written: another program's SQLite file or
PostgreSQL database is refused with one line and exit 2, read-only commands open SQLite read-only and leave the
journal mode alone, and nothing creates a database where only reading was asked. Every unusable file of the image
corpus (tests/corpus.py) is recorded as an error by name and the rest indexed; a FIFO or a link to a device named
like an image is reported as unreadable, never opened.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from corpus import BLOB_DAMAGES, NON_UTF8_NAME, SECRET_LOCATIONS, BlobDamage
from fashionattr.bench.service_process import serve_in_child as start_server
from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.catalog.blobs import verify
from fashionattr.cli import main
from fashionattr.errors import UserError
from fashionattr.inference import Predictor
from helpers import CliRun, TrainedRun, assert_no_traceback, bad_cases, cli_command, make_photo_folder, run_cli

SIDECARS = ("-wal", "-shm", "-journal")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_sqlite(path: Path, wal: bool = False) -> Path:
    """Another program's database that happens to have an `items` table (as the catalogue does)."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO items (name) VALUES (?)", [("invoice",), ("receipt",), ("order",)])
    conn.commit()
    conn.close()
    assert not any(Path(f"{path}{s}").exists() for s in SIDECARS)
    return path


def assert_one_line_error(result: CliRun, *words: str) -> None:
    assert result.code == 2, result.err
    err = result.err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def read_only_commands(db: str, image: Path) -> list[list[str]]:
    return [["catalog", "search", "--catalog", db], ["catalog", "facets", "--catalog", db],
            ["catalog", "similar", "--catalog", db, str(image)]]  # fmt: skip


@pytest.fixture
def photos(trained_run, tmp_path: Path) -> Path:
    return make_photo_folder(trained_run.data, tmp_path / "photos")


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_a_foreign_sqlite_file_is_never_changed(trained_run, photos, tmp_path, wal):
    db = foreign_sqlite(tmp_path / "other.sqlite", wal=wal)
    before = digest(db)
    result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog", str(db),
                     "--workers", "0", "--device", "cpu")  # fmt: skip
    assert_one_line_error(result, str(db), "not a fashionattr catalogue", "items")
    for argv in read_only_commands(str(db), photos / "broken.jpg"):
        assert_one_line_error(run_cli(*argv), "not a fashionattr catalogue")
    with pytest.raises(UserError, match="not a fashionattr catalogue"):
        Catalog(db)
    assert digest(db) == before  # same bytes: no row deleted, no table added, journal mode as it was
    assert not any(Path(f"{db}{s}").exists() for s in SIDECARS)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 3
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == ("wal" if wal else "delete")


def test_files_that_are_not_sqlite_are_refused_untouched(trained_run, photos, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("shopping list\n" * 20)
    before = digest(text)
    result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog", str(text))
    assert_one_line_error(result, "not an SQLite file")
    assert_one_line_error(run_cli("catalog", "search", "--catalog", str(text)), "not an SQLite file")
    assert digest(text) == before
    fifo = tmp_path / "pipe.sqlite"
    os.mkfifo(fifo)
    assert_one_line_error(run_cli("catalog", "search", "--catalog", str(fifo)), "not an SQLite file")


def test_read_only_commands_never_create_a_database(photos, tmp_path):
    missing = tmp_path / "missing.sqlite"
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for db in (missing, empty):
        for argv in read_only_commands(str(db), photos / "broken.jpg"):
            assert_one_line_error(run_cli(*argv), "no such catalogue")
    assert not missing.exists()
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "photos"]


def test_an_older_catalogue_format_is_named_and_left_alone(trained_run, photos, tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # the tables of format 1
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, path TEXT)")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "1"), ("model_fingerprint", "abc")])
    conn.close()
    before = digest(db)
    result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog", str(db))
    assert_one_line_error(result, "older fashionattr", "new --catalog")
    assert digest(db) == before


def test_a_second_indexer_of_an_sqlite_catalogue_is_told_it_is_busy(trained_run, photos, tmp_path):
    db = tmp_path / "catalog.sqlite"
    writer = open_store(db, write=True)  # what a running `catalog index` holds for its whole run
    try:
        result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog",
                         str(db), "--workers", "0", "--device", "cpu")  # fmt: skip
        assert_one_line_error(result, "another `fashionattr catalog index` is writing")
    finally:
        writer.close()
    result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog", str(db), "--workers", "0",
                     "--device", "cpu")  # fmt: skip
    assert result.code == 1 and len(Catalog(db)) == 9  # free again: broken.jpg listed, the rest indexed


def test_tagging_on_several_processes_needs_postgresql(trained_run, photos, tmp_path):
    from fashionattr.distributed import DistributedContext

    db = tmp_path / "catalog.sqlite"
    with pytest.raises(UserError, match="postgresql://"):
        index_catalog(db, photos, trained_run.run, context=DistributedContext(rank=0, world_size=2), progress=False)
    assert not db.exists()


def test_a_foreign_postgresql_database_is_refused_untouched(trained_run, photos, postgres):
    import psycopg

    url = postgres.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO items (name) VALUES ('invoice'), ('receipt')")
    result = run_cli("catalog", "index", str(trained_run.run), str(photos), "--catalog", url,
                     "--workers", "0", "--device", "cpu")  # fmt: skip
    assert_one_line_error(result, "not a fashionattr catalogue", "items")
    for argv in read_only_commands(url, photos / "broken.jpg"):
        assert_one_line_error(run_cli(*argv), "not a fashionattr catalogue")
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        assert [t for (t,) in tables] == ["items"]
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 2

    empty = postgres.new_database()
    for argv in read_only_commands(empty, photos / "broken.jpg"):
        assert_one_line_error(run_cli(*argv), "no such catalogue")
    with psycopg.connect(empty) as conn:
        tables = conn.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert tables.fetchone()[0] == 0


def test_an_unreachable_postgresql_server_is_one_line(tmp_path):
    url = f"postgresql://someone:secret@/catalog?host={tmp_path}"  # no server listens on this socket folder
    result = run_cli("catalog", "search", "--catalog", url)
    assert_one_line_error(result, "cannot connect to PostgreSQL")
    assert "secret" not in result.err


@pytest.mark.timeout(300)
def test_fifos_and_device_links_are_reported_without_hanging(trained_run, tmp_path):
    folder = make_photo_folder(trained_run.data, tmp_path / "photos")
    os.mkfifo(folder / "pipe.jpg")  # opening it for reading would block until a writer came
    os.symlink("/dev/zero", folder / "zero.jpg")  # reading it would never end
    os.symlink("/dev/urandom", folder / "urandom.png")
    os.mkfifo(folder / "coat_length" / "nested-pipe.jpeg")
    db = tmp_path / "catalog.sqlite"
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    report = index_catalog(db, folder, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    errors = dict(report.errors)
    assert "FIFO" in errors["pipe.jpg"] and "FIFO" in errors["coat_length/nested-pipe.jpeg"]
    assert "character device" in errors["zero.jpg"] and "character device" in errors["urandom.png"]
    assert set(errors) == {"pipe.jpg", "coat_length/nested-pipe.jpeg", "zero.jpg", "urandom.png", "broken.jpg"}
    assert report.added == 9
    again = index_catalog(db, folder, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    assert (again.added, again.unchanged) == (0, 9) and dict(again.errors) == errors
    shutil.rmtree(folder / "coat_length")
    assert index_catalog(db, folder, trained_run.run, predictor=predictor, workers=0, progress=False).removed == 3


def test_catalog_index_records_bad_files_as_errors_and_goes_on(trained_run: TrainedRun, corpus, tmp_path, capsys):
    folder, cases = corpus
    db = tmp_path / "catalog.sqlite"
    argv = ["catalog", "index", str(trained_run.run), str(folder), "--catalog", str(db), "--workers", "0",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 1
    _, err = capsys.readouterr()
    assert_no_traceback(err)
    catalog = Catalog(db)
    errors = dict(catalog.errors())
    misnamed = os.fsdecode(NON_UTF8_NAME)
    assert set(errors) == set(bad_cases(cases)) | {"caf\\xe9-latin1.jpg"}
    assert "not valid UTF-8" in errors["caf\\xe9-latin1.jpg"]
    for name, case in bad_cases(cases).items():
        assert case.reason in errors[name]
    assert len(catalog) == sum(case.good for name, case in cases.items() if name != misnamed)
    assert main(argv) == 1  # a rerun changes nothing and still lists them
    assert dict(Catalog(db).errors()) == errors


# --- stored bytes that native code reads: checked first, repaired or refused in one line -------------------------

DAMAGED_IN_SUBPROCESSES = [("index-flipped-region", "sqlite"), ("embedding-nan", "sqlite"),
                           ("tag-row-flipped", "sqlite"), ("index-flipped-region", "postgresql")]  # fmt: skip
"""The corpus cases every reader also meets in a process of its own (where a crash would be a signal)."""


def damage(db: str, case: BlobDamage, item_id: int) -> None:
    """Apply one corpus damage to the stored blob it names (of item `item_id` where the blob is an item's)."""
    store = open_store(db, write=True)
    try:
        with store.db.transaction():
            if case.blob == "vector_index":
                (data,) = store.db.execute("SELECT data FROM vector_index WHERE part = 0")[0]
                store.db.execute("UPDATE vector_index SET data = ? WHERE part = 0", [case.damage(bytes(data))])
            else:
                (data,) = store.db.execute(f"SELECT {case.blob} FROM items WHERE id = ?", [item_id])[0]
                store.db.execute(f"UPDATE items SET {case.blob} = ? WHERE id = ?", [case.damage(bytes(data)), item_id])
    finally:
        store.close()


@pytest.fixture(scope="module")
def ann_catalogue(trained_run, tmp_path_factory) -> tuple[Path, Path]:
    """Nine photos indexed with a saved approximate index, to be copied and damaged."""
    folder = tmp_path_factory.mktemp("ann")
    photos = make_photo_folder(trained_run.data, folder / "photos")
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    index_catalog(folder / "catalog.sqlite", photos, trained_run.run, predictor=predictor, batch_size=4, workers=0,
                  progress=False, vector_index="ann")  # fmt: skip
    return photos, folder / "catalog.sqlite"


@pytest.mark.parametrize("case", BLOB_DAMAGES, ids=[c.id for c in BLOB_DAMAGES])
def test_every_reader_answers_or_refuses_a_damaged_blob(trained_run, ann_catalogue, tmp_path, case):
    """Each corpus damage, against every reader in this process: similar answers (leaving a damaged embedding
    out, with a note), a search from the damaged item itself is one `UserError`, facets and search answer as
    before, and `catalog index` (with --rehash for an item's bytes) repairs it."""
    photos, pristine = ann_catalogue
    db = str(tmp_path / "catalog.sqlite")
    shutil.copy(pristine, db)
    catalog = Catalog(db)
    victim, other = catalog.search(limit=2).items
    expected = catalog.facet_counts()
    catalog.close()
    damage(db, case, victim.id)

    catalog = Catalog(db, vector_index="ann")
    found = catalog.similar(other.id, k=9)
    assert other.id == found[0][0].id and len(found) == (8 if case.refused else 9)
    if case.refused:
        with pytest.raises(UserError, match=r"stored embedding of .* is damaged.*--rehash"):
            catalog.similar(victim.id, k=3)
    else:
        assert catalog.similar(victim.id, k=1)[0][0].id == victim.id
    if case.blob == "vector_index":
        assert "saved similarity index cannot be used" in " ".join(catalog.similarity.notes)
    assert catalog.facet_counts() == expected  # a damaged packed row is packed again from the tag rows
    assert catalog.search(limit=100).total == 9
    catalog.close()

    predictor = Predictor.from_path(trained_run.run, device="cpu")
    report = index_catalog(db, photos, trained_run.run, predictor=predictor, workers=0, progress=False,
                           vector_index="ann", rehash=case.blob != "vector_index")  # fmt: skip
    assert report.updated == (1 if case.refused else 0)
    store = open_store(db)
    assert verify(*store.saved_vector_index()) is None
    store.close()
    healed = Catalog(db, vector_index="ann")
    assert len(healed.similar(victim.id, k=9)) == 9 and healed.similarity.notes == []
    healed.close()


def run_reader(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    result = subprocess.run(cli_command(*argv), capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("case_id", "backend"), DAMAGED_IN_SUBPROCESSES,
                         ids=[f"{c}-{d}" for c, d in DAMAGED_IN_SUBPROCESSES])  # fmt: skip
def test_damaged_stored_bytes_never_reach_native_code(trained_run, tmp_path, case_id, backend, request):
    """A flipped region of the saved vector index, an item's embedding or its packed tag row: every reader (CLI
    similar, search, facets, index, and the service's similar route) answers or refuses in one line; the service
    stays up; `catalog index` (with --rehash for an item's bytes) repairs it."""
    import httpx

    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    db = str(tmp_path / "catalog.sqlite") if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    index_catalog(db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False,
                  vector_index="ann")  # fmt: skip
    catalog = Catalog(db)
    victim, other = catalog.search(limit=2).items
    expected_facets = catalog.facet_counts().counts
    catalog.close()
    case = next(c for c in BLOB_DAMAGES if c.id == case_id)
    blob = case.blob
    damage(db, case, victim.id)

    similar = run_reader("catalog", "similar", "--catalog", db, other.path, "-k", "9", "--vector-index", "ann")
    assert similar.returncode == 0 and len(similar.stdout.splitlines()) == (8 if blob == "embedding" else 9)
    note = {"vector_index": "saved similarity index cannot be used (its bytes do not match their checksum)",
            "embedding": "1 stored embedding(s) are damaged", "tag_row": ""}[blob]  # fmt: skip
    assert note in similar.stderr
    if blob == "embedding":
        refused = run_reader("catalog", "similar", "--catalog", db, victim.path, "--vector-index", "ann")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert "stored embedding of" in refused.stderr and "--rehash" in refused.stderr
    facets = run_reader("catalog", "facets", "--catalog", db)
    assert facets.returncode == 0
    rows = {line.split("\t")[0]: line.split("\t")[1] for line in facets.stdout.splitlines()}
    for attribute, counts in expected_facets.items():  # a damaged packed row is packed again from the tag rows
        assert rows[attribute] == "  ".join(f"{v}={n}" for v, n in counts.items())
    assert run_reader("catalog", "search", "--catalog", db).returncode == 0

    with start_server(trained_run.run, tmp_path / "server.log", "--catalog", db, "--vector-index", "ann") as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        assert client.get(f"/v1/catalog/similar/{other.id}").status_code == 200
        answer = client.get(f"/v1/catalog/similar/{victim.id}")
        assert answer.status_code == (422 if blob == "embedding" else 200), answer.text
        assert client.get("/healthz").status_code == 200 and server.process.poll() is None
    if note:
        assert note in server.log.read_text()

    rehash = ["--rehash"] if blob != "vector_index" else []
    repair = run_reader("catalog", "index", str(trained_run.run), str(photos), "--catalog", db, "--workers",
                        "0", "--device", "cpu", "--vector-index", "ann", *rehash)  # fmt: skip
    assert repair.returncode == 1, repair.stderr  # broken.jpg is listed; everything else is sound again
    store = open_store(db)
    description, data = store.saved_vector_index()
    assert verify(description, data) is None
    store.close()
    healed = run_reader("catalog", "similar", "--catalog", db, victim.path, "-k", "9", "--vector-index", "ann")
    assert healed.returncode == 0 and len(healed.stdout.splitlines()) == 9 and "note:" not in healed.stderr


# --- secrets: no output of any catalogue command holds a database password --------------------------------------

PASSWORD = "S3cr3t-p@ss/w:rd"
"""With the characters that trip naive masking: '@', '/', ':'."""


def password_url(postgres, database_url: str, password: str = PASSWORD, in_query: bool = False) -> str:
    """`database_url` (the superuser's) for the role `tagger` with `password`, in the userinfo or the query."""
    name = urlsplit(database_url).path.lstrip("/")
    if in_query:
        return f"postgresql://tagger@/{name}?host={postgres.socket_dir}&password={quote(password, safe='')}"
    return f"postgresql://tagger:{quote(password, safe='')}@/{name}?host={postgres.socket_dir}"


def test_no_catalogue_output_holds_the_password(trained_run, photos, postgres, tmp_path):
    import psycopg

    postgres.new_role("tagger", PASSWORD)
    secrets = [PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), "S3cr3t"]
    outputs: list[str] = []

    def run(*argv: str) -> int:
        result = run_cli(*argv)
        outputs.append(result.output)
        return result.code

    for in_query in (False, True):
        url = password_url(postgres, postgres.new_database(owner="tagger"), in_query=in_query)
        assert run("catalog", "index", str(trained_run.run), str(photos), "--catalog", url, "--workers", "0",
                   "--device", "cpu") == 1  # fmt: skip
        assert "9 added" in outputs[-1] and "tagger" in outputs[-1]
        assert (
            run("catalog", "search", "--catalog", url, "--where", "coat_length=Invisible", "--min-confidence", "0") == 0
        )
        assert run("catalog", "facets", "--catalog", url) == 0
        assert run("catalog", "similar", "--catalog", url, str(sorted((photos / "coat_length").iterdir())[0])) == 0
        wrong = password_url(postgres, url, password="not-" + PASSWORD, in_query=in_query)
        secrets += ["not-" + PASSWORD, quote("not-" + PASSWORD, safe="")]
        for argv in (["catalog", "index", str(trained_run.run), str(photos), "--catalog", wrong],
                     ["catalog", "search", "--catalog", wrong]):  # fmt: skip
            assert run(*argv) == 2 and "password authentication failed" in outputs[-1]
    foreign = password_url(postgres, postgres.new_database(owner="tagger"))
    with psycopg.connect(foreign, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    assert run("catalog", "index", str(trained_run.run), str(photos), "--catalog", foreign) == 2
    assert "not a fashionattr catalogue" in outputs[-1]
    assert run("catalog", "facets", "--catalog", foreign) == 2

    with start_server(trained_run.run, tmp_path / "server.log", "--catalog", url) as server:
        import httpx

        page = httpx.get(f"{server.url}/v1/catalog", timeout=60).text
    outputs += [server.log.read_text(), page]
    with psycopg.connect(url) as conn:  # what the catalogue stores about itself
        outputs += [str(conn.execute("SELECT * FROM fashionattr_catalog").fetchall())]
    everything = "\n".join(outputs)
    assert "***" in everything
    for secret in secrets:
        assert secret not in everything, secret


@pytest.mark.parametrize("case", SECRET_LOCATIONS, ids=[c.id for c in SECRET_LOCATIONS])
def test_every_spelling_of_a_password_is_masked(case):
    from fashionattr.catalog.backends import shown_location, without_secrets

    shown = shown_location(case.url)
    scrubbed = without_secrets(f"connection failed for {case.url} ({' '.join(case.secrets)})", case.url)
    assert "***" in shown and "***" in scrubbed
    for secret in case.secrets:
        assert secret not in shown and secret not in scrubbed, secret
    assert ("tagger" in shown or case.id == "no-user") and "catalog" in shown  # the rest is still there to read
