"""`fashionattr serve` as a child process on a free loopback port: how the benchmarks and the tests start one.

One place starts it, waits until `/healthz` answers and stops it, so a benchmark and a test cannot differ in
how a service comes up, and none leaves a server running when it fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 180.0
"""Importing torch and loading a model can take a while on a busy two-core machine."""
STOP_TIMEOUT_S = 15.0


class ServiceStartError(RuntimeError):
    """The service exited, or did not answer /healthz in time; the message ends with its log's tail."""


@dataclass(frozen=True)
class ServiceProcess:
    """A running `fashionattr serve` child and where to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_child(
    checkpoint: str | Path,
    log: Path,
    *options: str,
    device: str = "cpu",
    host: str | None = "127.0.0.1",
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> Iterator[ServiceProcess]:
    """Run `fashionattr serve CHECKPOINT` with `options` on 127.0.0.1 until /healthz answers; stop it on exit.

    `host=None` leaves the service's own default (to check what it binds to); `launcher` replaces
    `python -m fashionattr` (a test runs the service under resource limits that way); the child's output goes
    to `log`.
    """
    port = free_port()
    bind = ["--host", host] if host else []
    command = [*(launcher or (sys.executable, "-m", "fashionattr")), "serve", str(checkpoint), *bind,
               "--port", str(port), "--device", device, "--log-level", "warning", *options]  # fmt: skip
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environment.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_healthy(service, timeout_s)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def wait_until_healthy(service: ServiceProcess, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceStartError(f"fashionattr serve exited with {service.process.returncode}:\n{_tail(service)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise ServiceStartError(f"fashionattr serve did not answer /healthz within {timeout_s:.0f} s:\n{_tail(service)}")


def _tail(service: ServiceProcess, chars: int = 3000) -> str:
    return service.log.read_text(encoding="utf-8", errors="replace")[-chars:]
