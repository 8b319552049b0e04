"""Figures `similar` (approximate vs exact index) and `facets` (PostgreSQL vs SQLite) of the catalogue.

Both run on synthetic catalogues of the sizes in `--catalog-sizes` (10k, 100k and 1M by default), no model
needed. similar: unit embeddings of the backbone's dimension (fashionattr.bench.embeddings, 512 numbers: resnet18's
pooled features), queries from the same distribution but not in the catalogue, each timed alone on the exact
index and on the approximate one (asked for 2k candidates re-scored exactly, as `Catalog.similar` does), the
two alternating query by query; recall@10 is the share of the exact top ten the approximate path returns.
facets: the same number of items with eight tags each (skewed value frequencies, confidences 0.3-1) written through
the catalogue store into an SQLite file and a PostgreSQL database, then `Catalog.facets` with no, one and two
filters, alternating between the backends.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure
from fashionattr.bench.embeddings import synthetic_embeddings, synthetic_queries
from fashionattr.catalog.vectors import (
    CONNECTIVITY,
    EXPANSION_ADD,
    EXPANSION_SEARCH,
    STORAGE,
    ApproximateIndex,
    ExactIndex,
    unit,
)
from fashionattr.io import json_text

K = 10
ANN_P99_GOAL_MS = 10.0
RECALL_GOAL = 0.95
LOAD_BATCH = 5000
FACET_BUDGET_S = 90.0
"""Longest the facet figure spends measuring one size (at least three rounds run)."""


def size_label(count: int) -> str:
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count // 1000}k"


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q))


# ---------------------------------------------------------------------------------------------------------------
# similar: similar-garment search


def similar_figures(context: BenchContext) -> Iterator[Figure]:
    settings = context.settings
    largest: dict[str, Any] = {}
    for count in settings.catalog_sizes:
        result = _measure_similar(count, settings.embedding_dim, settings.similar_queries)
        yield Figure(
            key=f"similar.{size_label(count)}", title=f"similar search at {count:,} items: p99 exact / p99 approximate",
            ratio=result["exact_p99"] / result["ann_p99"], unit="ms",
            values={"exact p50": result["exact_p50"], "exact p99": result["exact_p99"],
                    "approximate p50": result["ann_p50"], "approximate p99": result["ann_p99"],
                    "approximate p50, back to back": result["ann_alone_p50"],
                    "approximate p99, back to back": result["ann_alone_p99"]},
            settings={"items": count, "dim": settings.embedding_dim, "queries": settings.similar_queries, "k": K,
                      "recall@10": round(result["recall"], 4), "build_s": round(result["build_s"], 1),
                      "approximate_cpu_p99_ms": round(result["ann_cpu_p99"], 2),
                      "back_to_back_cpu_p99_ms": round(result["ann_alone_cpu_p99"], 2),
                      "index_mib": round(result["index_mib"]), "hnsw": f"usearch {STORAGE} M={CONNECTIVITY} "
                      f"efConstruction={EXPANSION_ADD} ef={EXPANSION_SEARCH}"},
            notes=["one query at a time on one thread, as one service request runs it; the approximate side "
                   "includes re-scoring its 2k candidates exactly", "the ratio alternates exact and approximate "
                   "query by query; 'back to back' runs the approximate queries again without the exact scans "
                   "between them, as a catalogue using the index runs them (the goal figure)", "latencies are "
                   "wall-clock; the *_cpu_p99_ms settings are the search thread's own CPU time, which other jobs on "
                   "the machine do not inflate"],
        )  # fmt: skip
        largest = {"count": count, **result}
    if largest:
        count = largest["count"]
        yield Figure(
            key="similar.p99",
            title=f"approximate similar search p99 at {count:,} items, back to back",
            ratio=largest["ann_alone_p99"],
            goal=ANN_P99_GOAL_MS,
            at_most=True,
            ratio_unit=" ms",
            unit="ms",
            settings={"items": count, "cpu_p99_ms": round(largest["ann_alone_cpu_p99"], 2)},
        )
        yield Figure(
            key="similar.recall",
            title=f"approximate similar search recall@10 at {count:,} items",
            ratio=largest["recall"],
            goal=RECALL_GOAL,
            ratio_unit="",
            unit="",
            settings={"items": count},
        )


def _measure_similar(count: int, dim: int, queries: int) -> dict[str, float]:
    vectors = synthetic_embeddings(count, dim)
    probes = synthetic_queries(queries, dim)
    exact = ExactIndex(dim)
    exact.ids, exact.matrix = np.arange(count, dtype=np.int64), vectors  # the matrix as is: no second copy
    began = time.perf_counter()
    approximate = ApproximateIndex(dim)
    approximate.upsert(exact.ids, vectors)
    build_s = time.perf_counter() - began
    approximate.threads = 1

    def approximate_top(query: np.ndarray) -> np.ndarray:
        candidates, _ = approximate.search(query, 2 * K)
        scores = vectors[candidates] @ unit(query)
        return candidates[np.lexsort((candidates, -scores))][:K]

    exact_s, ann_s, ann_cpu_s, hits = [], [], [], 0
    for n, query in enumerate(probes):
        order = (0, 1) if n % 2 == 0 else (1, 0)
        for side in order:
            began = time.perf_counter()
            if side == 0:
                truth = exact.search(query, K)[0]
                exact_s.append(time.perf_counter() - began)
            else:
                cpu = time.thread_time()
                found = approximate_top(query)
                ann_s.append(time.perf_counter() - began)
                ann_cpu_s.append(time.thread_time() - cpu)
        hits += len(set(truth.tolist()) & set(found.tolist()))
    alone_s, alone_cpu_s = _time_alone(approximate_top, probes)
    index_mib = len(approximate.to_bytes()) / 2**20
    return {"exact_p50": percentile_ms(exact_s, 50), "exact_p99": percentile_ms(exact_s, 99),
            "ann_p50": percentile_ms(ann_s, 50), "ann_p99": percentile_ms(ann_s, 99),
            "ann_cpu_p99": percentile_ms(ann_cpu_s, 99), "ann_alone_p50": percentile_ms(alone_s, 50),
            "ann_alone_p99": percentile_ms(alone_s, 99), "ann_alone_cpu_p99": percentile_ms(alone_cpu_s, 99),
            "recall": hits / (K * len(probes)), "build_s": build_s, "index_mib": index_mib}  # fmt: skip


def _time_alone(search: Callable[[np.ndarray], np.ndarray], probes: np.ndarray) -> tuple[list[float], list[float]]:
    """Wall and thread-CPU seconds of each query, the queries back to back as a catalogue using the index runs them.

    In the side-by-side pass every approximate query follows an exact one, whose scan of the whole float32 matrix
    (2 GB at a million items) evicts the graph from the CPU caches; a service using the approximate index never
    runs that scan, so its latency is this pass's.
    """
    wall_s, cpu_s = [], []
    for query in probes:
        began, cpu = time.perf_counter(), time.thread_time()
        search(query)
        wall_s.append(time.perf_counter() - began)
        cpu_s.append(time.thread_time() - cpu)
    return wall_s, cpu_s


# ---------------------------------------------------------------------------------------------------------------
# facets: facet queries


def facet_figures(context: BenchContext) -> Iterator[Figure]:
    from fashionattr.bench.postgres import find_bindir, throwaway_postgres

    settings = context.settings
    with ExitStack() as stack:
        postgres_url = settings.postgres
        origin = "given by --postgres" if postgres_url else ""
        if postgres_url is None:
            bindir = find_bindir()
            if bindir is None:
                missing = "no PostgreSQL server: give --postgres URL or install the server binaries"
                yield Figure(key="facets", title="facet queries: PostgreSQL vs SQLite", skipped=missing)
                return
            server = stack.enter_context(throwaway_postgres(bindir))
            origin = "a throwaway local server (Unix socket, fsync off)"
        for count in settings.catalog_sizes:
            url = postgres_url if postgres_url else server.new_database()
            sqlite_db = context.workdir / f"facets-{count}.sqlite"
            load_s = {"sqlite": _load_catalogue(str(sqlite_db), count, context.workdir),
                      "postgresql": _load_catalogue(url, count, context.workdir)}  # fmt: skip
            times = _time_facets({"sqlite": str(sqlite_db), "postgresql": url}, settings.rounds)
            sqlite_db.unlink(missing_ok=True)
            yield Figure(
                key=f"facets.{size_label(count)}", title=f"facet counts at {count:,} items: PostgreSQL / SQLite time",
                ratio=statistics.median(times["postgresql"]) / statistics.median(times["sqlite"]), unit="ms",
                values={"SQLite p50": percentile_ms(times["sqlite"], 50),
                        "SQLite p99": percentile_ms(times["sqlite"], 99),
                        "PostgreSQL p50": percentile_ms(times["postgresql"], 50),
                        "PostgreSQL p99": percentile_ms(times["postgresql"], 99)},
                settings={"items": count, "tags": count * 8, "queries": len(times["sqlite"]),
                          "load_s": {k: round(v, 1) for k, v in load_s.items()}, "postgresql": origin},
                notes=["one Catalog.facets call: eight GROUP BY counts (one per attribute), with no, one or two "
                       "filters in turn; a ratio above 1 means PostgreSQL is slower"],
            )  # fmt: skip


def _load_catalogue(db: str, count: int, root: Path) -> float:
    """Write a synthetic catalogue of `count` items through the store, as the indexer would; returns seconds."""
    from fashionattr.catalog.store import ItemRow, TagRow, open_store
    from fashionattr.schema import FASHIONAI

    began = time.perf_counter()
    rng = np.random.default_rng(count)
    attributes = list(FASHIONAI)
    weights = [1.0 / np.arange(1, a.num_classes + 1) for a in attributes]
    weights = [w / w.sum() for w in weights]
    probabilities = {(a.name, v): json_text({c: round(1.0 / a.num_classes, 4) for c in a.classes}, indent=None)
                     for a in attributes for v in a.classes}  # fmt: skip
    store = open_store(db, write=True)
    try:
        store.set_meta({"root": str(root), "model": "synthetic", "model_fingerprint": "synthetic",
                        "schema": json_text(FASHIONAI.to_dict(), indent=None)})  # fmt: skip
        embedding = np.zeros(1, dtype=np.float32).tobytes()  # facets never read embeddings
        for start in range(0, count, LOAD_BATCH):
            size = min(LOAD_BATCH, count - start)
            values = [rng.choice(a.num_classes, size=size, p=w) for a, w in zip(attributes, weights, strict=True)]
            confidences = rng.uniform(0.3, 1.0, size=(len(attributes), size))
            batch = []
            for row in range(size):
                path = f"catalogue/{start + row:08d}.jpg"
                chosen = [a.classes[values[n][row]] for n, a in enumerate(attributes)]
                tags = [TagRow(a.name, value, float(confidences[n][row]), probabilities[(a.name, value)])
                        for n, (a, value) in enumerate(zip(attributes, chosen, strict=True))]  # fmt: skip
                batch.append((ItemRow(path, f"{start + row:064x}", 50_000, 0.0, embedding), tags))
            store.write_batch(batch, [], now=0.0)
        store.analyze()  # as `catalog index` does at the end of a run
    finally:
        store.close()
    return time.perf_counter() - began


def _time_facets(databases: dict[str, str], rounds: int) -> dict[str, list[float]]:
    from fashionattr.catalog import Catalog
    from fashionattr.schema import FASHIONAI

    catalogs = {name: Catalog(db) for name, db in databases.items()}
    sleeve, collar = FASHIONAI.attribute("sleeve_length_labels"), FASHIONAI.attribute("collar_design_labels")
    filters: list[dict[str, str]] = [{}, {sleeve.name: sleeve.classes[7]},
                                     {sleeve.name: sleeve.classes[3], collar.name: collar.classes[1]}]  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in catalogs}
    for catalog in catalogs.values():
        catalog.facets()  # warm the caches once
    started = time.perf_counter()
    for n in range(max(3, rounds * 10)):
        names = list(catalogs) if n % 2 == 0 else list(reversed(catalogs))
        for name in names:
            began = time.perf_counter()
            catalogs[name].facets(filters[n % len(filters)])
            times[name].append(time.perf_counter() - began)
        if n >= 2 and time.perf_counter() - started > FACET_BUDGET_S:
            break
    for catalog in catalogs.values():
        catalog.close()
    return times
