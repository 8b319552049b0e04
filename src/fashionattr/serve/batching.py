"""Dynamic batching: images from concurrent requests share forward passes, so throughput rises with load.

Requests put their decoded images on one asyncio queue; a single worker task takes what is waiting (up to
`max_batch` images, waiting at most `wait_ms` after the first for more), runs the model in a thread so the event
loop keeps accepting requests, and hands each image's answer back to its request. While the model is busy the
next batch fills up by itself, which is where the gain under load comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[Sequence[Any], Sequence[str]], Sequence[Any]]
"""Runs the model on a batch: images (in whatever form it takes; the service sends letterboxed tensors) and their
names in, one answer per image out, in order."""


@dataclass
class BatchStats:
    """Counters for /healthz: they show whether batching happens (`multi_image_batches`) and how well."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    multi_image_batches: int = 0
    busy_seconds: float = 0.0

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.images += size
        self.largest_batch = max(self.largest_batch, size)
        self.multi_image_batches += size > 1
        self.busy_seconds += seconds

    def to_dict(self) -> dict[str, Any]:
        mean = self.images / self.batches if self.batches else 0.0
        return {"batches": self.batches, "images": self.images, "largest_batch": self.largest_batch,
                "multi_image_batches": self.multi_image_batches, "mean_batch": round(mean, 2),
                "busy_seconds": round(self.busy_seconds, 3)}  # fmt: skip


@dataclass
class _Job:
    image: Any
    name: str
    future: asyncio.Future[Any] = field(repr=False)


class DynamicBatcher:
    """Collects images from concurrent callers into batches for one `predict` function run off the event loop."""

    def __init__(self, predict: PredictFn, max_batch: int = 32, wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.predict = predict
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_ms) / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the worker on the running loop (call from the app's startup)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="fashionattr-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None

    @property
    def running(self) -> bool:
        """Whether the worker is there to run batches (it stops only with the service, or by a bug)."""
        return self._queue is not None and self._worker is not None and not self._worker.done()

    async def submit(self, images: Sequence[Any], names: Sequence[str]) -> list[Any]:
        """Answers for `images`, in order; they may be batched with other callers' images."""
        if not self.running:
            raise RuntimeError("the batcher is not running; call start() first")
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        jobs = [_Job(image, name, loop.create_future()) for image, name in zip(images, names, strict=True)]
        for job in jobs:
            self._queue.put_nowait(job)
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [job for job in await self._collect(self._queue) if not job.future.cancelled()]
            if not batch:  # every caller in it has gone away
                continue
            started = time.perf_counter()
            try:
                answers = await asyncio.to_thread(self.predict, [j.image for j in batch], [j.name for j in batch])
            except Exception as exc:  # one failing batch fails its requests, never the worker
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.stats.record(len(batch), time.perf_counter() - started)
            for job, answer in zip(batch, answers, strict=True):
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(answer)

    async def _collect(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        """The first waiting image, then whatever else arrives within the wait, up to `max_batch`."""
        batch = [await queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch
