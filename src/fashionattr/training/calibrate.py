"""Calibrating a trained run: a temperature per attribute fitted on its validation split, kept in the checkpoint.

Training calls this once the epochs are done; `fashionattr calibrate` does it for runs trained before
calibration existed. The temperatures go into the checkpoint (so every predictor, and the ONNX export, apply
them), the measurements into `calibration.json` and the reliability diagram into the run's plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fashionattr.calibration import Calibration, calibrate
from fashionattr.checkpoint import write_temperatures
from fashionattr.io import write_json
from fashionattr.metrics import AttributePredictions
from fashionattr.report import plot_reliability
from fashionattr.run_dir import RunDir
from fashionattr.schema import Schema


def calibrate_run(
    run: RunDir, checkpoint: Path, schema: Schema, predictions: Mapping[str, AttributePredictions]
) -> Calibration:
    """Fit temperatures on a checkpoint's raw validation `predictions`, store them in it, record the effect."""
    calibration = calibrate(schema, predictions)
    write_temperatures(checkpoint, calibration.temperatures)
    record = calibration.to_dict()
    write_json(run.calibration, record)
    plot_reliability(record["attributes"], run.reliability_plot)
    return calibration
