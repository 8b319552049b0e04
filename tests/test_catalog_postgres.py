"""PostgreSQL as the shared catalogue: the same answers as SQLite, many writers at once, tagging under torchrun.

All against a real PostgreSQL server started by the test session (tests/postgres.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.catalog.store import ItemRow, TagRow
from fashionattr.schema import FASHIONAI
from helpers import catalogue_predictor, cli_command, make_photo_folder, torchrun


def answers(catalog: Catalog) -> dict:
    """Everything a user can ask of a catalogue, keyed by path (ids differ between databases)."""
    everything = catalog.search(limit=100)
    path_of = {item.id: item.path for item in everything.items}
    attribute, value = next((a, v) for a, c in catalog.facets().items() for v, n in c.items() if n > 0)
    other = next(a for a in catalog.attributes if a != attribute)
    filtered = catalog.search({attribute: value}, min_confidence=0.05, limit=100)
    return {
        "count": len(catalog),
        "errors": catalog.errors(),
        "all": [(i.path, {a: (t.value, round(t.confidence, 6)) for a, t in i.tags.items()}) for i in everything.items],
        "filtered": (filtered.total, [i.path for i in filtered.items]),
        "two filters": [i.path for i in catalog.search({attribute: value, other: "Invisible"}, limit=100).items],
        "facets": catalog.facets(),
        "facets filtered": catalog.facets({attribute: value}, min_confidence=0.1),
        "page": [i.path for i in catalog.search(limit=3, offset=2).items],
        "similar": {
            path: [(path_of[i.id], round(s, 5)) for i, s in catalog.similar(item_id, k=5)]
            for item_id, path in path_of.items()
        },
        "probabilities": catalog.item(everything.items[0].path, probabilities=True).to_dict()["tags"],
    }


def test_both_backends_give_the_same_answers(trained_run, postgres, tmp_path):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    predictor = catalogue_predictor(trained_run.run)
    results = []
    for db in (str(tmp_path / "catalog.sqlite"), postgres.new_database()):
        index_catalog(db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
        catalog = Catalog(db)
        results.append(answers(catalog))
        catalog.close()
    sqlite_answers, postgres_answers = results
    assert sqlite_answers["count"] == 9
    for key in sqlite_answers:
        assert postgres_answers[key] == sqlite_answers[key], key


def fake_row(path: str, seed: int) -> tuple[ItemRow, list[TagRow]]:
    embedding = bytes([seed % 256]) * (4 * 8)
    tags = [TagRow(a.name, a.classes[seed % a.num_classes], 0.5 + (seed % 7) / 20, "{}") for a in FASHIONAI]
    return ItemRow(path, f"hash-{seed}", seed, float(seed), embedding), tags


def test_concurrent_writers_leave_one_row_per_path_and_lose_no_update(postgres):
    """Eight connections write overlapping batches at once; every path ends as one complete item, and the change
    log (generations and tombstones) accounts for every write."""
    url = postgres.new_database()
    setup = open_store(url, write=True)
    setup.set_meta({"schema": json.dumps(FASHIONAI.to_dict())})
    setup.close()
    writers, rounds, paths = 8, 12, [f"shared/{n:03d}.jpg" for n in range(40)]
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        store = open_store(url, write=True)
        try:
            for r in range(rounds):
                batch = [fake_row(paths[(worker * 7 + r * 3 + j) % len(paths)], worker * 1000 + r) for j in range(6)]
                mine = fake_row(f"own/{worker}-{r}.jpg", worker)
                store.write_batch([*batch, mine], [], now=float(r))
                if r % 4 == 3:
                    store.remove_paths([f"own/{worker}-{r - 1}.jpg"], [])
        except BaseException as exc:
            failures.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    store = open_store(url)
    rows = store.db.execute("SELECT path, COUNT(*) FROM items GROUP BY path")
    assert all(count == 1 for _, count in rows)
    removed = writers * (rounds // 4)
    assert len(rows) == len(paths) + writers * rounds - removed
    incomplete = store.db.execute("SELECT COUNT(*) FROM items i WHERE (SELECT COUNT(*) FROM tags t "
                                  "WHERE t.item_id = i.id) != ?", [len(FASHIONAI)])[0][0]  # fmt: skip
    assert incomplete == 0
    for item_id, sha in store.db.execute("SELECT id, sha256 FROM items"):  # no item carries another write's tags
        seed = int(sha.removeprefix("hash-"))
        expected = {a.name: a.classes[seed % a.num_classes] for a in FASHIONAI}
        assert {row[1]: row[2] for row in store.tags_of([item_id])} == expected
    # one generation per write transaction (and one for the schema), none shared
    assert store.generation() == 1 + writers * rounds + removed
    changes = store.changes_since(0)
    assert len(changes.upserted) == len(rows) and len(changes.removed) == removed
    store.close()


@pytest.mark.slow
def test_two_indexers_on_one_folder_at_once_leave_one_row_per_image(trained_run, postgres, tmp_path):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    url = postgres.new_database()
    argv = cli_command("catalog", "index", str(trained_run.run), str(photos), "--catalog", url, "--workers", "0",
                       "--batch-size", "2", "--device", "cpu")  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [1, 1], outputs  # broken.jpg listed by both, the rest indexed
    store = open_store(url)
    assert store.count() == 9
    assert store.db.execute("SELECT COUNT(*) FROM tags")[0][0] == 9 * len(FASHIONAI)
    assert [p for p, _ in store.errors()] == ["broken.jpg"]
    store.close()


@pytest.mark.slow
def test_torchrun_ranks_tag_disjoint_shards_and_a_killed_rank_is_finished_by_the_rerun(trained_run, postgres,
                                                                                      tmp_path):  # fmt: skip
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    url = postgres.new_database()
    worker = Path(__file__).with_name("catalog_worker.py")
    killed = torchrun(str(worker), str(photos), url, str(trained_run.run), codes=None)
    assert killed.returncode != 0  # rank 1 was killed, so torchrun reports the run as failed
    store = open_store(url)
    survived = store.count()
    store.close()
    assert survived < 9

    rerun = torchrun("-m", "fashionattr", "catalog", "index", str(trained_run.run), str(photos), "--catalog",
                     url, "--workers", "0", "--batch-size", "2", "--device", "cpu", codes=(0, 1))  # fmt: skip
    assert rerun.returncode == 1  # broken.jpg is listed
    summary = [line for line in rerun.stdout.splitlines() if "added" in line]
    assert len(summary) == 1, rerun.stdout  # one summary, from rank 0
    assert f"{9 - survived} added" in summary[0] and f"{survived} unchanged" in summary[0]
    per_rank = [int(n) for n in summary[0].rsplit("tagged ", 1)[1].split(", ")]
    assert len(per_rank) == 2 and sum(per_rank) == 9 - survived
    catalog = Catalog(url)
    assert len(catalog) == 9 and [p for p, _ in catalog.errors()] == ["broken.jpg"]
    assert json.loads(json.dumps(catalog.facets()))  # the catalogue answers as a whole
    catalog.close()


@pytest.mark.slow
def test_the_service_browses_a_postgresql_catalogue(trained_run, postgres, tmp_path):
    import httpx

    from fashionattr.bench.service_process import serve_in_child as start_server

    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    url = postgres.new_database()
    predictor = catalogue_predictor(trained_run.run)
    index_catalog(url, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    with start_server(trained_run.run, tmp_path / "server.log", "--catalog", url) as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        assert "9 images, exact similarity index built" in server.log.read_text()
        info = client.get("/v1/catalog").json()
        assert info["items"] == 9 and info["errors"] == 1 and info["similar_uploads"] is True
        facets = client.get("/v1/catalog/facets").json()
        attribute, value = next((a, v) for a, c in facets["facets"].items() for v, n in c.items() if n > 0)
        found = client.get("/v1/catalog/search", params={"filter": f"{attribute}={value}"}).json()
        assert found["total"] == facets["facets"][attribute][value] == len(found["items"])
        first = found["items"][0]
        assert client.get(first["image_url"]).status_code == 200
        similar = client.get(f"/v1/catalog/similar/{first['id']}", params={"k": 3}).json()
        assert similar["results"][0]["id"] == first["id"] and len(similar["results"]) == 3
        upload = sorted((photos / "pant_length").iterdir())[0]
        response = client.post(
            "/v1/catalog/similar", params={"k": 1}, files=[("files", (upload.name, upload.read_bytes()))]
        )
        assert response.json()["results"][0]["path"] == f"pant_length/{upload.name}"


def test_a_reader_recovers_when_the_server_drops_its_connection(trained_run, postgres, tmp_path):
    """A service outlives a PostgreSQL restart or failover: the lost connection is replaced at the next query."""
    import psycopg

    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    url = postgres.new_database()
    predictor = catalogue_predictor(trained_run.run)
    index_catalog(url, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    catalog = Catalog(url)
    assert len(catalog) == 9
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                              "current_database() AND pid <> pg_backend_pid()").fetchall()  # fmt: skip
    assert ended and all(ok for (ok,) in ended)
    assert len(catalog) == 9  # the query that finds the connection gone runs again on a new one
    assert catalog.facets() and catalog.similar(catalog.search(limit=1).items[0].id, k=2)
    catalog.close()
