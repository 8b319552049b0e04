"""The test session's PostgreSQL server: a throwaway cluster (fashionattr.bench.postgres), never a skip.

Missing server binaries fail the tests that need one, loudly: `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from fashionattr.bench.postgres import PostgresServer, find_bindir, throwaway_postgres

__all__ = ["PostgresServer", "postgres_server"]


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed: the catalogue tests run against "
                    "a real server; install it (apt-get install -y postgresql), as .ci/run does")  # fmt: skip
    with throwaway_postgres(bindir) as server:
        yield server
