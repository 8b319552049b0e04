"""Files in and out: atomic writes (a file is its old content or its complete new content, never half of each) and
safe reads (regular files only, never blocking, never unbounded).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeGuard

from fashionattr.errors import DiskFullError, UserError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""No space left on the device, or the user's quota spent: what a full disk looks like to a write."""


def is_disk_full(exc: BaseException) -> TypeGuard[OSError]:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    A full disk at any step (the folder, the temporary file, a write by the caller, the flush) becomes a
    :class:`DiskFullError` naming `path`, which still holds its old content; the temporary file is removed.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; a file is to be written there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError.writing(path, exc) from None
        raise
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise DiskFullError.writing(path, exc) from None
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def json_text(data: Any, indent: int | None = 1, **options: Any) -> str:
    """Strict JSON (RFC 8259) for every JSON the project writes: a NaN or an infinity, which `json.dumps` would
    write as the non-JSON `NaN`/`Infinity`, becomes null, with a note beside it in a mapping (`"precision": null,
    "precision_note": "not a number (NaN)"`), so no reader chokes and none mistakes it for zero."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False, **options)


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """`data` as strict JSON (see :func:`json_text`), written atomically."""
    atomic_write_text(path, json_text(data, indent) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            out[key] = _finite(item)
            if isinstance(item, float) and not math.isfinite(item) and isinstance(key, str):
                out[f"{key}_note"] = "not a number (NaN)" if math.isnan(item) else f"{item} (infinite)"
        return out
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


# ---------------------------------------------------------------------------------------------------------------
# Reading: regular files only, never blocking, never unbounded

MAX_TABLE_BYTES = 256 * 1024 * 1024
"""Label, question, answer and split files: FashionAI's label.csv is 6 MB."""
MAX_SETTINGS_BYTES = 4 * 1024 * 1024
"""Schema and config files: a schema of a thousand attributes is still well under 1 MB."""

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class FileReadError(UserError):
    """A file that cannot be read as data: missing, not a regular file, over a size limit, or refused by the OS.

    `reason` is the sentence without the path, so a caller can report it in its own shape (an image's error,
    a label file's `file: reason`).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
    return f"is {kind}, not a regular file; only regular files are read"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return f"cannot read: {exc.strerror or exc}"


@contextlib.contextmanager
def open_regular_file(path: str | Path, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """Open `path` for binary reading if, after following links, it is a regular file of at most `max_bytes`.

    A FIFO named `x.jpg` would block `open()` until a writer came, and a link to `/dev/zero` would never end, so
    the kind of file is checked with `stat` before opening. The open itself is non-blocking and the kind is checked
    again on the open descriptor, in case the path was swapped in between. Raises :class:`FileReadError`.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileReadError(path, _os_reason(exc)) from None
    except ValueError:  # an embedded NUL
        raise FileReadError(path, "the path contains a NUL character") from None
    problem = _not_regular(info.st_mode) or _over_limit(info.st_size, max_bytes)
    if problem:
        raise FileReadError(path, problem)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise FileReadError(path, _os_reason(exc)) from None
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem:
            raise FileReadError(path, problem)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most `max_bytes` (see :func:`open_regular_file`)."""
    with open_regular_file(path, max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise FileReadError(path, _os_reason(exc)) from None
    problem = _over_limit(len(data), max_bytes)  # it grew while being read
    if problem:
        raise FileReadError(path, problem)
    return data


def _over_limit(size: int, max_bytes: int | None) -> str | None:
    if max_bytes is None or size <= max_bytes:
        return None
    return f"is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit for this kind of file"


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MB"
