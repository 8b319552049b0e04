"""Errors a user can act on. The command line prints their message (no traceback) and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or bad input: the message says what was wrong, where, and what to do."""


class CheckpointError(UserError):
    """A checkpoint file is missing, damaged, unsafe or not ours; the message says which and what to do."""


class RunError(Exception):
    """A run that cannot go on for a reason that is not a bug (training diverged): the CLI prints it and exits 1."""
