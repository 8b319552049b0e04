"""The files a catalogue indexes: finding image files under a folder and hashing their content, safely.

Only regular files are ever opened (`fashionattr.io.open_regular_file`): a FIFO named `x.jpg` would block the
open forever and a link to `/dev/zero` would never end. No read goes past the size the file had when opened.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from fashionattr.data.images import IMAGE_SUFFIXES
from fashionattr.inference import find_checkpoints
from fashionattr.io import FileReadError, open_regular_file

CHUNK_BYTES = 1 << 20


def file_state(path: str | Path) -> tuple[str, int, float]:
    """(SHA-256 of the content, size, mtime) of a regular file; raises `FileReadError` for anything else."""
    with open_regular_file(path) as handle:
        info = os.fstat(handle.fileno())
        digest = hashlib.sha256()
        left = info.st_size
        try:
            while left > 0:
                chunk = handle.read(min(CHUNK_BYTES, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise FileReadError(path, f"cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest(), info.st_size, info.st_mtime


def file_sha256(path: str | Path) -> str:
    return file_state(path)[0]


def model_fingerprint(model: str | Path) -> str:
    """Content hash of the model file(s), so re-indexing with a retrained model re-tags everything."""
    path = Path(model)
    return files_fingerprint([path] if path.is_file() else find_checkpoints(path))


def files_fingerprint(files: Iterable[str | Path]) -> str:
    """One hash over the names and contents of `files`, in order; the service uses it to match a catalogue."""
    digest = hashlib.sha256()
    for file in map(Path, files):
        digest.update(file.name.encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def scan_images(root: Path) -> list[str]:
    """Image file names under `root`, as sorted '/'-separated relative paths; hidden files and folders are skipped.

    Listed by name only (nothing is opened): whether each is a regular file is checked when it is hashed, so a
    FIFO or device under an image name is reported rather than silently left out.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def shown_name(rel: str) -> str:
    """`rel` itself when it is valid UTF-8 text, else with the offending bytes written as `\\xNN`."""
    return os.fsencode(rel).decode("utf-8", errors="backslashreplace")
