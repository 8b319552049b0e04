"""Running a bench job in a fresh process of its own, and what such a job reports back.

Some figures need a process of their own: torch.compile, so that a compile running past its budget can be
killed; peak memory, so that each peak (VmHWM) belongs to one job alone. The jobs live in `probe`; each prints
its results as `BENCH-RESULT {json}` lines, one as soon as each part is done, so a killed job still reports what
it finished.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fashionattr.io import json_text

RESULT_PREFIX = "BENCH-RESULT "


def run_probe(job: dict[str, Any], workdir: Path, timeout_s: float | None) -> tuple[dict[str, Any], bool]:
    """Run `job` in a fresh Python process; returns its results and whether it finished cleanly in time.

    The child runs in its own process group, so that on timeout its compile and loader workers end with it.
    A failed job's last line of stderr comes back under `error`.
    """
    job_file = workdir / f"job-{job['job']}-{time.monotonic_ns()}.json"
    job_file.write_text(json_text(job, indent=None), encoding="utf-8")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor-cache")}
    process = subprocess.Popen([sys.executable, "-m", "fashionattr.bench.probe", str(job_file)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    finished = True
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        finished = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    results: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            results.update(json.loads(line[len(RESULT_PREFIX) :]))
    if finished and process.returncode != 0:
        lines = stderr.strip().splitlines()
        results["error"] = lines[-1] if lines else f"exit code {process.returncode}"
    return results, finished and process.returncode == 0


def emit(**results: Any) -> None:
    print(RESULT_PREFIX + json_text(results, indent=None), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mib() -> float:
    """The largest peak of any finished child process (loader workers), in MiB."""
    gc.collect()  # drops finished DataLoader iterators, which joins their workers
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
