"""Does an exported ONNX file answer like the PyTorch model it came from? Both predictors, the same pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fashionattr.inference.onnx_backend import OnnxBackend
from fashionattr.inference.predictor import Predictor


def onnx_parity(source: str | Path, onnx_path: str | Path, images: Sequence[str | Path] = (),
                random_images: int = 2, calibrated: bool = True) -> float:  # fmt: skip
    """Largest difference of probability or applicability score between the PyTorch model and its ONNX export.

    On `images` (files, loaded by the one preprocessing function) plus `random_images` random uint8 inputs, so a
    check needs no dataset at hand.
    """
    torch_predictor = Predictor.from_path(source, device="cpu", calibrated=calibrated)
    onnx_backend = OnnxBackend(onnx_path, device="cpu", calibrated=calibrated)
    onnx_predictor = Predictor(onnx_backend, onnx_backend.schema)
    inputs = [torch_predictor.load(path) for path in images]
    generator = torch.Generator().manual_seed(0)
    for _ in range(random_images):
        inputs.append([torch.randint(0, 256, (3, p.img_size, p.img_size), dtype=torch.uint8, generator=generator)
                       for p in torch_predictor.inputs])  # fmt: skip
    batches = [torch.stack(column) for column in zip(*inputs, strict=True)]
    expected, actual = torch_predictor.outputs(batches), onnx_predictor.outputs(batches)
    return max(float(np.abs(getattr(expected, kind)[name] - getattr(actual, kind)[name]).max())
               for kind in ("probabilities", "applicability") for name in expected.probabilities)  # fmt: skip
