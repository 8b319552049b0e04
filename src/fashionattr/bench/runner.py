"""`run_bench`: set up the data, run the chosen figures in order, print each as it lands, then the summary."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fashionattr.bench.context import (
    NO_IMAGE_FIGURES,
    BenchContext,
    BenchSettings,
    copy_sample,
    make_synthetic,
    no_images,
)
from fashionattr.bench.core import Figure, format_figure, format_machine, format_summary, machine_info
from fashionattr.io import atomic_write_text, json_text

FigureFunction = Callable[[BenchContext], Iterable[Figure]]
"""A section: its figures, as a list or yielded one by one (each is printed as soon as it lands)."""


def _sections() -> dict[str, FigureFunction]:
    from fashionattr.bench.catalog import similar_figures
    from fashionattr.bench.cpu_options import cpu_options_figures
    from fashionattr.bench.facets import facet_figures
    from fashionattr.bench.gpu import gpu_figures
    from fashionattr.bench.inference import multitask_figure, predict_figure
    from fashionattr.bench.int8 import int8_figures
    from fashionattr.bench.loader import loader_figure
    from fashionattr.bench.memory import memory_figures
    from fashionattr.bench.page import page_figures
    from fashionattr.bench.reindex import reindex_figures
    from fashionattr.bench.service import service_figures
    from fashionattr.bench.training import engine_figure, grouped_figure

    return {"a": loader_figure, "b": multitask_figure, "c": engine_figure, "d": predict_figure,
            "e": cpu_options_figures, "g": grouped_figure, "mem": memory_figures, "gpu": gpu_figures,
            "int8": int8_figures,
            "similar": similar_figures, "facets": facet_figures, "page": page_figures,
            "reindex": reindex_figures, "service": service_figures}  # fmt: skip


def run_bench(settings: BenchSettings, emit: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the figures named in `settings.only`; returns the report (machine, settings, figures) as a dict."""
    from fashionattr.distributed import pick_device

    start = time.perf_counter()
    device = pick_device(settings.device)
    machine = machine_info(device)
    emit(format_machine(machine))
    load = os.getloadavg()[0]
    if load > (machine["usable_cores"] or 1) and machine["omp_wait_policy"] == "(unset)":
        emit(f"warning: load average {load:.1f} is above the core count; set OMP_WAIT_POLICY=PASSIVE so that "
             "PyTorch's idle threads do not spin against the other jobs")  # fmt: skip
    sections = _sections()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="fashionattr-bench-") as scratch:
        workdir = Path(scratch)
        if set(settings.only) <= set(NO_IMAGE_FIGURES):
            data = no_images(workdir)
        elif settings.data:
            data = copy_sample(settings.data, workdir, settings.per_class)
        else:
            data = make_synthetic(workdir, settings.per_class)
        emit(f"data: {data.origin} (ready in {data.seconds:.1f} s)")
        context = BenchContext(settings=settings, data=data, device=device, workdir=workdir)
        for key, section in sections.items():
            if key not in settings.only:
                continue
            began = time.perf_counter()
            for figure in section(context):
                figures.append(figure)
                emit(format_figure(figure))
            emit(f"    ({key} took {time.perf_counter() - began:.0f} s)")
    emit(format_summary(figures))
    total = time.perf_counter() - start
    emit(f"total {total:.0f} s, load average now {os.getloadavg()[0]:.2f}")
    return {"machine": machine, "settings": settings.describe(), "seconds": total,
            "figures": [f.to_dict() for f in figures]}  # fmt: skip


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    atomic_write_text(path, json_text(report, default=str))
