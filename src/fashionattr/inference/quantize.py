"""int8 models for a CPU: an exported ONNX graph quantized by ONNX Runtime's static quantization.

Weights become int8 per output channel and activations uint8, with ranges observed on calibration images: the run's
own validation images (`run_validation_images`), letterboxed exactly as every other path feeds the model. The
graph is written in QDQ form, which ONNX Runtime fuses into integer kernels (VNNI instructions where the CPU has
them). Only convolutions and matrix products are quantized: normalisation, softmax and the embedding's unit length
stay in float, so the outputs are still probabilities. The fp32 graph's fashionattr metadata (schema,
preprocessing, spec) is carried over, with the quantization recorded in the spec, so `OnnxBackend` (and with it
`predict`, `catalog index` and `serve`) runs the int8 file as it runs any export.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionattr.data.images import IMAGE_SUFFIXES, ImageError
from fashionattr.errors import UserError
from fashionattr.inference.onnx_format import META_SPEC
from fashionattr.io import atomic_write_bytes, json_text

CALIBRATION_IMAGES = 256
"""Images whose activations set the int8 ranges: ONNX Runtime's guidance is a few hundred representative inputs."""
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Int8Result:
    path: Path
    calibration_images: int
    size_bytes: int
    fp32_bytes: int


def run_validation_images(checkpoint: str | Path, limit: int | None = None, seed: int = 0) -> list[Path]:
    """Image files of the validation split a run trained with (its `split.csv` and its dataset), shuffled by `seed`.

    The images training never learned from, from the distribution the model serves: what calibration should see.
    """
    from fashionattr.checkpoint import load_checkpoint, resolve_checkpoint_path
    from fashionattr.data.split import read_split
    from fashionattr.run_dir import RunDir

    path = resolve_checkpoint_path(checkpoint)
    run = RunDir(path.parent)
    data = load_checkpoint(path).get("config", {}).get("data")
    if not data or not run.split.is_file():
        raise UserError(f"{checkpoint}: no run folder with its split.csv and dataset to take validation images "
                        "from; give images to calibrate on with --calibration-images DIR")  # fmt: skip
    split = read_split(run.split)
    images = sorted({Path(data) / p for (p, _), subset in split.items() if subset == "val"})
    images = [image for image in images if image.is_file()]
    if not images:
        raise UserError(f"{data}: none of the validation images of {run.path} is there to calibrate on; give images "
                        "with --calibration-images DIR")  # fmt: skip
    random.Random(seed).shuffle(images)
    return images[:limit] if limit else images


def folder_images(folder: str | Path, limit: int | None = None, seed: int = 0) -> list[Path]:
    """Image files under `folder` (searched recursively), shuffled by `seed`."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{folder}: no such folder of images")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise UserError(f"{folder}: no image files to calibrate on")
    random.Random(seed).shuffle(images)
    return images[:limit] if limit else images


def calibration_feeds(backend: Any, images: Sequence[Path], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Feeds of the graph's inputs: letterboxed uint8 batches of the readable images (the others are skipped)."""
    from fashionattr.inference.predictor import load_inputs

    loaded: list[list[Any]] = []
    for image in images:
        try:
            loaded.append(load_inputs(image, backend.inputs))
        except ImageError:
            continue
        if len(loaded) == batch_size:
            yield _feed(backend, loaded)
            loaded = []
    if loaded:
        yield _feed(backend, loaded)


def _feed(backend: Any, loaded: list[list[Any]]) -> dict[str, np.ndarray]:
    columns = zip(*loaded, strict=True)
    return {name: np.stack([t.numpy() for t in column]) for name, column in zip(backend.input_names, columns,
                                                                                  strict=True)}  # fmt: skip


def quantize_int8(fp32: str | Path, out: str | Path, images: Sequence[Path],
                  batch_size: int = CALIBRATION_BATCH) -> Int8Result:  # fmt: skip
    """Write an int8 copy of the exported graph `fp32` to `out`, its activation ranges calibrated on `images`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fashionattr.inference.onnx_backend import OnnxBackend

    fp32, out = Path(fp32), Path(out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"{out}: the ONNX file name must end in .onnx")
    backend = OnnxBackend(fp32, "cpu")
    feeds = list(calibration_feeds(backend, images, batch_size))
    used = sum(len(next(iter(feed.values()))) for feed in feeds)
    if not used:
        raise UserError(f"none of the {len(images)} calibration images could be read")

    class Feeds(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        def __init__(self) -> None:
            self.left = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    with tempfile.TemporaryDirectory(prefix="fashionattr-int8-") as scratch:
        prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(quantized), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})  # fmt: skip
        model = onnx.load(str(quantized))
    source = onnx.load(str(fp32))
    metadata = {p.key: p.value for p in source.metadata_props}
    spec = json.loads(metadata[META_SPEC])
    spec["quantization"] = {"kind": "int8 static (ONNX Runtime)", "format": "QDQ", "weights": "int8 per channel",
                            "activations": "uint8, MinMax ranges", "operators": list(QUANTIZED_OPS),
                            "calibration_images": used, "fp32_source": fp32.name}  # fmt: skip
    metadata[META_SPEC] = json_text(spec, indent=None)
    del model.metadata_props[:]
    for key, value in metadata.items():  # every entry the export wrote, whatever it holds
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = source.producer_name
    model.doc_string = source.doc_string + " (int8)"
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(out, data)
    return Int8Result(out, used, len(data), fp32.stat().st_size)


@dataclass(frozen=True)
class Agreement:
    """How an int8 graph answers against its fp32 source on the same images."""

    images: int
    top_class: float
    """Share of (image, attribute) answers whose most probable class is the same."""
    largest_difference: float
    """Largest absolute difference of any class probability."""


def int8_agreement(fp32: str | Path, int8: str | Path, images: Sequence[Path]) -> Agreement:
    """Run both graphs on `images` and compare their answers attribute by attribute."""
    from fashionattr.inference.onnx_backend import OnnxBackend

    full, small = OnnxBackend(fp32, "cpu"), OnnxBackend(int8, "cpu")
    same = total = 0
    largest = 0.0
    count = 0
    for feed in calibration_feeds(full, images, CALIBRATION_BATCH):
        batches = [_as_tensor(feed[name]) for name in full.input_names]
        expected = full.run(batches, full.attributes, tta=False, embed=False).probabilities
        got = small.run(batches, small.attributes, tta=False, embed=False).probabilities
        for name in full.attributes:
            same += int((expected[name].argmax(1) == got[name].argmax(1)).sum())
            total += len(expected[name])
            largest = max(largest, float(np.abs(expected[name] - got[name]).max()))
        count += len(batches[0])
    return Agreement(count, same / max(total, 1), largest)


def _as_tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(array)
