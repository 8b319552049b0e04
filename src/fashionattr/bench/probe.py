"""Child-process jobs of the bench: `python -m fashionattr.bench.probe JOB.json` (started by `isolation.run_probe`)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fashionattr.bench.isolation import children_peak_rss_mib, emit, peak_rss_mib
from fashionattr.io import json_text


def _context(job: dict[str, Any], job_file: Path) -> Any:
    import torch

    from fashionattr.bench.context import BenchContext, BenchData, BenchSettings
    from fashionattr.data.dataset import DatasetRoot

    values = dict(job["settings"])
    values["only"] = tuple(values["only"])
    data_root = DatasetRoot.open(job["data"])
    data = BenchData(data_root.path, data_root.schema, data_root.read_labels(), "", 0.0)
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
    """What `fashionattr predict --format jsonl` does over a list of files: stream predictions into a file."""
    from fashionattr.inference import load_predictor

    files = json.loads(Path(job["files"]).read_text(encoding="utf-8"))
    out = job_file.parent / f"predictions-{len(files)}.jsonl"
    start = time.perf_counter()
    predictor = load_predictor(job["checkpoint"], device=job["device"])
    failed = 0
    with out.open("w", encoding="utf-8") as handle:
        for result in predictor.predict_paths(files, batch_size=job["batch_size"], workers=job["workers"]):
            if isinstance(result, Exception):
                failed += 1
                continue
            handle.write(json_text(result.to_dict(), indent=None) + "\n")
    emit(predict={"main": peak_rss_mib(), "workers": children_peak_rss_mib(), "images": len(files),
                  "exit_code": 1 if failed else 0, "seconds": time.perf_counter() - start})  # fmt: skip


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
