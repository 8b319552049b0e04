"""Dataset health check: label statistics plus every missing or undecodable image."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fashionattr.data.images import ImageError, open_image, probe_image
from fashionattr.data.labels import LabelRecord
from fashionattr.progress import progress as progress_bar


@dataclass
class ImageReport:
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    bad: list[tuple[str, str]] = field(default_factory=list)
    """(path relative to the root, reason) for each missing or undecodable image."""


def _probe(path: str) -> tuple[int, int] | str:
    try:
        with open_image(path) as image:
            return image.size
    except ImageError as exc:
        return exc.reason


def scan_images(
    root: Path, records: list[LabelRecord], workers: int | None = None, progress: bool = True
) -> ImageReport:
    """Decode every distinct image once, in parallel, recording sizes and failures."""
    relative = sorted({r.path for r in records})
    report = ImageReport()
    workers = workers or os.cpu_count() or 1
    paths = [str(root / p) for p in relative]
    chunk = max(1, len(paths) // (workers * 16))
    with progress_bar(len(paths), desc="images", unit="img", enabled=progress) as bar:
        if workers == 1:
            outcomes = [_probe(p) for p in paths]
            bar.update(len(paths))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                outcomes = []
                for outcome in pool.map(_probe, paths, chunksize=chunk):
                    outcomes.append(outcome)
                    bar.update()
    for rel, outcome in zip(relative, outcomes, strict=True):
        if isinstance(outcome, str):
            report.bad.append((rel, outcome))
        else:
            report.sizes[outcome] += 1
    return report


def _probe_header(path: str) -> str | None:
    try:
        probe_image(path)
    except ImageError as exc:
        return exc.reason
    return None


def scan_headers(root: Path, paths: list[str], workers: int = 8) -> list[tuple[str, str]]:
    """(path, reason) for each image whose header alone shows it unusable; see `probe_image` for what that finds.

    Threads, not processes: reading a header is mostly waiting for the disk.
    """
    relative = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(_probe_header, [str(root / p) for p in relative]))
    return [(rel, reason) for rel, reason in zip(relative, outcomes, strict=True) if reason is not None]
