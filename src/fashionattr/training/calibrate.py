"""Calibrating a trained run: a temperature per attribute fitted on its validation split, kept in the checkpoint.

Training calls this once the epochs are done; `fashionattr calibrate` does it for runs trained before
calibration existed. The temperatures go into the checkpoint (so every predictor, and the ONNX export, apply
them), the measurements into `calibration.json` and the reliability diagram into the run's plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fashionattr.calibration import Calibration, calibrate
from fashionattr.checkpoint import augmentation_of, load_checkpoint, write_temperatures
from fashionattr.io import write_json
from fashionattr.metrics import AttributePredictions
from fashionattr.render.plots import plot_reliability
from fashionattr.run_dir import RunDir
from fashionattr.schema import Schema


def calibrate_run(
    run: RunDir,
    checkpoint: Path,
    schema: Schema,
    predictions: Mapping[str, AttributePredictions],
    tta_predictions: Mapping[str, AttributePredictions] | None = None,
) -> Calibration:
    """Fit temperatures on a checkpoint's raw validation `predictions`, store them in it, record the effect.

    `tta_predictions` (raw flip-averaged answers, for a model trained with mirrored images) get temperatures of their
    own: each mode is calibrated in the mode it is used.
    """
    calibration = calibrate(schema, predictions)
    averaged = calibrate(schema, tta_predictions) if tta_predictions is not None else None
    write_temperatures(checkpoint, calibration.temperatures, averaged.temperatures if averaged is not None else None)
    record = calibration.to_dict()
    if averaged is not None:
        record["tta"] = averaged.to_dict()
    write_json(run.calibration, record)
    plot_reliability(record["attributes"], run.reliability_plot)
    for name, entry in {**calibration.attributes, **(averaged.attributes if averaged else {})}.items():
        if entry.at_bound:
            why = (
                "its validation images are told apart with no error, so the fit cannot tell how sure to be"
                if entry.temperature < 1
                else "its answers are no better than chance on the validation images"
            )
            print(f"warning: {run}: the temperature of {name} stops at its bound ({entry.temperature:.3g}): {why}",
                  flush=True)  # fmt: skip
    return calibration


def trained_with_flips(checkpoint: Path) -> bool:
    """Whether a checkpoint's model saw mirrored images (flip averaging is refused otherwise, so needs no fit)."""
    augmentation = augmentation_of(load_checkpoint(checkpoint))
    return augmentation is None or augmentation.flip
