"""The vector-index seam: exact and approximate indexes agree, update in place, persist; the catalogue never
returns an item that is gone, even from an index built before it went."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionattr.bench.embeddings import synthetic_embeddings, synthetic_queries
from fashionattr.catalog import Catalog, index_catalog, open_store
from fashionattr.catalog.vectors import ApproximateIndex, ExactIndex, index_from_bytes, resolve_kind, unit
from fashionattr.inference import Predictor
from fashionattr.schema import FASHIONAI
from helpers import CATALOG_BACKENDS, make_photo_folder

DIM = 64
COUNT = 3000


def recall_at_10(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(1000, 1000 + COUNT, dtype=np.int64)
    return ids, synthetic_embeddings(COUNT, DIM, seed=3), synthetic_queries(50, DIM, seed=3)


def test_the_approximate_index_finds_what_the_exact_one_finds(vectors):
    ids, matrix, queries = vectors
    exact, approximate = ExactIndex(DIM), ApproximateIndex(DIM)
    for index in (exact, approximate):
        index.upsert(ids, matrix)
        assert len(index) == COUNT
    truth = [exact.search(q, 10)[0] for q in queries]
    found = [approximate.search(q, 10)[0] for q in queries]
    assert recall_at_10(found, truth) >= 0.95
    best, scores = exact.search(matrix[7], 3)
    assert best[0] == ids[7] and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)
    assert approximate.search(matrix[7], 1)[0][0] == ids[7]


@pytest.mark.parametrize("kind", ["exact", "ann"])
def test_updates_replace_and_removals_are_never_returned(vectors, kind):
    ids, matrix, _ = vectors
    index = ExactIndex(DIM) if kind == "exact" else ApproximateIndex(DIM)
    index.upsert(ids, matrix)
    moved = ids[10]
    index.upsert(np.array([moved]), matrix[2000:2001] * 3.0)  # same id, new picture: now the twin of item 2000
    assert len(index) == COUNT
    top = index.search(matrix[2000], 2)[0]
    assert set(top) == {moved, ids[2000]}
    assert moved not in index.search(matrix[10], 5)[0]  # its old vector is gone
    gone = ids[:500]
    index.remove(gone)
    index.remove(np.array([1, 2, 3]))  # ids never added are ignored
    assert len(index) == COUNT - 500
    for query in matrix[:50]:
        assert not set(index.search(query, 20)[0]) & set(gone)

    restored = index_from_bytes(index.describe(), index.to_bytes())
    assert restored is not None and restored.kind == kind and len(restored) == len(index)
    for query in matrix[600:610]:
        assert list(restored.search(query, 5)[0]) == list(index.search(query, 5)[0])


def test_auto_switches_to_the_approximate_index_at_the_threshold():
    from fashionattr.catalog.vectors import ANN_MIN_ITEMS

    assert resolve_kind("auto", ANN_MIN_ITEMS - 1) == "exact"
    assert resolve_kind("auto", ANN_MIN_ITEMS) == "ann"
    assert resolve_kind("exact", 10**7) == "exact" and resolve_kind("ann", 5) == "ann"


def test_the_catalogue_saves_its_index_and_never_serves_a_removed_image(trained_run, catalog_db, tmp_path):
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    predictor = Predictor.from_path(trained_run.run, device="cpu")

    def index(kind: str = "ann") -> None:
        report = index_catalog(catalog_db, photos, trained_run.run, predictor=predictor, batch_size=4, workers=0,
                               progress=False, vector_index=kind)  # fmt: skip
        assert report.vector_index == ("ann" if kind == "ann" else "")

    index()
    store = open_store(catalog_db)
    saved = store.saved_vector_index()
    store.close()
    assert saved is not None and saved[0]["kind"] == "ann" and saved[0]["count"] == 9

    approximate, exact = Catalog(catalog_db, vector_index="ann"), Catalog(catalog_db, vector_index="exact")
    query = approximate.search(limit=1).items[0]
    ranked = [(item.id, round(score, 5)) for item, score in approximate.similar(query.id, k=9)]
    assert ranked == [(item.id, round(score, 5)) for item, score in exact.similar(query.id, k=9)]
    assert approximate.similarity.index is not None and approximate.similarity.index.kind == "ann"
    assert approximate.similarity.origin == "saved"  # started from the indexer's graph, not rebuilt

    victim = sorted((photos / "sleeve_length").iterdir())[0]
    victim_id = approximate.item(f"sleeve_length/{victim.name}").id
    victim.unlink()
    shutil.copy(sorted((photos / "pant_length").iterdir())[0], photos / "newcomer.jpg")
    index("exact")  # another process changes the catalogue under the open one (and drops the saved index)
    results = approximate.similar(query.id, k=20)
    assert victim_id not in {item.id for item, _ in results}
    assert len(results) == 9 and "newcomer.jpg" in {item.path for item, _ in results}
    assert approximate.similarity.origin == "saved"  # caught up in place, not rebuilt from scratch
    approximate.close()
    exact.close()


def test_a_removed_item_is_dropped_even_when_the_index_lags(trained_run, tmp_path: Path):
    """The last line of defence: candidates are looked up in the database, and ids it no longer has are dropped."""
    photos = make_photo_folder(trained_run.data, tmp_path / "photos")
    db = tmp_path / "catalog.sqlite"
    predictor = Predictor.from_path(trained_run.run, device="cpu")
    index_catalog(db, photos, trained_run.run, predictor=predictor, workers=0, progress=False)
    catalog = Catalog(db)
    first = catalog.search(limit=1).items[0]
    catalog.similarity.refresh()
    catalog.similarity.refresh = lambda: catalog.similarity.index  # type: ignore[method-assign]  # frozen index
    (photos / first.path).unlink()
    index_catalog(db, photos, trained_run.run, predictor=predictor, workers=0, progress=False)
    vector = catalog.similarity.index.matrix[list(catalog.similarity.index.ids).index(first.id)]
    assert first.id not in {item.id for item, _ in catalog.similar(vector, k=20)}


def near_duplicates(count: int, dim: int, spread: float, seed: int) -> np.ndarray:
    """Unit embeddings of near-identical product shots: every item's nearest other lies at cosine ~0.94-0.99."""
    rng = np.random.default_rng(seed)
    base = np.abs(rng.standard_normal(dim)).astype(np.float32)
    return unit(base + rng.standard_normal((count, dim)).astype(np.float32) * spread)


@pytest.fixture
def new_catalogue_db(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of fresh catalogue locations on one backend (hypothesis runs many examples in one test)."""
    counter = iter(range(10**6))
    if request.param == "postgresql":
        return request.getfixturevalue("postgres").new_database
    return lambda: str(tmp_path / f"catalog-{next(counter)}.sqlite")


@pytest.mark.parametrize("new_catalogue_db", CATALOG_BACKENDS, indirect=True)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(500, 520), threads=st.integers(1, 4), spread=st.sampled_from([0.1, 0.12, 0.16, 0.22]),
       seed=st.integers(0, 2**16), saved_share=st.sampled_from([0.0, 0.5, 1.0]))  # fmt: skip
def test_every_item_is_found_by_similar_of_its_own_vector(new_catalogue_db, tmp_path, size, threads, spread, seed,
                                                          saved_share):  # fmt: skip
    """Approximate indexes built on several threads over near-duplicate embeddings, saved part-way by an indexer
    whose run then died (the rest written but never saved), read by a new reader: each item is its own first
    result. (Without the reachability check, 25 examples find a lost item.)"""
    from fashionattr.catalog.indexing import IndexReport, _save_vector_index
    from fashionattr.catalog.similarity import SimilarityIndex
    from fashionattr.catalog.store import ItemRow, TagRow

    db = new_catalogue_db()
    vectors = near_duplicates(size, 512, spread, seed)
    nearest = (vectors @ vectors.T - 2 * np.eye(size)).max(axis=1)
    assert nearest.min() > 0.9 and nearest.max() < 0.995
    store = open_store(db, write=True)
    store.set_meta({"schema": json.dumps(FASHIONAI.to_dict())})
    tags = [TagRow(a.name, a.classes[0], 0.9, "{}") for a in FASHIONAI]
    rows = [(ItemRow(f"{n:04d}.jpg", f"{n}", 1, 0.0, vectors[n].tobytes()), tags) for n in range(size)]
    saved = int(size * saved_share)
    for start in range(0, saved, 64):
        store.write_batch(rows[start:saved][:64], [], now=0.0)
    if saved:
        with patch("os.cpu_count", return_value=threads):  # the indexer builds on every core
            _save_vector_index(store, "ann", IndexReport(tmp_path))
    for start in range(saved, size, 64):  # written by a run that died before saving the index
        store.write_batch(rows[start : start + 64], [], now=0.0)
    ids = {path: item_id for item_id, path in store.db.execute("SELECT id, path FROM items")}
    store.close()

    reader = open_store(db)
    similarity = SimilarityIndex(reader, "ann", threads=threads)
    for n, (row, _) in enumerate(rows):
        assert similarity.search(vectors[n], 1)[0][0] == ids[row.path], (n, similarity.origin)
    assert similarity.origin == ("saved" if saved else "built")
    reader.close()
