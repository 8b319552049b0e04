"""The files a catalogue indexes: finding image files under a folder and hashing their content, safely.

Only regular files are ever opened. A FIFO named `x.jpg` would block the open forever and a link to
`/dev/zero` would never end, so the kind of file is checked first, the file is opened without blocking and
checked again on the open handle, and no read goes past the size the file had when it was checked.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from fashionattr.inference import IMAGE_SUFFIXES, find_checkpoints

CHUNK_BYTES = 1 << 20


class NotARegularFile(OSError):
    """The path is a FIFO, socket, device or folder: reported like an unreadable image, never opened."""


def describe_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def regular_file_stat(path: str | Path) -> os.stat_result:
    """`os.stat` of `path` (links followed), refusing anything that is not a regular file."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(f"{describe_kind(info.st_mode)}, not an image file; only regular files are read")
    return info


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a regular file's content, read at most up to the size it had when opened."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{describe_kind(info.st_mode)}, not an image file; only regular files are read")
        digest = hashlib.sha256()
        left = info.st_size
        while left > 0:
            chunk = handle.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        return digest.hexdigest()


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
