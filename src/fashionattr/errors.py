"""Errors a user can act on. The command line prints their message (no traceback) and exits with code 2 for a
`UserError` (bad usage or input), 1 for a `RunError` (a run that cannot go on, such as a full disk)."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad usage or bad input: the message says what was wrong, where, and what to do."""


class CheckpointError(UserError):
    """A checkpoint file is missing, damaged, unsafe or not ours; the message says which and what to do."""


class UnavailableError(UserError):
    """Something the command needs is not answering now (a database server down or unreachable); trying again later
    may work. The service answers it with 503 and `Retry-After`, never as the client's mistake."""


class RunError(Exception):
    """A run that cannot go on for a reason that is not a bug (training diverged): the CLI prints it and exits 1."""


class DiskFullError(RunError):
    """The disk or the user's quota filled up while writing `path`; what was there before is kept (atomic writes)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    @classmethod
    def writing(cls, path: object, exc: OSError) -> DiskFullError:
        reason = exc.strerror or str(exc)
        return cls(f"disk full while writing {path} ({reason}); its old content, if any, is kept; free some space "
                   "and run the command again", path=str(path))  # fmt: skip


_REFUSAL_HINTS = {
    errno.EEXIST: "something else is already there, such as a file where a folder is needed; choose another path",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.EACCES: "no permission; choose a path you can write to, or change its permissions",
    errno.EPERM: "not permitted; choose a path you can write to, or change its permissions",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOENT: "it does not exist (was it moved or deleted while the command ran?)",
}
_RUN_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EIO}


def file_system_error(exc: OSError) -> UserError | RunError | None:
    """The error to show for a file-system refusal naming a path, or None for anything else (a bug: traceback).

    Output and input paths reach the file system through many commands; whatever one of them forgot to check in
    advance (a file where `--out` needs a folder, a read-only folder) still ends as one line naming the path.
    """
    if exc.filename is None or exc.errno is None:
        return None
    path = exc.filename if isinstance(exc.filename, str) else repr(exc.filename)
    reason = exc.strerror or str(exc)
    if exc.errno in _RUN_FAILURES:
        return RunError(f"{path}: {reason}; free some space (or fix the disk) and run the command again")
    hint = _REFUSAL_HINTS.get(exc.errno)
    return UserError(f"{path}: {reason} ({hint})") if hint else None
