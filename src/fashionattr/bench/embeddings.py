"""Synthetic garment embeddings for the catalogue benchmarks, shaped like a pooled CNN backbone's output.

A resnet-style backbone's pooled features are non-negative (after ReLU), unit length once normalised, and
clustered: photos of the same kind of garment lie close together on a low-dimensional patch. Uniform random
vectors have none of that structure and would make every nearest-neighbour index look worse than it is on real
catalogues, so these are drawn from a mixture of `clusters` centres, each item varying along an
`intrinsic_dim`-dimensional subspace plus a little isotropic noise, then ReLU and unit length.
"""

from __future__ import annotations

import numpy as np

EMBEDDING_DIM = 512
"""The embedding of resnet18/resnet34 and the project's test models (resnet50 and larger give 2048)."""

CLUSTERS = 1000
INTRINSIC_DIM = 24
_QUERY_STREAM = 1 << 40
"""Per-item draws of queries come from a stream no catalogue position uses: new photos, same garments."""


_CHUNK = 65_536
"""Rows drawn at a time: bounds the temporaries at 1M items (the chunking is part of what a seed gives)."""


def synthetic_embeddings(count: int, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """`count` x `dim` float32 unit vectors; the same arguments always give the same vectors."""
    return _draw(count, dim, seed, stream=0, chunk=_CHUNK)


def synthetic_queries(count: int, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """`count` query vectors from the distribution of the catalogue made with `seed`, none of them in it."""
    return _draw(count, dim, seed, stream=_QUERY_STREAM, chunk=max(1, count))


def _draw(count: int, dim: int, seed: int, stream: int, chunk: int) -> np.ndarray:
    structure = np.random.default_rng(seed)
    centres = np.abs(structure.standard_normal((CLUSTERS, dim), dtype=np.float32)) * 0.6
    centres += structure.standard_normal((CLUSTERS, dim), dtype=np.float32) * 0.5
    basis = structure.standard_normal((INTRINSIC_DIM, dim), dtype=np.float32) / np.sqrt(INTRINSIC_DIM)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        rng = np.random.default_rng([seed, stream + start])
        block = centres[rng.integers(0, CLUSTERS, stop - start)]
        block += rng.standard_normal((stop - start, INTRINSIC_DIM), dtype=np.float32) @ basis * 0.9
        block += rng.standard_normal((stop - start, dim), dtype=np.float32) * 0.08
        np.maximum(block, 0.0, out=block)
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        out[start:stop] = block
    return out
