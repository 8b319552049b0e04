"""Benchmarks behind `fashionattr bench`: each speed-up the project claims, as a ratio against its baseline.

Figures are measured side by side in one run (see `core.measure`), so they hold on a shared or busy machine
where absolute images/s do not. The library lives here so that the command works from an installed package;
`benchmarks/` at the repository root only holds scripts that call it.
"""

from fashionattr.bench.context import FIGURES, BenchSettings
from fashionattr.bench.core import Figure, Measurement, Variant, measure
from fashionattr.bench.runner import run_bench, write_report

__all__ = ["FIGURES", "BenchSettings", "Figure", "Measurement", "Variant", "measure", "run_bench", "write_report"]
