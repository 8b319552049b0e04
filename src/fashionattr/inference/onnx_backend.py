"""The ONNX Runtime backend: an exported `.onnx` file run with no PyTorch model; schema and preprocessing from the file.

The exported graph takes uint8 letterboxed images and does everything else inside (normalisation, networks,
softmax, embedding), so this backend only feeds it the pixels every other path feeds a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionattr.applicability.modules import Applicability, invisible_indices
from fashionattr.data.augmentation import flip_averaged
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.distributed import check_device
from fashionattr.engine import tempered
from fashionattr.errors import UserError
from fashionattr.inference.onnx_format import (
    EMBEDDING_OUTPUT,
    FORMAT_VERSION,
    META_FORMAT,
    META_PREPROCESSING,
    META_SCHEMA,
    META_SPEC,
    METADATA_KEYS,
)
from fashionattr.inference.torch_backend import BackendOutput
from fashionattr.schema import Schema


def onnx_session(path: str | Path, device: str) -> Any:
    """An ONNX Runtime session for `path` on the CPU, or CUDA where asked for (or `auto`) and available.

    The device name is checked as every other command checks it (`distributed.check_device`).
    """
    import onnxruntime as ort

    check_device(device)
    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise UserError(f"--device {device}: this onnxruntime has no CUDA support (providers: {', '.join(available)})")
    use_cuda = (device == "auto" or device.startswith("cuda")) and "CUDAExecutionProvider" in available
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise UserError(f"{path}: not a loadable ONNX model: {str(exc).splitlines()[0]}") from None


def _metadata(path: Path, session: Any) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map
    if META_FORMAT not in raw:
        raise UserError(f"{path}: an ONNX model without fashionattr metadata; export it with `fashionattr export`")
    try:
        parsed = {key: json.loads(raw[key]) for key in METADATA_KEYS}
    except (KeyError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: damaged fashionattr metadata ({exc}); export the model again") from None
    version = parsed[META_FORMAT].get("version", 0)
    if version > FORMAT_VERSION:
        raise UserError(f"{path}: exported by a newer fashionattr (format {version}); upgrade")
    return parsed


def _input_preprocessing(item: dict[str, Any]) -> Preprocessing:
    """An input's preprocessing from the metadata; files of format 1 recorded only its size and resampling."""
    if "preprocessing" in item:
        return Preprocessing.from_dict(item["preprocessing"])
    return Preprocessing(img_size=int(item["img_size"]), interpolation=str(item["interpolation"]),
                         pad_value=int(item.get("pad_value", 0)))  # fmt: skip


class OnnxBackend:
    """Runs an exported graph in ONNX Runtime."""

    def __init__(self, path: str | Path, device: str = "auto", calibrated: bool = True) -> None:
        self.path = Path(path)
        self.session = onnx_session(self.path, device)
        metadata = _metadata(self.path, self.session)
        try:
            self.schema = Schema.from_dict(metadata[META_SCHEMA], source=f"{self.path} (schema)")
            items = metadata[META_PREPROCESSING]["inputs"]
            self.input_names = [str(item["name"]) for item in items]
            self.inputs = [_input_preprocessing(item) for item in items]
            self.spec = metadata[META_SPEC]
            self.attributes = [str(a) for a in self.spec["attributes"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{self.path}: damaged fashionattr metadata ({exc}); export the model again") from None
        self.flip_safe = all(model.get("trained_with_flip", True) for model in self.spec.get("models", []))
        self.temperatures = {name: float(t) for model in self.spec.get("models", [])
                             for name, t in (model.get("temperatures") or {}).items()}  # fmt: skip
        self.tta_temperatures = {name: float(t) for model in self.spec.get("models", [])
                                 for name, t in (model.get("tta_temperatures") or {}).items()}  # fmt: skip
        self.calibrated = any(t != 1.0 for t in self.temperatures.values())
        """Whether the graph's probabilities are calibrated (an export with --no-calibration gives raw ones)."""
        if not calibrated and any(t != 1.0 for t in self.temperatures.values()):
            raise UserError(
                f"{self.path}: this graph gives calibrated probabilities (its temperatures are built in); for raw "
                "ones export the model again with `fashionattr export --no-calibration`"
            )
        self.device = torch.device("cpu")  # inputs and outputs are host arrays whatever the provider
        # Graphs exported before applicability existed decide by the `Invisible` probability alone, as their
        # checkpoints do.
        self.applicability_outputs: dict[str, str] = dict(self.spec.get("applicability_outputs") or {})
        self._fallback = Applicability(self.attributes, invisible_indices(self.schema, self.attributes))

    def run(self, batches: Sequence[torch.Tensor], attributes: Sequence[str], tta: bool, embed: bool) -> BackendOutput:
        wanted = [a for a in self.attributes if a in attributes]
        deciding = [self.applicability_outputs[a] for a in wanted if a in self.applicability_outputs]
        names = wanted + deciding + ([EMBEDDING_OUTPUT] if embed else [])
        if not names:
            return BackendOutput({}, {}, None)

        def outputs_of(images: list[torch.Tensor], outputs: Sequence[str]) -> dict[str, np.ndarray]:
            feed = {name: batch.cpu().numpy() for name, batch in zip(self.input_names, images, strict=True)}
            return dict(zip(outputs, self.session.run(list(outputs), feed), strict=True))

        images = list(batches)
        outputs = outputs_of(images, names)
        plain = {name: torch.from_numpy(outputs[name]) for name in wanted}
        if tta and wanted:
            # The graph calibrates single passes; flip averaging averages raw answers (the graph's temperature undone),
            # then applies the temperature fitted on averaged answers.
            undone = {name: 1.0 / self.temperatures[name] for name in wanted if name in self.temperatures}

            def raw(flipped: list[torch.Tensor]) -> dict[str, torch.Tensor]:
                views = {name: torch.from_numpy(value) for name, value in outputs_of(flipped, wanted).items()}
                return tempered(views, undone)

            averaged = flip_averaged(raw, images, wanted, plain=tempered(plain, undone))
            tta_temperatures = self.tta_temperatures or self.temperatures
            outputs.update({name: value.numpy() for name, value in tempered(averaged, tta_temperatures).items()})
        fallback = self._fallback(torch.zeros(len(images[0]), 1), plain) if len(deciding) < len(wanted) else {}
        applicability = {name: outputs[self.applicability_outputs[name]] if name in self.applicability_outputs
                         else fallback[name].numpy() for name in wanted}  # fmt: skip
        return BackendOutput({name: outputs[name] for name in wanted}, applicability, outputs.get(EMBEDDING_OUTPUT))

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "source": str(self.path),
                "backend": "onnx",
                "exported_from": model["source"],
                "arch": model["spec"].get("arch"),
                "attributes": model["attributes"],
                "preprocessing": model["preprocessing"],
                "temperatures": model.get("temperatures", {}),
                "tta_temperatures": model.get("tta_temperatures", {}),
                "calibrated": bool(model.get("temperatures")),
                "applicability": (model.get("applicability") or {}).get("method"),
            }
            for model in self.spec["models"]
        ]
