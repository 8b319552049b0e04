"""Mapping a function over many items on worker processes, or in this process when there is one worker.

Caching images and drawing the synthetic dataset both do this; one owner keeps the serial path (what tests and
1-core machines take) and the pool path giving the same results in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count(workers: int | None) -> int:
    """`workers`, or every CPU when it is not given (or 0); never less than one."""
    return max(1, workers or os.cpu_count() or 1)


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item], workers: int | None,
                     chunksize: int | None = None) -> Iterator[Result]:  # fmt: skip
    """`function` over `items`, results in order; the pool ends when the iteration does (or is abandoned).

    `function` must be picklable (a module-level function). Without `chunksize` items go to the workers in chunks
    of up to 64, about eight per worker, so a slow item does not hold back a large share of the work.
    """
    count = worker_count(workers)
    if count == 1:
        yield from map(function, items)
        return
    chunk = chunksize or max(1, min(64, len(items) // (count * 8)))
    with ProcessPoolExecutor(max_workers=count) as pool:
        results: Iterable[Result] = pool.map(function, items, chunksize=chunk)
        yield from results
