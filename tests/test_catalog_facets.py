"""Facets and tag search from the facet index: exact against a full GROUP BY over the tag rows, on random filters and
thresholds, while writers change the catalogue, and on a catalogue of the previous format. Only tags that apply
count; re-indexing trusts an unchanged file's size and time without reading it.

Every case runs on an SQLite file and on a real PostgreSQL server (`catalog_db`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.catalog.backends import backend_for
from fashionattr.catalog.facets import float32_at_least
from fashionattr.catalog.store import CatalogStore, ItemRow, TagRow
from fashionattr.cli import main
from fashionattr.inference import Predictor
from fashionattr.schema import FASHIONAI
from helpers import Interrupted, InterruptingPredictor, catalogue_predictor, make_photo_folder

CONFIDENCES = [0.25, 0.5, 0.5000001, 0.75, 0.9, 1.0]
"""Few distinct confidences: many ties, and thresholds that land exactly on stored values."""


def new_catalogue(db: str, root: Path) -> CatalogStore:
    store = open_store(db, write=True)
    store.set_meta({"root": str(root), "model": "synthetic", "model_fingerprint": "synthetic",
                    "schema": json.dumps(FASHIONAI.to_dict())})  # fmt: skip
    return store


def random_item(rng: random.Random, path: str, generation: int = 0) -> tuple[ItemRow, list[TagRow]]:
    """An item whose tags have few distinct confidences and apply about four times in five."""
    tags = [TagRow(a.name, rng.choice(a.classes[:3]), rng.choice(CONFIDENCES), "{}", applies=rng.random() < 0.8,
                   applicability=rng.random()) for a in FASHIONAI]  # fmt: skip
    embedding = np.asarray([rng.random() + 0.01 for _ in range(8)], dtype=np.float32).tobytes()
    return ItemRow(path, f"{generation:x}-{path}", 1, 0.0, embedding), tags


def random_filters(rng: random.Random) -> dict[str, str]:
    chosen = rng.sample(list(FASHIONAI), rng.choice([0, 1, 1, 2, 3]))
    return {a.name: rng.choice(a.classes[:3]) for a in chosen}


def full_count(store: CatalogStore, filters: dict[str, str], threshold: float) -> dict[str, Any]:
    """What the facet index must answer, by GROUP BY and COUNT over the tag rows (in the caller's transaction)."""
    counts, no_value = {}, {}
    for attribute in FASHIONAI:
        others = {a: v for a, v in filters.items() if a != attribute.name}
        found = store.value_counts(others, threshold, attribute=attribute.name).get(attribute.name, {})
        counts[attribute.name] = {cls: found.get(cls, 0) for cls in attribute.classes}
        matching = store.search(others, threshold, limit=0, offset=0)[0]
        no_value[attribute.name] = matching - sum(counts[attribute.name].values())
    return {"total": store.search(filters, threshold, limit=0, offset=0)[0], "counts": counts, "no_value": no_value}


def answered(catalog: Catalog, filters: dict[str, str], threshold: float) -> tuple[int, dict[str, Any]]:
    facets = catalog.facet_counts(filters, threshold)
    return facets.generation, {"total": facets.total, "counts": facets.counts, "no_value": facets.no_value}


def test_float32_threshold_is_exact():
    for threshold in (0.0, 0.5, 0.50000001, 0.5000001, 1 / 3, 0.9999999, 1.0):
        bound = float32_at_least(threshold)
        assert float(bound) >= threshold
        assert float(np.nextafter(bound, np.float32(-1))) < threshold


def test_facets_and_search_equal_a_full_count_on_random_filters(catalog_db, tmp_path):
    rng = random.Random(7)
    store = new_catalogue(catalog_db, tmp_path)
    store.write_batch([random_item(rng, f"p/{n:04d}.jpg") for n in range(400)], [], now=0.0)
    store.remove_paths([f"p/{n:04d}.jpg" for n in range(0, 400, 9)], [])  # removed items must not count
    store.close()
    catalog = Catalog(catalog_db)
    reference = open_store(catalog_db)
    for _ in range(25):
        filters, threshold = random_filters(rng), rng.choice([0.0, *CONFIDENCES, rng.random()])
        assert answered(catalog, filters, threshold)[1] == full_count(reference, filters, threshold), (
            filters,
            threshold,
        )
        if filters:  # the same page, in the same order (the least confident filter, then the lower id)
            offset = rng.choice([0, 3, 20])
            page = catalog.search(filters, threshold, limit=7, offset=offset)
            total, rows = reference.search(filters, threshold, limit=7, offset=offset)
            assert page.total == total and [item.id for item in page.items] == [row[0] for row in rows]
    catalog.close()
    reference.close()


def test_facets_stay_exact_while_writers_change_the_catalogue(catalog_db, tmp_path):
    """Writers add, re-tag and remove items while a reader counts; every answer equals a full count of the
    generation it reports (checked whenever the database still holds that generation), and the last one equals the
    final state."""
    store = new_catalogue(catalog_db, tmp_path)
    store.write_batch([random_item(random.Random(n), f"p/{n:04d}.jpg") for n in range(100)], [], now=0.0)
    store.close()
    shared = backend_for(catalog_db).shared_writers
    writers = 2 if shared else 1  # SQLite takes one writer at a time
    failures: list[BaseException] = []
    done = threading.Event()

    def write(worker: int) -> None:
        rng = random.Random(worker)
        writer = open_store(catalog_db, write=True) if worker == 0 or shared else None
        assert writer is not None
        try:
            for batch in range(30):
                paths = [f"p/{rng.randrange(160):04d}.jpg" for _ in range(8)]
                writer.write_batch([random_item(rng, p, batch) for p in dict.fromkeys(paths)], [], now=1.0)
                if batch % 3 == 2:
                    writer.remove_paths([f"p/{rng.randrange(160):04d}.jpg" for _ in range(3)], [])
                time.sleep(0.005)
        except BaseException as exc:
            failures.append(exc)
        finally:
            writer.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    catalog = Catalog(catalog_db)
    reference = open_store(catalog_db)
    rng = random.Random(1)
    compared = 0
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) or not done.is_set():
        if not any(t.is_alive() for t in threads):
            done.set()  # one more round after the writers finished: the final state
        filters, threshold = random_filters(rng), rng.choice([0.0, 0.5, 0.9])
        generation, answer = answered(catalog, filters, threshold)
        with reference.db.transaction(write=False):
            if reference.generation() == generation:
                assert answer == full_count(reference, filters, threshold), (filters, threshold)
                compared += 1
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert compared >= 3
    generation, answer = answered(catalog, {}, 0.0)
    assert generation == reference.generation() and answer == full_count(reference, {}, 0.0)
    catalog.close()
    reference.close()


class NotApplying:
    """A catalogue predictor whose skirt and pant length do not apply to the sleeve-length photos (as a close-up would
    show no hem): those answers get applies=False and value None, as the predictor's contract says."""

    ATTRIBUTES = ("skirt_length_labels", "pant_length_labels")

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict_paths(self, *args: Any, **kwargs: Any) -> Any:
        for entry in self.predictor.predict_paths(*args, **kwargs):
            if "sleeve_length" in str(getattr(entry, "source", "")):
                for name in self.ATTRIBUTES:
                    result = entry.attributes[name]
                    result.applies, result.applicability, result.value = False, 0.1, None
            yield entry


def test_only_tags_that_apply_are_counted_matched_and_shown(trained_run, catalog_db, tmp_path, capsys):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    predictor = catalogue_predictor(trained_run.run)  # every tag applies, but for the two made not to below
    index_catalog(catalog_db, photos, trained_run.run, predictor=NotApplying(predictor), batch_size=4, workers=0,
                  progress=False)  # fmt: skip
    catalog = Catalog(catalog_db)
    skirt = "skirt_length_labels"
    closeup = catalog.item(f"sleeve_length/{sorted((photos / 'sleeve_length').iterdir())[0].name}")
    assert closeup is not None
    tag = closeup.tags[skirt]
    assert tag.value is None and tag.applies is False and tag.applicability == pytest.approx(0.1)
    assert closeup.to_dict()["tags"][skirt]["value"] is None and closeup.to_dict()["tags"][skirt]["applies"] is False
    full = catalog.item(f"coat_length/{sorted((photos / 'coat_length').iterdir())[0].name}")
    assert full is not None and full.tags[skirt].value is not None and full.tags[skirt].applies is True

    facets = catalog.facet_counts()
    assert sum(facets.counts[skirt].values()) == 6 and facets.no_value[skirt] == 3
    assert facets.not_applicable[skirt] == 3 and facets.no_value["coat_length_labels"] == 0
    for value, count in facets.counts[skirt].items():
        found = catalog.search({skirt: value}, limit=100)
        assert found.total == count and closeup.id not in {item.id for item in found.items}
    confident = catalog.facet_counts(min_confidence=1.0)  # nothing of a 2-step model is that sure
    assert confident.no_value[skirt] == 9 and confident.not_applicable[skirt] == 3
    store = open_store(catalog_db)
    assert full_count(store, {}, 0.0)["counts"] == facets.counts
    store.close()

    assert main(["catalog", "search", "--catalog", catalog_db, "--limit", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    closeup_line = next(line for line in lines if closeup.path in line)
    assert "skirt_length_labels=n/a" in closeup_line and "pant_length_labels=n/a" in closeup_line
    assert main(["catalog", "similar", "--catalog", catalog_db, str(photos / closeup.path), "-k", "1"]) == 0
    assert "skirt_length_labels=n/a" in capsys.readouterr().out
    assert main(["catalog", "facets", "--catalog", catalog_db]) == 0
    rows = {line.split("\t")[0]: line.split("\t")[2] for line in capsys.readouterr().out.splitlines()}
    assert rows["skirt_length_labels"] == "no value=3" and rows["coat_length_labels"] == "no value=0"
    catalog.close()


def downgrade_to_format_2(db: str) -> None:
    """Make a format 3 catalogue what the previous version wrote: no applies columns, no packed tag rows, an
    unsealed saved index."""
    statements = ["ALTER TABLE tags DROP COLUMN applies", "ALTER TABLE tags DROP COLUMN applicability",
                  "ALTER TABLE items DROP COLUMN tag_row",
                  "UPDATE fashionattr_catalog SET value = '2' WHERE key = 'format'"]  # fmt: skip
    if backend_for(db).name == "postgresql":
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with sqlite3.connect(db) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()


def test_a_catalogue_of_the_previous_format_opens_and_is_upgraded_by_the_next_index(trained_run, catalog_db,
                                                                                    tmp_path):  # fmt: skip
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    predictor = catalogue_predictor(trained_run.run)
    index_catalog(catalog_db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    before = Catalog(catalog_db)
    facets, listed = before.facet_counts(), before.search(limit=100)
    before.close()
    downgrade_to_format_2(catalog_db)

    old = Catalog(catalog_db)  # read as it is: every tag applies
    assert old.store.format == "2"
    assert old.facet_counts().counts == facets.counts
    attribute, value = next((a, v) for a, c in facets.counts.items() for v, n in c.items() if n > 0)
    assert old.search({attribute: value}).total == facets.counts[attribute][value]
    assert [i.path for i in old.search(limit=100).items] == [i.path for i in listed.items]
    assert all(tag.applies for item in old.search(limit=100).items for tag in item.tags.values())
    assert len(old.similar(listed.items[0].id, k=3)) == 3
    old.close()

    report = index_catalog(catalog_db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0,
                           progress=False)  # fmt: skip
    assert (report.added, report.updated, report.unchanged) == (0, 0, 9)  # upgraded in place, nothing re-tagged
    upgraded = Catalog(catalog_db)
    assert upgraded.store.format == "3" and upgraded.facet_counts().counts == facets.counts
    upgraded.close()


def test_reindexing_trusts_size_and_time_and_rehash_reads_everything(trained_run, catalog_db, tmp_path, monkeypatch):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    past = time.time() - 3600
    for path in photos.rglob("*.jpg"):
        os.utime(path, (past, past))
    predictor = Predictor.from_path(trained_run.run, device="cpu")

    def index(**options: Any) -> Any:
        return index_catalog(catalog_db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0,
                             progress=False, **options)  # fmt: skip

    index()
    import fashionattr.catalog.indexing as indexing

    hashed: list[str] = []
    real_file_state = indexing.file_state

    def counting_file_state(path: Any) -> Any:
        hashed.append(Path(path).name)
        return real_file_state(path)

    monkeypatch.setattr(indexing, "file_state", counting_file_state)
    again = index()
    assert again.unchanged == 9 and hashed == ["broken.jpg"]  # only the unreadable file is looked at again

    changed = sorted((photos / "coat_length").iterdir())[0]
    shutil.copy(sorted((photos / "pant_length").iterdir())[0], changed)  # new content, new time
    hashed.clear()
    report = index()
    assert (report.updated, report.unchanged) == (1, 8) and sorted(hashed) == sorted(["broken.jpg", changed.name])

    quiet = sorted((photos / "sleeve_length").iterdir())[0]  # new content behind the old size and time
    stamp = quiet.stat()
    quiet.write_bytes(bytes(255 - b for b in quiet.read_bytes()))
    os.utime(quiet, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert index().updated == 0  # trusted by size and time, as documented
    hashed.clear()
    rehashed = index(rehash=True)
    assert len(hashed) == 10 and rehashed.updated == 0 and [p for p, _ in rehashed.errors] == [
        "broken.jpg", f"sleeve_length/{quiet.name}"]  # fmt: skip  # read again: now undecodable


def test_an_interrupted_index_keeps_facets_exact(trained_run, catalog_db, tmp_path):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    with pytest.raises(Interrupted):
        index_catalog(catalog_db, photos, trained_run.run, predictor=InterruptingPredictor(predictor, after=6),
                      batch_size=4, workers=0, progress=False)  # fmt: skip
    catalog = Catalog(catalog_db)
    reference = open_store(catalog_db)
    assert answered(catalog, {}, 0.0)[1] == full_count(reference, {}, 0.0)
    index_catalog(catalog_db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0, progress=False)
    assert answered(catalog, {}, 0.0)[1] == full_count(reference, {}, 0.0)
    assert catalog.facet_counts().total == 9
    catalog.close()
    reference.close()
