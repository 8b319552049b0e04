"""Figure mem: peak resident memory of a short training run and of `predict`, and that predict stays flat.

Each job runs in a fresh process (see `probe`), so each peak (VmHWM) is its own. The flatness check runs
`predict` over N and then 4N files with a tiny network at 64 px: memory that grew with the number of images
would come from the pipeline (paths, results, loader), not the network, and a tiny one keeps 5N images to
seconds. The file list cycles over the bench's JPEGs when it needs more than there are.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure
from fashionattr.bench.isolation import run_probe
from fashionattr.checkpoint import save_checkpoint
from fashionattr.models.backbones import model_preprocessing
from fashionattr.models.networks import create_model
from fashionattr.run_dir import RunDir

FLAT_LIMIT = 1.10
"""Peak over 4N images at most this many times the peak over N: memory does not grow with the input."""

TINY_ARCH, TINY_SIZE = "test_resnet", 64
PROBE_TIMEOUT_S = 300


def tiny_checkpoint(context: BenchContext) -> Path:
    """A random-weight checkpoint of a tiny network, enough for `predict` to load and run."""
    schema = context.data.schema
    torch.manual_seed(0)
    model = create_model(TINY_ARCH, schema)
    preprocessing = model_preprocessing(TINY_ARCH, TINY_SIZE)
    path = RunDir(context.workdir / "tiny").best
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"model": model.state_dict(), "spec": model.spec, "schema": schema.to_dict(),
                           "preprocessing": preprocessing.to_dict(), "attributes": schema.names})  # fmt: skip
    return path


def _predict_peak(context: BenchContext, checkpoint: Path, count: int) -> dict[str, Any]:
    files = [str(p) for p in itertools.islice(itertools.cycle(context.data.images), count)]
    listing = context.workdir / f"files-{count}.json"
    listing.write_text(json.dumps(files), encoding="utf-8")
    job = {"job": "predict_memory", "checkpoint": str(checkpoint), "files": str(listing),
           "workers": context.settings.workers, "batch_size": context.settings.batch_size,
           "device": str(context.device)}  # fmt: skip
    results, _ = run_probe(job, context.workdir, timeout_s=PROBE_TIMEOUT_S)
    if "predict" not in results:
        raise RuntimeError(f"the predict memory job failed: {results.get('error', 'timed out')}")
    return results["predict"]


def _peak_figure(key: str, title: str, result: dict[str, Any], settings: dict[str, Any], floor: float) -> Figure:
    values = {"main process peak (VmHWM)": result["main"], "largest loader worker peak": result["workers"],
              "floor: a process that only imported the libraries": floor}  # fmt: skip
    notes = [
        f"{result['main'] - floor:,.0f} MiB above the floor; took {result['seconds']:.0f} s",
        "a forked worker's resident memory includes the pages it still shares with the main process",
    ]
    return Figure(key, title, unit="MiB", settings=settings, values=values, notes=notes)


def memory_figures(context: BenchContext) -> list[Figure]:
    settings = context.settings
    run_dir = context.workdir / "memory-run"
    config = {"data": str(context.data.root), "out": str(run_dir), "arch": settings.arch, "layout": "multitask",
              "img_size": settings.img_size, "epochs": 1, "batch_size": settings.batch_size,
              "workers": settings.workers, "max_steps_per_epoch": 2, "progress": False,
              "device": str(context.device)}  # fmt: skip
    imports, _ = run_probe({"job": "import_memory"}, context.workdir, timeout_s=PROBE_TIMEOUT_S)
    floor = float(imports.get("imports", {}).get("main", float("nan")))
    results, _ = run_probe({"job": "train_memory", "config": config}, context.workdir, timeout_s=PROBE_TIMEOUT_S)
    figures = []
    common = {"arch": settings.arch, "size": settings.img_size, "batch": settings.batch_size,
              "workers": settings.workers}  # fmt: skip
    if "train" in results:
        figures.append(_peak_figure("mem.train", "peak memory of a short training run (2 steps + validation)",
                                    results["train"], {**common, "images": len(context.data.records)},
                                    floor))  # fmt: skip
        predict = _predict_peak(context, RunDir(run_dir).best, 2 * settings.batch_size)
        figures.append(_peak_figure("mem.predict", "peak memory of predict with that checkpoint", predict,
                                    {**common, "images": predict["images"]}, floor))  # fmt: skip
    else:
        figures.append(Figure("mem.train", "peak memory of a short training run",
                              skipped=f"the training job failed: {results.get('error', 'timed out')}"))  # fmt: skip
    figures.append(flatness_figure(context))
    return figures


def flatness_figure(context: BenchContext) -> Figure:
    count = context.settings.memory_images
    checkpoint = tiny_checkpoint(context)
    small = _predict_peak(context, checkpoint, count)
    large = _predict_peak(context, checkpoint, 4 * count)
    growth = large["main"] - small["main"]
    return Figure(
        "mem.flat", f"predict peak memory over {4 * count} vs {count} images", ratio=large["main"] / small["main"],
        goal=FLAT_LIMIT, at_most=True, unit="MiB",
        values={f"peak over {4 * count} images": large["main"], f"peak over {count} images": small["main"]},
        settings={"arch": TINY_ARCH, "size": TINY_SIZE, "batch": context.settings.batch_size,
                  "workers": context.settings.workers},
        notes=[f"growth {growth:+.1f} MiB for {3 * count} more images "
               f"({1024 * growth / (3 * count):+.2f} KiB per image); loader workers peaked at "
               f"{small['workers']:.0f} and {large['workers']:.0f} MiB",
               f"took {small['seconds']:.0f} s and {large['seconds']:.0f} s"],
    )  # fmt: skip
