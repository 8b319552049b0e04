"""Figure `int8`: the int8 ONNX model (`export --int8`) against the fp32 export on a CPU, side by side.

Speed: the bench's architecture at its input size (random weights; speed does not depend on them), exported to
ONNX and quantized with its activation ranges calibrated on the bench's JPEGs; ONNX Runtime runs a letterboxed batch
through each graph in alternate rounds, images/s. Accuracy needs a trained model: with `--int8-run RUN` (e.g. the
run `fashionattr demo` trains), both graphs of that run (int8 calibrated on its validation images, as `export
--int8` does) score its labelled test images (`Tests/answers.csv`; else the validation images calibration did not
use): BP and mAP of each, the top-class agreement, and each graph's images/s at the run's own input size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure
from fashionattr.inference.quantize import CALIBRATION_IMAGES

SPEED_GOAL = 2.0
BP_LOSS_GOAL = 0.5
"""Points of BP the int8 model may lose and still be worth offering as the CPU default."""


def _graphs(checkpoint: Path, folder: Path, calibration: list[Path]) -> tuple[Path, Path, float]:
    from fashionattr.inference.export import export_onnx
    from fashionattr.inference.quantize import quantize_int8

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(checkpoint, folder / "model.onnx").path
    began = time.perf_counter()
    int8 = quantize_int8(fp32, folder / "model.int8.onnx", calibration).path
    return fp32, int8, time.perf_counter() - began


def _speed(fp32: Path, int8: Path, images: list[Path], batch_size: int, rounds: int) -> Any:
    """Images/s of both graphs on one letterboxed uint8 batch, alternating round by round."""
    import torch

    from fashionattr.inference.onnx_backend import OnnxBackend
    from fashionattr.inference.quantize import calibration_feeds

    backends = {"int8": OnnxBackend(int8, "cpu"), "fp32": OnnxBackend(fp32, "cpu")}
    feed = next(calibration_feeds(backends["fp32"], images[:batch_size], batch_size))
    batches = [torch.from_numpy(feed[name]) for name in backends["fp32"].input_names]
    size = len(batches[0])

    def variant(name: str) -> Variant:
        def run() -> int:  # at least half a second of work, so that a tiny model's rounds are not noise
            done, began = 0, time.perf_counter()
            while done < 4 or time.perf_counter() - began < 0.5:
                backends[name].run(batches, backends[name].attributes, tta=False, embed=True)
                done += 1
            return done * size

        return Variant(name, run)

    return measure([variant(name) for name in backends], rounds=rounds, warmup=1, budget_s=120)


def int8_figures(context: BenchContext) -> list[Figure]:
    from fashionattr.bench.service import service_checkpoint

    settings = context.settings
    images = context.data.images
    fp32, int8, quantize_s = _graphs(service_checkpoint(context), context.workdir / "int8", images[:64])
    measurement = _speed(fp32, int8, images, settings.batch_size, settings.rounds)
    figures = [compared(
        "int8", f"ONNX Runtime images/s on a CPU, int8 / fp32 ({settings.arch}, {settings.img_size} px)",
        measurement, "int8", "fp32", goal=SPEED_GOAL,
        settings={"arch": settings.arch, "size": settings.img_size, "batch": settings.batch_size,
                  "calibration_images": min(64, len(images)), "quantize_s": round(quantize_s, 1),
                  "fp32_mib": round(fp32.stat().st_size / 2**20, 1), "int8_mib": round(int8.stat().st_size / 2**20, 1)},
        notes=["random weights (speed does not depend on them); all eight attributes and the embedding per batch",
               "int8: weights per channel, activations uint8 calibrated by MinMax, QDQ graph (export --int8)"],
    )]  # fmt: skip
    if settings.int8_run:
        figures += _accuracy_figures(context, Path(settings.int8_run))
    else:
        figures.append(Figure(key="int8.accuracy", title="int8 vs fp32 BP and mAP on a trained model",
                              skipped="needs a trained run: --int8-run RUN (e.g. runs/demo/run from fashionattr "
                              "demo)"))  # fmt: skip
    return figures


def _accuracy_figures(context: BenchContext, run: Path) -> list[Figure]:
    from fashionattr.inference.quantize import run_validation_images

    validation = run_validation_images(run)
    calibration = validation[:CALIBRATION_IMAGES]
    fp32, int8, quantize_s = _graphs(run, context.workdir / "int8-run", calibration)
    records, origin = _labelled_images(run, set(validation[CALIBRATION_IMAGES:]))
    scored = {name: _score(path, records) for name, path in (("fp32", fp32), ("int8", int8))}
    agreement = float(np.mean([a == b for a, b in zip(scored["fp32"]["top"], scored["int8"]["top"], strict=True)]))
    paths = sorted({Path(r[0]) for r in records})
    speed = _speed(fp32, int8, paths, context.settings.batch_size, context.settings.rounds)
    loss = 100 * (scored["fp32"]["bp"] - scored["int8"]["bp"])
    settings = {"run": str(run), "images": origin, "calibration_images": len(calibration),
                "quantize_s": round(quantize_s, 1), "top_class_agreement": round(agreement, 4),
                "images_per_s": {name: round(speed.median(name), 1) for name in ("fp32", "int8")},
                "speed_ratio": round(speed.ratio("int8", "fp32"), 2)}  # fmt: skip
    return [Figure(
        key="int8.accuracy", title="BP lost by the int8 model against fp32 on a trained run, points",
        ratio=loss, goal=BP_LOSS_GOAL, at_most=True, ratio_unit=" points", unit="%",
        values={"fp32 BP": 100 * scored["fp32"]["bp"], "int8 BP": 100 * scored["int8"]["bp"],
                "fp32 mAP": 100 * scored["fp32"]["map"], "int8 mAP": 100 * scored["int8"]["map"],
                "top-class agreement": 100 * agreement},
        settings=settings,
        notes=["the same images through both graphs (ONNX Runtime, CPU); images/s at the run's own input size"],
    )]  # fmt: skip


def _labelled_images(
    run: Path, unused_validation: set[Path]
) -> tuple[list[tuple[str, str, int, tuple[int, ...]]], str]:
    """(file, attribute, target, maybe) of the run's labelled test images, else its validation images calibration
    did not see."""
    from fashionattr.checkpoint import load_checkpoint, resolve_checkpoint_path
    from fashionattr.data.dataset import DatasetRoot

    data = load_checkpoint(resolve_checkpoint_path(run))["config"]["data"]
    dataset = DatasetRoot.open(data)
    if dataset.answers_path.is_file():
        records, origin = dataset.read_labels(dataset.answers_path), "the labelled test images (Tests/answers.csv)"
    else:
        records = [r for r in dataset.read_labels() if dataset.path / r.path in unused_validation]
        origin = "validation images calibration did not use"
    rows = [(str(dataset.path / r.path), r.attribute, r.target, tuple(r.maybe)) for r in records if r.is_labelled]
    return rows, f"{origin}: {len(rows)}"


def _score(graph: Path, records: list[tuple[str, str, int, tuple[int, ...]]]) -> dict[str, Any]:
    """BP and mAP of one graph over `records`, and its top class for each record, in order."""
    from fashionattr.data.images import ImageError
    from fashionattr.inference import load_predictor
    from fashionattr.metrics import AttributePredictions, maybe_mask, score

    predictor = load_predictor(graph, device="cpu")
    answers = {}
    for entry in predictor.predict_paths(sorted({r[0] for r in records}), batch_size=32, workers=0):
        if not isinstance(entry, ImageError):
            answers[entry.source] = entry
    kept = [r for r in records if r[0] in answers and r[1] in predictor.attributes]
    per_attribute: dict[str, AttributePredictions] = {}
    for attribute in {r[1] for r in kept}:
        rows = [r for r in kept if r[1] == attribute]
        classes = predictor.schema.attribute(attribute).classes
        probs = np.array([[answers[r[0]].attributes[attribute].probabilities[c] for c in classes] for r in rows])
        per_attribute[attribute] = AttributePredictions(probs, np.array([r[2] for r in rows]),
                                                        maybe_mask([r[3] for r in rows], len(classes)))  # fmt: skip
    scores = score(predictor.schema, per_attribute)
    top = [answers[r[0]].attributes[r[1]].index for r in kept]
    return {"bp": scores.basic_precision, "map": scores.mean_average_precision, "top": top}
