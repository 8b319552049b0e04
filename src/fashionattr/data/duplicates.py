"""Images that are the same file content under several paths: one image for the split, a note for `check`.

A photo saved twice (two product listings, a copy in another class folder) must not train and validate at once.
Files are compared by size first and hashed (SHA-256) only where sizes collide, so a dataset of distinct images
costs one `stat` per file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fashionattr.data.images import MAX_IMAGE_FILE_BYTES
from fashionattr.io import FileReadError, open_regular_file

_CHUNK = 1 << 20


def _digest(path: str) -> str | None:
    """SHA-256 of a regular file; None for anything else (a FIFO would block, `/dev/zero` never end)."""
    try:
        sha = hashlib.sha256()
        with open_regular_file(path, MAX_IMAGE_FILE_BYTES) as handle:
            while block := handle.read(_CHUNK):
                sha.update(block)
        return sha.hexdigest()
    except (FileReadError, OSError):
        return None  # a missing, special or unreadable file is the image checks' to report, not a duplicate


def identical_files(root: str | Path, paths: Iterable[str], workers: int = 8) -> list[list[str]]:
    """Sets of two or more paths (relative to `root`, sorted) whose files hold the same bytes, sorted by first path.

    A path that names the same file as another (a hard link, a link inside the root) is the same content too.
    """
    by_size: dict[int, list[str]] = defaultdict(list)
    for rel in sorted(set(paths)):
        try:
            info = os.stat(os.path.join(root, rel))
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(info.st_mode):
            by_size[info.st_size].append(rel)
    candidates = [rel for group in by_size.values() if len(group) > 1 for rel in group]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = list(pool.map(_digest, [os.path.join(root, rel) for rel in candidates]))
    by_digest: dict[str, list[str]] = defaultdict(list)
    for rel, digest in zip(candidates, digests, strict=True):
        if digest is not None:
            by_digest[digest].append(rel)
    return sorted((sorted(group) for group in by_digest.values() if len(group) > 1), key=lambda group: group[0])


def same_image_key(root: str | Path | None, paths: Iterable[str]) -> dict[str, str]:
    """For each path, the path that stands for its content (the first of its byte-identical set; itself if unique).

    With no root (labels without images, as in unit tests) every path is its own image.
    """
    paths = sorted(set(paths))
    key = {path: path for path in paths}
    if root is None:
        return key
    for group in identical_files(root, paths):
        for path in group:
            key[path] = group[0]
    return key
