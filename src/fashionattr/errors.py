"""Errors a user can act on. The command line prints their message (no traceback) and exits with code 2 for a
`UserError` (bad usage or input), 1 for a `RunError` (a run that cannot go on, such as a full disk)."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or bad input: the message says what was wrong, where, and what to do."""


class CheckpointError(UserError):
    """A checkpoint file is missing, damaged, unsafe or not ours; the message says which and what to do."""


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
