"""Which approximate nearest-neighbour library backs the catalogue: faiss-cpu or usearch, measured side by side.

For each candidate index, in a fresh process (so its memory is its own): build time over N synthetic garment
embeddings (fashionattr.bench.embeddings, 512 numbers, unit length), the memory the index adds, the size it
saves to, then single-query latency (p50/p99, one thread, as one service request runs it) and recall@10 against
the exact answer, at the smallest search depth that reaches recall@10 >= 0.95. Run:

    python benchmarks/ann_choice.py --items 100000            # about 4 minutes on 2 cores
    python benchmarks/ann_choice.py --items 1000000 --only usearch-i8,faiss-ivf
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fashionattr.bench.embeddings import EMBEDDING_DIM, synthetic_embeddings, synthetic_queries

K = 10
RECALL_GOAL = 0.95
DEPTHS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
CANDIDATES = ("faiss-hnsw", "faiss-hnsw-f16", "faiss-ivf", "usearch-f32", "usearch-f16", "usearch-i8")
CONNECTIVITY = 32
"""Graph degree (HNSW's M) and insertion depth (efConstruction), the same for both libraries' HNSW."""
EXPANSION_ADD = 80


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ vectors.T
    return np.argsort(-scores, axis=1)[:, :K]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def build(name: str, vectors: np.ndarray) -> tuple[Any, Callable[[np.ndarray, int], np.ndarray], Callable[[], int]]:
    """(index, search(queries, depth) -> ids, saved size) for one candidate."""
    n, dim = vectors.shape
    if name.startswith("faiss"):
        import faiss

        faiss.omp_set_num_threads(2)
        if name.startswith("faiss-hnsw"):
            if name == "faiss-hnsw":
                index = faiss.IndexHNSWFlat(dim, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
                index.train(vectors[:1000])
            index.hnsw.efConstruction = EXPANSION_ADD
            index.add(vectors)

            def search(queries: np.ndarray, depth: int) -> np.ndarray:
                index.hnsw.efSearch = depth
                return np.vstack([index.search(q[None], K)[1] for q in queries])
        else:
            lists = int(4 * np.sqrt(n))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors[np.random.default_rng(0).choice(n, min(n, 64 * lists), replace=False)])
            index.add(vectors)

            def search(queries: np.ndarray, depth: int) -> np.ndarray:
                index.nprobe = max(1, depth // 4)
                return np.vstack([index.search(q[None], K)[1] for q in queries])

        faiss.omp_set_num_threads(1)  # one request, one thread: what a service under load gets per query
        return index, search, lambda: int(faiss.serialize_index(index).size)
    from usearch.index import Index

    index = Index(ndim=dim, metric="ip", dtype=name.split("-")[1], connectivity=CONNECTIVITY,
                  expansion_add=EXPANSION_ADD)  # fmt: skip
    index.add(np.arange(n, dtype=np.uint64), vectors, threads=2)

    def search(queries: np.ndarray, depth: int) -> np.ndarray:
        index.expansion_search = depth
        return np.vstack([index.search(q, K, threads=1).keys.astype(np.int64) for q in queries])

    return index, search, lambda: len(index.save())


def measure_one(name: str, items: int, queries: int) -> dict[str, Any]:
    vectors = synthetic_embeddings(items, EMBEDDING_DIM)
    probes = synthetic_queries(queries, EMBEDDING_DIM)
    truth = exact_top(vectors, probes)
    before = rss_mib()
    began = time.perf_counter()
    _index, search, saved = build(name, vectors)
    build_s = time.perf_counter() - began
    added_mib = rss_mib() - before
    chosen = None
    for depth in DEPTHS:
        found = search(probes[:200], depth)
        if recall(found, truth[:200]) >= RECALL_GOAL:
            chosen = depth
            break
    depth = chosen or DEPTHS[-1]
    latencies = []
    found = np.empty((queries, K), dtype=np.int64)
    for row, query in enumerate(probes):
        began = time.perf_counter()
        found[row] = search(query[None], depth)[0]
        latencies.append(time.perf_counter() - began)
    ms = np.array(latencies) * 1000
    return {"candidate": name, "items": items, "build_s": build_s, "index_mib": added_mib,
            "saved_mib": saved() / 2**20, "depth": depth, "reached_goal": chosen is not None,
            "recall@10": recall(found, truth), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def exact_row(items: int, queries: int) -> dict[str, Any]:
    vectors = synthetic_embeddings(items, EMBEDDING_DIM)
    probes = synthetic_queries(queries, EMBEDDING_DIM)
    latencies = []
    for query in probes:
        began = time.perf_counter()
        scores = vectors @ query
        np.argpartition(-scores, K)[:K]
        latencies.append(time.perf_counter() - began)
    ms = np.array(latencies) * 1000
    return {"candidate": "exact (numpy)", "items": items, "build_s": 0.0, "index_mib": vectors.nbytes / 2**20,
            "saved_mib": vectors.nbytes / 2**20, "depth": "-", "reached_goal": True, "recall@10": 1.0,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "peak_rss_mib": 0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--only", help=f"comma-separated candidates (default all): {','.join(CANDIDATES)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child, args.items, args.queries)))
        return
    chosen = args.only.split(",") if args.only else list(CANDIDATES)
    print(f"{args.items:,} items of {EMBEDDING_DIM} numbers, {args.queries} queries, recall@{K} goal {RECALL_GOAL}, "
          f"{os.cpu_count()} cores; build on 2 threads, queries on 1", flush=True)  # fmt: skip
    rows = [exact_row(args.items, min(args.queries, 100))]
    for name in chosen:
        result = subprocess.run([sys.executable, __file__, "--child", name, "--items", str(args.items),
                                 "--queries", str(args.queries)], capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            print(f"{name}: failed\n{result.stderr[-2000:]}", flush=True)
            continue
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(f"  measured {name}", flush=True)
    header = f"{'index':<15} {'build s':>8} {'RAM MiB':>8} {'file MiB':>9} {'depth':>6} {'recall@10':>10} " \
             f"{'p50 ms':>7} {'p99 ms':>7}"  # fmt: skip
    print(header)
    for row in rows:
        goal = "" if row["reached_goal"] else "  (goal not reached)"
        print(f"{row['candidate']:<15} {row['build_s']:8.1f} {row['index_mib']:8.0f} {row['saved_mib']:9.0f} "
              f"{row['depth']!s:>6} {row['recall@10']:10.3f} {row['p50_ms']:7.2f} "
              f"{row['p99_ms']:7.2f}{goal}")  # fmt: skip


if __name__ == "__main__":
    main()
