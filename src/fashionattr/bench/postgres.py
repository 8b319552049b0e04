"""A throwaway PostgreSQL server in a temporary folder (initdb + pg_ctl), reachable by Unix socket only.

For the catalogue benchmark when no `--postgres URL` is given, and for the test suite. No TCP port is opened,
so several runs on one machine cannot collide, and nothing outside the folder is touched. PostgreSQL refuses
to run as root, so under root the cluster belongs to `nobody` and its commands run as that user. The server
dies with the process that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "fashionattr"
UNPRIVILEGED = "nobody"
PR_SET_PDEATHSIG = 1
"""Linux prctl option: a signal the kernel sends a process when its parent dies."""


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

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        account = pwd.getpwnam(self.user) if self.user else None
        argv = [str(self.bindir / command[0]), *command[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/",
                                user=account.pw_uid if account else None, group=account.pw_gid if account else None,
                                extra_groups=[] if account else None)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def new_database(self, owner: str | None = None) -> str:
        """A fresh, empty database (owned by `owner`, a role made by `new_role`, or the superuser); its URL as the
        superuser."""
        import psycopg

        name = f"catalog_{os.getpid()}_{next(self.names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))  # names made here
        return self.url(name)

    def new_role(self, name: str, password: str) -> None:
        """A login role that must give `password` (scram-sha-256): every role but the superuser needs one."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )


def _die_with_parent() -> None:
    """In the server's process, before it starts: ask Linux to end it (SIGQUIT, PostgreSQL's immediate shutdown)
    when the process that started it dies, so a killed test run or benchmark leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


@contextlib.contextmanager
def throwaway_postgres(bindir: Path) -> Iterator[PostgresServer]:
    """Start a cluster with the server binaries in `bindir` for the duration of the block, then delete it.

    The server runs as a child of this process (not daemonised by pg_ctl) and is stopped with it, even when this
    process is killed.
    """
    user = UNPRIVILEGED if os.geteuid() == 0 else None
    account = pwd.getpwnam(user) if user else None
    folder = Path(tempfile.mkdtemp(prefix="fashionattr-pg-"))
    server = PostgresServer(folder, bindir, user)
    data = str(folder / "data")
    try:
        server.socket_dir.mkdir()
        if account is not None:
            for path in (folder, server.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        server.run("initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-sync")
        # The superuser connects without a password; any other role must give its own (as a real server asks).
        (Path(data) / "pg_hba.conf").write_text(f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n")
        command = [str(bindir / "postgres"), "-D", data, "-k", str(server.socket_dir), "-c", "listen_addresses=",
                   "-c", "fsync=off", "-c", "full_page_writes=off"]  # fmt: skip
        with (folder / "server.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                       user=account.pw_uid if account else None,
                                       group=account.pw_gid if account else None,
                                       extra_groups=[] if account else None, preexec_fn=_die_with_parent)  # fmt: skip
        try:
            _wait_until_ready(server, process)
            yield server
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_ready(server: PostgresServer, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            log = (server.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log}")
        if subprocess.run([str(server.bindir / "pg_isready"), "-q", "-h", str(server.socket_dir)],
                          check=False).returncode == 0:  # fmt: skip
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres did not accept connections within {timeout_s:.0f} s")
        time.sleep(0.1)
