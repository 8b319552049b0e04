"""Choosing the facet representation: the same facet counts from three representations, side by side.

    python benchmarks/facet_choice.py --items 1000000

`tag rows`: the previous one, one row per (item, attribute), a GROUP BY per attribute over the rows that match the
other attributes' filters. `wide table`: one row per item with a class column and a confidence column per
attribute and an index on each (class, confidence) pair, one GROUP BY per attribute. `columns`: the facet index the
catalogue answers from (`fashionattr.catalog.facets.FacetIndex`), numpy columns in the reader. Each in SQLite and in
PostgreSQL (a throwaway server) where it lives in the database. The synthetic tags are the catalogue benchmark's
(value frequencies skewed 1/rank, confidences uniform 0.3-1, a third of the items close-ups without length tags);
the queries are the catalogue page's: no, one, two and three filters at thresholds 0, 0.5 and 0.85.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fashionattr.bench.facets import CLOSE_UPS, LENGTHS, queries
from fashionattr.schema import FASHIONAI

ATTRIBUTES = list(FASHIONAI)


def synthetic_tags(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes A x N int16, -1 where the tag does not apply; confidences A x N float32)."""
    rng = np.random.default_rng(count)
    codes = np.stack([rng.choice(a.num_classes, size=count, p=(w := 1 / np.arange(1, a.num_classes + 1)) / w.sum())
                      for a in ATTRIBUTES]).astype(np.int16)  # fmt: skip
    confidences = rng.uniform(0.3, 1.0, size=(len(ATTRIBUTES), count)).astype(np.float32)
    close_up = rng.random(count) < CLOSE_UPS
    for n, attribute in enumerate(ATTRIBUTES):
        if attribute.name in LENGTHS:
            codes[n, close_up] = -1
    return codes, confidences


def load(conn: Any, dialect: str, codes: np.ndarray, confidences: np.ndarray) -> None:
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    wide = ", ".join(f"c{n} SMALLINT, p{n} {real}" for n in range(len(ATTRIBUTES)))
    statements = ["CREATE TABLE tag_rows (item_id BIGINT, attribute SMALLINT, value SMALLINT, confidence "
                  f"{real}, PRIMARY KEY (item_id, attribute))",
                  "CREATE INDEX tag_rows_by_value ON tag_rows (attribute, value, confidence)",
                  f"CREATE TABLE wide (id BIGINT PRIMARY KEY, {wide})"]  # fmt: skip
    for statement in statements:
        conn.execute(statement)
    width = len(ATTRIBUTES)
    as_lists = codes.T.tolist(), confidences.T.tolist()
    rows = ((i, n, c[n], p[n]) for i, (c, p) in enumerate(zip(*as_lists, strict=True)) for n in range(width)
            if c[n] >= 0)  # fmt: skip
    items = ((i, *[v for n in range(width) for v in (c[n] if c[n] >= 0 else None, p[n])])
             for i, (c, p) in enumerate(zip(*as_lists, strict=True)))  # fmt: skip
    marks = ", ".join(["?"] * (1 + 2 * width))
    if dialect == "postgresql":
        with conn.cursor() as cursor:
            with cursor.copy("COPY tag_rows FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cursor.copy("COPY wide FROM STDIN") as copy:
                for row in items:
                    copy.write_row(row)
    else:
        conn.executemany("INSERT INTO tag_rows VALUES (?, ?, ?, ?)", rows)
        conn.executemany(f"INSERT INTO wide VALUES ({marks})", items)
    for n in range(len(ATTRIBUTES)):
        conn.execute(f"CREATE INDEX wide_{n} ON wide (c{n}, p{n})")
    conn.execute("ANALYZE")


def sql_facets(conn: Any, dialect: str, layout: str, filters: dict[int, int], threshold: float) -> dict[int, Any]:
    mark = "?" if dialect == "sqlite" else "%s"
    counts = {}
    for n in range(len(ATTRIBUTES)):
        others = {a: v for a, v in filters.items() if a != n}
        if layout == "wide":
            where = " AND ".join([f"c{n} IS NOT NULL AND p{n} >= {mark}"]
                                 + [f"c{a} = {mark} AND p{a} >= {mark}" for a in others])  # fmt: skip
            params: list[Any] = [threshold] + [x for a, v in others.items() for x in (v, threshold)]
            sql = f"SELECT c{n}, COUNT(*) FROM wide WHERE {where} GROUP BY c{n}"
        else:
            joins = " ".join(f"JOIN tag_rows f{a} ON f{a}.item_id = t.item_id AND f{a}.attribute = {a} AND "
                             f"f{a}.value = {mark} AND f{a}.confidence >= {mark}" for a in others)  # fmt: skip
            params = [x for v in others.values() for x in (v, threshold)] + [threshold]
            sql = (f"SELECT t.value, COUNT(*) FROM tag_rows t {joins} WHERE t.attribute = {n} AND "
                   f"t.confidence >= {mark} GROUP BY t.value")  # fmt: skip
        counts[n] = dict(conn.execute(sql, params).fetchall())
    return counts


def numpy_facets(codes: np.ndarray, confidences: np.ndarray) -> Callable[[dict[int, int], float], dict[int, Any]]:
    from fashionattr.catalog.facets import float32_at_least

    def facets(filters: dict[int, int], threshold: float) -> dict[int, Any]:
        bound = float32_at_least(threshold)
        shown = [np.where(c >= bound, k, np.int16(-1)) for k, c in zip(codes, confidences, strict=True)]
        masks = {a: shown[a] == v for a, v in filters.items()}
        counts = {}
        for n in range(len(ATTRIBUTES)):
            matching = np.ones(codes.shape[1], dtype=bool)
            for a, mask in masks.items():
                if a != n:
                    matching &= mask
            values = np.where(matching, shown[n], np.int16(-1))
            counts[n] = {v: c for v in range(ATTRIBUTES[n].num_classes) if (c := int(np.count_nonzero(values == v)))}
        return counts

    return facets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per representation and database")
    args = parser.parse_args()
    import sqlite3
    import tempfile
    from pathlib import Path

    import psycopg

    from fashionattr.bench.postgres import find_bindir, throwaway_postgres

    codes, confidences = synthetic_tags(args.items)
    asked = [({ATTRIBUTES.index(FASHIONAI.attribute(a)): FASHIONAI.attribute(a).classes.index(v)
               for a, v in f.items()}, t) for f, t in queries()]  # fmt: skip
    print(f"{args.items:,} items, {len(asked)} queries (no, one, two, three filters; thresholds 0, 0.5, 0.85)")
    print(f"{'representation':<14} {'database':<11} {'load s':>7} {'p50 ms':>9} {'p99 ms':>9}  same counts")
    truth = numpy_facets(codes, confidences)
    report = {}
    with tempfile.TemporaryDirectory() as scratch, throwaway_postgres(find_bindir()) as server:  # type: ignore[arg-type]
        sqlite = sqlite3.connect(Path(scratch) / "choice.sqlite")
        postgres = psycopg.connect(server.new_database(), autocommit=True)
        for database, conn, dialect in (("SQLite", sqlite, "sqlite"), ("PostgreSQL", postgres, "postgresql")):
            began = time.perf_counter()
            load(conn, dialect, codes, confidences)
            if dialect == "sqlite":
                conn.commit()
            load_s = time.perf_counter() - began
            for layout in ("tag rows", "wide"):
                asker = _sql_asker(conn, dialect, layout)
                report[(layout, database)] = (*_time(asker, asked, truth, args.budget), load_s)
        report[("columns", "in memory")] = (*_time(truth, asked, truth, args.budget), 0.0)
    for (layout, database), (p50, p99, same, load_s) in report.items():
        name = "wide table" if layout == "wide" else layout
        print(f"{name:<14} {database:<11} {load_s:>7.0f} {p50:>9.1f} {p99:>9.1f}  {same}")


Facets = Callable[[dict[int, int], float], dict[int, Any]]


def _sql_asker(conn: Any, dialect: str, layout: str) -> Facets:
    return lambda filters, threshold: sql_facets(conn, dialect, layout, filters, threshold)


def _time(facets: Facets, asked: list[tuple[dict[int, int], float]], truth: Facets,
          budget: float) -> tuple[float, float, bool]:  # fmt: skip
    times, same, started = [], True, time.perf_counter()
    for n in range(10 * len(asked)):
        filters, threshold = asked[n % len(asked)]
        began = time.perf_counter()
        counts = facets(filters, threshold)
        times.append(time.perf_counter() - began)
        if n < len(asked):
            same &= counts == truth(filters, threshold)
        if n >= len(asked) and time.perf_counter() - started > budget:
            break
    return statistics.median(times) * 1000, float(np.percentile(times, 99)) * 1000, same


if __name__ == "__main__":
    main()
