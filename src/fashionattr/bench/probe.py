"""Child-process jobs of the bench: `python -m fashionattr.bench.probe JOB.json`.

Some figures need a process of their own: torch.compile, so that a compile running past its budget can be
killed; peak memory, so that each peak (VmHWM) belongs to one job alone. Each job prints its results as
`BENCH-RESULT {json}` lines, one as soon as each part is done, so a killed job still reports what it finished.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "


def run_probe(job: dict[str, Any], workdir: Path, timeout_s: float | None) -> tuple[dict[str, Any], bool]:
    """Run `job` in a fresh Python process; returns its results and whether it finished cleanly in time.

    The child runs in its own process group, so that on timeout its compile and loader workers end with it.
    A failed job's last line of stderr comes back under `error`.
    """
    job_file = workdir / f"job-{job['job']}-{time.monotonic_ns()}.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
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
    print(RESULT_PREFIX + json.dumps(results), flush=True)


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


def _context(job: dict[str, Any], job_file: Path) -> Any:
    import torch

    from fashionattr.bench.context import BenchContext, BenchData, BenchSettings
    from fashionattr.data.labels import read_labels
    from fashionattr.data.layout import DatasetLayout

    values = dict(job["settings"])
    values["only"] = tuple(values["only"])
    layout = DatasetLayout.open(job["data"])
    data = BenchData(layout.root, layout.schema, read_labels(layout.labels_path, layout.schema), "", 0.0)
    return BenchContext(BenchSettings(**values), data, torch.device(job["device"]), job_file.parent)


def compile_job(job: dict[str, Any], job_file: Path) -> None:
    """Compiled vs eager: the training step first (what the `compile` setting of training switches), then inference."""
    import torch

    from fashionattr.bench.core import Variant, measure
    from fashionattr.bench.cpu_options import InferenceRunner, Option
    from fashionattr.bench.inputs import labelled_batch
    from fashionattr.bench.training import EngineTrainer

    context = _context(job, job_file)
    amp = getattr(torch, job["amp"]) if job.get("amp") else None
    option = Option("bench", amp=amp, channels_last=bool(job.get("channels_last")))
    batch = labelled_batch(context)
    pairs: list[tuple[str, Callable[[bool], Any]]] = [
        ("train", lambda compiled: EngineTrainer(context, batch, amp=option.amp, channels_last=option.channels_last,
                                                 compiled=compiled)),
        ("infer", lambda compiled: InferenceRunner(context, option, compiled=compiled)),
    ]  # fmt: skip
    for kind, make in pairs:
        eager, compiled = make(False), make(True)
        eager.step()
        start = time.perf_counter()
        compiled.step()
        first = time.perf_counter() - start
        rounds = min(context.settings.rounds, 2) if kind == "train" else context.settings.rounds
        measurement = measure([Variant("compiled", compiled.step), Variant("eager", eager.step)], rounds=rounds,
                              warmup=0)  # fmt: skip
        step_seconds = batch["image"].shape[0] / measurement.median("compiled")
        emit(**{kind: {"ratio": measurement.ratio("compiled", "eager"), "compiled": measurement.median("compiled"),
                       "eager": measurement.median("eager"), "rounds": measurement.rounds,
                       "compile_seconds": max(0.0, first - step_seconds)}})  # fmt: skip
        del eager, compiled


def train_memory_job(job: dict[str, Any], job_file: Path) -> None:
    """A short training run as `fashionattr train` makes it; the run directory is kept for the predict job."""
    from fashionattr.config import resolve_config
    from fashionattr.training import train

    start = time.perf_counter()
    train(resolve_config(None, job["config"]))
    emit(train={"main": peak_rss_mib(), "workers": children_peak_rss_mib(), "seconds": time.perf_counter() - start})


def predict_memory_job(job: dict[str, Any], job_file: Path) -> None:
    """`fashionattr predict` over a list of files, written as JSON lines, exactly as a user runs it."""
    from fashionattr.cli import main

    files = json.loads(Path(job["files"]).read_text(encoding="utf-8"))
    out = job_file.parent / f"predictions-{len(files)}.jsonl"
    start = time.perf_counter()
    options = ["--format", "jsonl", "--output", str(out), "--workers", str(job["workers"]),
               "--batch-size", str(job["batch_size"]), "--device", job["device"]]  # fmt: skip
    code = main(["predict", job["checkpoint"], *files, *options])
    emit(predict={"main": peak_rss_mib(), "workers": children_peak_rss_mib(), "images": len(files),
                  "exit_code": code, "seconds": time.perf_counter() - start})  # fmt: skip


def import_memory_job(job: dict[str, Any], job_file: Path) -> None:
    """The floor under both: the process after importing what training and predict import."""
    import fashionattr.inference
    import fashionattr.training  # noqa: F401

    emit(imports={"main": peak_rss_mib()})


JOBS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "import_memory": import_memory_job,
    "compile": compile_job,
    "train_memory": train_memory_job,
    "predict_memory": predict_memory_job,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job_file = Path(args[0])
    job = json.loads(job_file.read_text(encoding="utf-8"))
    JOBS[job["job"]](job, job_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
