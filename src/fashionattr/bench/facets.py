"""Figures `facets` and `search`: the catalogue page's two queries at each catalogue size, on SQLite and PostgreSQL.

A synthetic catalogue of N items (eight tags each: value frequencies skewed 1/rank, confidences uniform 0.3-1, and a
third of the items close-ups whose four length tags do not apply) is written through the catalogue's own store, as
`catalog index` writes it, into an SQLite file and a PostgreSQL database. On each, the same queries (no, one, two
and three filters; thresholds 0, 0.5 and 0.85) run through the facet index that `Catalog` answers from and through
the previous representation, GROUP BYs and joins over the tag rows (`CatalogStore.value_counts` and `search`, the
full count the tests compare with), interleaved query by query. Every pair of answers is compared: the figure says
whether all were equal. The previous representation gets a time budget (seconds per query at a million items);
the facet index answers every query of the list several times.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.bench.catalog import percentile_ms, size_label
from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure
from fashionattr.io import json_text
from fashionattr.schema import FASHIONAI

FACETS_P99_GOAL_MS = 100.0
SEARCH_P99_GOAL_MS = 50.0
PAGE = 48
"""The catalogue page's first page of cards."""
LOAD_BATCH = 5000
PREVIOUS_BUDGET_S = 60.0
"""Longest the previous representation is timed per size and backend (at least one pass over the queries)."""
NEW_PASSES = 8
"""Times the facet index answers the whole query list."""
CLOSE_UPS = 1 / 3
"""Share of items that are close-ups: their length tags do not apply."""
LENGTHS = {"skirt_length_labels", "coat_length_labels", "pant_length_labels", "sleeve_length_labels"}


def queries() -> list[tuple[dict[str, str], float]]:
    """The page's questions: no, one, two and three filters, at thresholds 0, 0.5 and 0.85."""
    sleeve, collar, neckline = (FASHIONAI.attribute(n) for n in ("sleeve_length_labels", "collar_design_labels",
                                                                  "neckline_design_labels"))  # fmt: skip
    filters: list[dict[str, str]] = [{}, {sleeve.name: sleeve.classes[7]},
                                     {sleeve.name: sleeve.classes[3], collar.name: collar.classes[1]},
                                     {sleeve.name: sleeve.classes[1], collar.name: collar.classes[2],
                                      neckline.name: neckline.classes[4]}]  # fmt: skip
    return [(f, t) for t in (0.0, 0.5, 0.85) for f in filters]


def load_catalogue(db: str, count: int, root: Path) -> float:
    """Write a synthetic catalogue of `count` items through the store, as the indexer would; returns seconds."""
    from fashionattr.catalog.store import ItemRow, TagRow, open_store

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
        embedding = np.full(8, 0.25, dtype=np.float32).tobytes()  # facets never read embeddings
        for start in range(0, count, LOAD_BATCH):
            size = min(LOAD_BATCH, count - start)
            values = [rng.choice(a.num_classes, size=size, p=w) for a, w in zip(attributes, weights, strict=True)]
            confidences = rng.uniform(0.3, 1.0, size=(len(attributes), size))
            close_up = rng.random(size) < CLOSE_UPS
            batch = []
            for row in range(size):
                tags = [TagRow(a.name, a.classes[values[n][row]], float(confidences[n][row]),
                               probabilities[(a.name, a.classes[values[n][row]])],
                               applies=not (close_up[row] and a.name in LENGTHS))
                        for n, a in enumerate(attributes)]  # fmt: skip
                batch.append((ItemRow(f"catalogue/{start + row:08d}.jpg", f"{start + row:064x}", 50_000, 0.0,
                                      embedding), tags))  # fmt: skip
            store.write_batch(batch, [], now=0.0)
        store.analyze()  # as `catalog index` does at the end of a run
    finally:
        store.close()
    return time.perf_counter() - began


def previous_facets(store: Any, filters: dict[str, str], threshold: float) -> tuple[int, dict[str, dict[str, int]]]:
    """The facets as the previous version counted them: one GROUP BY over every tag row, one more per filter."""
    counts = store.value_counts(filters, threshold)
    for name in filters:
        others = {a: v for a, v in filters.items() if a != name}
        counts[name] = store.value_counts(others, threshold, attribute=name).get(name, {})
    total = store.search(filters, threshold, 0, 0)[0]
    return total, {a.name: {c: counts.get(a.name, {}).get(c, 0) for c in a.classes} for a in FASHIONAI}


def measure_backend(db: str) -> dict[str, Any]:
    """Facets and the first filtered page through the facet index and the previous representation, interleaved."""
    from fashionattr.catalog import Catalog

    began = time.perf_counter()
    catalog = Catalog(db)
    catalog.facet_index.refresh()
    cold_s = time.perf_counter() - began
    index = catalog.facet_index
    columns_mib = (index.alive.nbytes + index.codes.nbytes + index.confidences.nbytes) / 2**20
    times: dict[str, list[float]] = {"facets": [], "search": [], "previous facets": [], "previous search": []}
    exact = True
    started = time.perf_counter()
    asked = queries()
    for n in range(NEW_PASSES * len(asked)):
        filters, threshold = asked[n % len(asked)]
        clock = time.perf_counter()
        facets = catalog.facet_counts(filters, threshold)
        times["facets"].append(time.perf_counter() - clock)
        if filters:
            clock = time.perf_counter()
            page = catalog.search(filters, threshold, limit=PAGE)
            times["search"].append(time.perf_counter() - clock)
        if n < len(asked) or time.perf_counter() - started < PREVIOUS_BUDGET_S:
            clock = time.perf_counter()
            total, counts = previous_facets(catalog.store, filters, threshold)
            times["previous facets"].append(time.perf_counter() - clock)
            exact &= total == facets.total and counts == facets.counts
            if filters:
                clock = time.perf_counter()
                _, rows = catalog.store.search(filters, threshold, PAGE, 0)
                times["previous search"].append(time.perf_counter() - clock)
                exact &= [r[0] for r in rows] == [item.id for item in page.items]
    catalog.close()
    return {"cold_s": cold_s, "columns_mib": columns_mib, "times": times, "exact": exact}


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
                yield Figure(key="facets", title="facet counts and tag search", skipped=missing)
                return
            server = stack.enter_context(throwaway_postgres(bindir))
            origin = "a throwaway local server (Unix socket, fsync off)"
        largest: dict[str, dict[str, Any]] = {}
        for count in settings.catalog_sizes:
            sqlite_db = context.workdir / f"facets-{count}.sqlite"
            sqlite_db.unlink(missing_ok=True)
            databases = {"SQLite": str(sqlite_db), "PostgreSQL": postgres_url or server.new_database()}
            for backend, db in databases.items():
                load_s = load_catalogue(db, count, context.workdir)
                result = measure_backend(db)
                largest[backend] = {"count": count, **result}
                yield from _backend_figures(backend, count, result, load_s, origin)
            context.shared["page_catalogue"] = (count, sqlite_db)  # the page figure serves the largest one
        if largest:
            yield _goal_figure("facets.p99", "facet counts", "facets", largest, FACETS_P99_GOAL_MS)
            yield _goal_figure("search.p99", "first page of a filtered search", "search", largest,
                               SEARCH_P99_GOAL_MS)  # fmt: skip


def _backend_figures(backend: str, count: int, result: dict[str, Any], load_s: float,
                     origin: str) -> Iterator[Figure]:  # fmt: skip
    times = result["times"]
    common = {"items": count, "tags": count * len(FASHIONAI), "load_s": round(load_s, 1),
              "cold_start_s": round(result["cold_s"], 2), "columns_mib": round(result["columns_mib"], 1),
              "answers_equal": result["exact"]}  # fmt: skip
    if backend == "PostgreSQL":
        common["postgresql"] = origin
    for kind, title in (("facets", "facet counts"), ("search", f"first page ({PAGE}) of a filtered search")):
        new, old = times[kind], times[f"previous {kind}"]
        yield Figure(
            key=f"{kind}.{backend.lower()}.{size_label(count)}",
            title=f"{title} at {count:,} items, {backend}: previous / facet index p50 time",
            ratio=float(np.median(old) / np.median(new)), unit="ms",
            values={"facet index p50": percentile_ms(new, 50), "facet index p99": percentile_ms(new, 99),
                    "previous (tag rows) p50": percentile_ms(old, 50),
                    "previous (tag rows) p99": percentile_ms(old, 99)},
            settings={**common, "queries": len(new), "previous_queries": len(old)},
            notes=["queries with no, one, two and three filters at thresholds 0, 0.5 and 0.85, the two "
                   "representations interleaved; answers_equal: every answer of both was the same",
                   "cold_start_s: opening the catalogue and loading the columns (once per process)"],
        )  # fmt: skip


def _goal_figure(key: str, what: str, kind: str, largest: dict[str, dict[str, Any]], goal: float) -> Figure:
    worst = max(largest, key=lambda backend: percentile_ms(largest[backend]["times"][kind], 99))
    count = largest[worst]["count"]
    return Figure(
        key=key, title=f"{what} p99 at {count:,} items, the slower backend ({worst})",
        ratio=percentile_ms(largest[worst]["times"][kind], 99), goal=goal, at_most=True, ratio_unit=" ms", unit="ms",
        settings={f"{backend} p99 ms": round(percentile_ms(r["times"][kind], 99), 1) for backend, r in largest.items()},
    )  # fmt: skip
