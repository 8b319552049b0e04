"""Progress for long loops: a live bar on a terminal, plain dated lines in a log.

tqdm redraws its bar with carriage returns, which is right on a terminal and wrong in a redirected log (a file full
of `\\r` frames, one line tens of kilobytes long). `progress` gives tqdm's bar when the stream is a terminal and
otherwise a `LogProgress` that writes a whole line now and then (every tenth of the way, and at most once a
minute in between), so a log shows how far a run got and how fast, and nothing else.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

LOG_EVERY_S = 60.0
"""Longest quiet spell in a log while a loop runs."""
LOG_STEPS = 10
"""Lines a loop of known length writes to a log, besides the ones the time adds."""


class LogProgress:
    """tqdm's interface (`update`, `write`, `close`, a context manager) writing whole lines, never `\\r`."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: IO[str]) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = 0
        self.started = self.last_line = time.monotonic()
        self.next_step = 1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step_reached = bool(self.total) and self.n * LOG_STEPS >= self.next_step * (self.total or 1)
        if step_reached or now - self.last_line >= LOG_EVERY_S:
            self._line(now)
            if self.total:
                self.next_step = self.n * LOG_STEPS // self.total + 1

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total:,}" if self.total else ""
        label = f"{self.desc}: " if self.desc else ""
        self.stream.write(f"{label}{self.n:,}{of} {self.unit}{share} in {elapsed:.0f} s{rate}\n")
        self.stream.flush()
        self.last_line = now

    def write(self, message: str, file: IO[str] | None = None) -> None:
        (file or self.stream).write(message + "\n")

    def close(self) -> None:
        pass

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(LogProgress):
    def update(self, n: int = 1) -> None:
        self.n += n


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True, leave: bool = True,
             stream: IO[str] | None = None) -> Any:  # fmt: skip
    """A progress bar for a loop of `total` steps: tqdm on a terminal, `LogProgress` lines elsewhere, nothing when
    not `enabled`. Use it as tqdm: `with progress(...) as bar: ... bar.update(n)`, `bar.write(message)`."""
    stream = stream or sys.stderr
    if not enabled:
        return _Silent(total, desc, unit, stream)
    if stream.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc or None, unit=unit, leave=leave, file=stream)
    return LogProgress(total, desc, unit, stream)


def tracked(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
            leave: bool = True) -> Iterator[T]:  # fmt: skip
    """`items`, reporting progress as they are taken (see `progress`)."""
    with progress(total if total is not None else _length(items), desc, unit, enabled, leave) as bar:
        for item in items:
            yield item
            bar.update(1)


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
