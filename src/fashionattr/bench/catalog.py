"""Figure `similar`: similar-garment search through the approximate index against the exact one.

It runs on synthetic catalogues of the sizes in `--catalog-sizes` (10k, 100k and 1M by default), no model
needed: unit embeddings of the backbone's dimension (fashionattr.bench.embeddings, 512 numbers: resnet18's
pooled features), queries from the same distribution but not in the catalogue, each timed alone on the exact
index and on the approximate one (asked for 2k candidates re-scored exactly, as `Catalog.similar` does), the
two alternating query by query; recall@10 is the share of the exact top ten the approximate path returns.
(Facets and tag search: `bench.facets`.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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

K = 10
ANN_P99_GOAL_MS = 10.0
RECALL_GOAL = 0.95
LOAD_BATCH = 5000
FACET_BUDGET_S = 90.0
"""Longest the facet figure spends measuring one size (at least three rounds run)."""


def size_label(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count >= 1000 else str(count)


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
