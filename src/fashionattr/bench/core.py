"""Side-by-side timing, the figures a benchmark reports, and the machine they were measured on.

Every figure is a ratio of two throughputs measured in the same run, alternating the two variants round by
round (A B, then B A, ...) and taking the median of the per-round ratios: a shared machine's load then slows
both sides alike and cancels out, which absolute images/s on a busy machine never do.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Variant:
    """One side of a comparison: `run` does one unit of work and returns how many images it processed."""

    name: str
    run: Callable[[], int]


@dataclass
class Measurement:
    """Images/s of each variant, one entry per round, in the order the rounds ran."""

    rates: dict[str, list[float]]
    warmup_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return min((len(v) for v in self.rates.values()), default=0)

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of (name's rate / baseline's rate in the same round)."""
        pairs = zip(self.rates[name], self.rates[baseline], strict=False)
        return statistics.median(a / b for a, b in pairs)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(variants: Sequence[Variant], rounds: int, warmup: int = 1, budget_s: float | None = None,
            min_rounds: int = 2) -> Measurement:  # fmt: skip
    """Run every variant `warmup` times untimed, then in alternating order for up to `rounds` rounds.

    With `budget_s`, stops after `min_rounds` once another round would overrun the budget, so a slow machine
    gets fewer rounds rather than a run that never ends.
    """
    warmup_seconds: dict[str, float] = {}
    for variant in variants:
        start = time.perf_counter()
        for _ in range(warmup):
            variant.run()
        warmup_seconds[variant.name] = time.perf_counter() - start
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    start = time.perf_counter()
    for index in range(rounds):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for variant in order:
            began = time.perf_counter()
            count = variant.run()
            rates[variant.name].append(count / max(time.perf_counter() - began, 1e-9))
        elapsed = time.perf_counter() - start
        done = index + 1
        if budget_s is not None and done >= min_rounds and elapsed + elapsed / done > budget_s:
            break
    return Measurement(rates, warmup_seconds)


@dataclass
class Figure:
    """One reported number: a ratio against a baseline, its goal, and what it was measured with.

    `goal` is a lower bound on the ratio, or an upper bound when `at_most` (memory growth); None marks a
    figure reported for information only. `values` holds the two sides' own figures (images/s or MiB).
    """

    key: str
    title: str
    ratio: float | None = None
    goal: float | None = None
    at_most: bool = False
    unit: str = "img/s"
    values: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    ratio_unit: str = "x"
    """What `ratio` counts: "x" for a ratio; " ms" or "" where the goal is an absolute bound (latency, recall)."""

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        if self.ratio is None or self.goal is None:
            return "info"
        met = self.ratio <= self.goal if self.at_most else self.ratio >= self.goal
        return "met" if met else "missed"

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        return f"{'<=' if self.at_most else '>='} {self.goal:g}{self.ratio_unit}"

    @property
    def measured_text(self) -> str:
        return "-" if self.ratio is None else f"{self.ratio:.2f}{self.ratio_unit}"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "ratio": self.ratio, "goal": self.goal,
                "goal_kind": "at_most" if self.at_most else "at_least", "status": self.status, "unit": self.unit,
                "values": self.values, "settings": self.settings, "notes": self.notes,
                "skipped": self.skipped, "ratio_unit": self.ratio_unit}  # fmt: skip


def compared(key: str, title: str, measurement: Measurement, candidate: str, baseline: str,
             goal: float | None, settings: dict[str, Any], notes: Sequence[str] = ()) -> Figure:  # fmt: skip
    """A figure for `candidate` against `baseline` from one side-by-side measurement."""
    return Figure(
        key=key,
        title=title,
        ratio=measurement.ratio(candidate, baseline),
        goal=goal,
        values={candidate: measurement.median(candidate), baseline: measurement.median(baseline)},
        settings={**settings, "rounds": measurement.rounds},
        notes=list(notes),
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What a reader needs to judge the figures: processor, cores, library versions, threads, load."""
    import timm
    import torchvision

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "device": str(device),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_value(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}"


def format_figure(figure: Figure) -> str:
    lines = [f"[{figure.key}] {figure.title}"]
    if figure.settings:
        lines.append("    settings: " + ", ".join(f"{k}={v}" for k, v in figure.settings.items()))
    if figure.skipped is not None:
        lines.append(f"    skipped: {figure.skipped}")
    for name, value in figure.values.items():
        lines.append(f"    {name:<40} {format_value(value, figure.unit)}")
    if figure.ratio is not None:
        label = "ratio" if figure.ratio_unit == "x" else "measured"
        lines.append(f"    {label} {figure.measured_text}   goal {figure.goal_text}   {figure.status}")
    lines.extend(f"    note: {note}" for note in figure.notes)
    return "\n".join(lines)


def format_machine(info: dict[str, Any]) -> str:
    parts = [f"{key}={value}" for key, value in info.items()]
    return "machine: " + ", ".join(parts)


def format_summary(figures: Sequence[Figure]) -> str:
    rows = [("figure", "measured", "goal", "status")]
    for figure in figures:
        rows.append((f"{figure.key} {figure.title}", figure.measured_text, figure.goal_text, figure.status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "summary\n" + "\n".join(lines)
