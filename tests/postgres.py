"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, reachable by Unix socket only.

No TCP port is opened (several test runs on one machine cannot collide) and nothing outside the folder is
touched. PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to `nobody` and its commands
run as that user. Missing server binaries fail the tests that need them, loudly: `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "fashionattr"
UNPRIVILEGED = "nobody"


def find_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps them in /usr/lib/postgresql/N/bin), or PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    """A running cluster; `new_database()` gives the URL of a fresh, empty database on it."""

    folder: Path
    bindir: Path
    user: str | None
    names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return _run([str(self.bindir / command[0]), *command[1:]], self.user)

    def new_database(self) -> str:
        import psycopg

        name = f"catalog_{os.getpid()}_{next(self.names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")


def _run(command: list[str], user: str | None) -> subprocess.CompletedProcess:
    account = pwd.getpwnam(user) if user else None
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            user=account.pw_uid if account else None, group=account.pw_gid if account else None,
                            extra_groups=[] if account else None, cwd="/")  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a cluster for the duration of the block; fail (never skip) where the server is not installed."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed: the catalogue tests run against "
                    "a real server; install it (apt-get install -y postgresql), as .ci/run does")  # fmt: skip
    user = UNPRIVILEGED if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="fashionattr-pg-"))
    server = PostgresServer(folder, bindir, user)
    try:
        server.socket_dir.mkdir()
        if user is not None:
            account = pwd.getpwnam(user)
            for path in (folder, server.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        server.run("initdb", "-D", str(folder / "data"), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                   "--no-sync")  # fmt: skip
        options = f"-k {server.socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        server.run("pg_ctl", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "server.log"), "-w",
                   "-t", "60", "start")  # fmt: skip
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
