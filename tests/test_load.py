"""The service under load: 2,000 requests from 16 concurrent clients against a real `fashionattr serve` process.

Runs `benchmarks/load_test.py` (the script the README quotes) on the shared tiny trained run. It asserts only that
every request was answered correctly, that the server still serves and listens on loopback by default; the
latency and throughput it prints (and saves as load.json in the test's folder) are for reading, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TrainedRun

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"
REQUESTS = 2000
CONCURRENCY = 16
TIMEOUT_S = 600


@pytest.mark.slow
def test_two_thousand_requests_from_sixteen_clients_all_succeed(trained_run: TrainedRun, tmp_path: Path) -> None:
    figures = tmp_path / "load.json"
    command = [sys.executable, str(SCRIPT), str(trained_run.run), "--requests", str(REQUESTS), "--concurrency",
               str(CONCURRENCY), "--json", str(figures), "--log", str(tmp_path / "server.log")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    load = json.loads(figures.read_text())
    assert load["statuses"] == {"200": REQUESTS} and load["errors"] == 0
    assert load["server"]["still_serving"] is True
    assert load["server"]["listening_on"] in ("127.0.0.1", None)  # None: no /proc/net/tcp to read (not Linux)
    assert load["server"]["batching"]["images"] >= REQUESTS
    print(f"p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, {load['requests_per_s']} requests/s; saved in {figures}")
