"""Self-describing checkpoints: weights plus everything needed to rebuild and use the model.

A checkpoint holds the model spec (architecture, layout, heads), the schema, the preprocessing, the training
state and, once calibrated, a temperature per attribute. It is written atomically and read with
`torch.load(weights_only=True)`, which refuses any pickled code, so a downloaded checkpoint cannot execute
anything on load.
"""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fashionattr.data.augmentation import Augmentation
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.errors import CheckpointError, UserError
from fashionattr.io import atomic_write_bytes
from fashionattr.run_dir import RunDir
from fashionattr.schema import Schema

if TYPE_CHECKING:
    from fashionattr.models.networks import AttributeNet

FORMAT = "fashionattr-checkpoint"
FORMAT_VERSION = 1
__all__ = [
    "CheckpointError",
    "applicability_of",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
    "temperatures_of",
    "write_applicability",
    "write_temperatures",
]


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best checkpoint, else its last)."""
    path = Path(path)
    return RunDir(path).checkpoint if path.is_dir() else path


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def check_archive(path: Path) -> None:
    """Refuse a file that is not a whole, undamaged zip archive (the container `torch.save` writes).

    `torch.load` does not check the CRC-32 of each member, so a flipped byte in a tensor loads silently as a wrong
    weight. Checking them reads the file once more, at disk speed (measured: 0.17 s for 300 MB, which
    `torch.load` itself takes 0.26 s to read).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, damaged or not one at all): {exc}"
        ) from None
    if damaged is not None:
        raise CheckpointError(
            f"{path}: the checkpoint is damaged ({damaged} fails its checksum); copy it again or use another one"
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; every failure becomes a :class:`CheckpointError` naming the file."""
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(
            f"{path}: refused: the file holds pickled Python objects beyond tensors and plain data"
            f"{f' (it names {found.group(1)})' if found else ''}, which could run code when loaded; it was not "
            "written by fashionattr, or was tampered with"
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file; none of them may escape as a traceback
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupted?): {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fashionattr checkpoint (no '{FORMAT}' marker)")
    if not isinstance(payload.get("format_version", 0), int):
        raise CheckpointError(f"{path}: damaged checkpoint (format version {payload['format_version']!r})")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer fashionattr (format {payload['format_version']}); upgrade")
    for key in ("model", "spec", "schema", "preprocessing"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}; it is incomplete")
    return payload


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[AttributeNet, Schema, Preprocessing, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; also returns schema, preprocessing, payload."""
    from fashionattr.models.networks import model_from_spec

    payload = load_checkpoint(path)
    try:
        schema = Schema.from_dict(payload["schema"], source=f"{path} (schema)")
        model = model_from_spec(payload["spec"], schema)
        preprocessing = Preprocessing.from_dict(payload["preprocessing"])
    except (UserError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint does not describe a usable model: {exc}") from None
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {str(exc)[:300]}") from None
    model.to(device).eval()
    return model, schema, preprocessing, payload


def temperatures_of(payload: dict[str, Any], path: str | Path = "checkpoint", tta: bool = False) -> dict[str, float]:
    """The calibration temperature of each attribute, for single-pass answers or (`tta`) flip-averaged ones.

    {} for checkpoints written before calibration (T = 1); checkpoints calibrated before the flip-averaged mode had a
    temperature of its own give their one set for both.
    """
    data = payload.get("temperatures_tta") if tta else None
    data = data if data is not None else payload.get("temperatures")
    if data is None:
        return {}
    attributes = set(payload.get("attributes", []))
    try:
        temperatures = {str(name): float(value) for name, value in data.items()}
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(f"{path}: damaged calibration temperatures ({data!r:.100})") from None
    for name, value in temperatures.items():
        if name not in attributes or not math.isfinite(value) or value <= 0:
            raise CheckpointError(f"{path}: damaged calibration temperature {name}={value}; calibrate it again")
    return temperatures


def write_temperatures(path: str | Path, temperatures: dict[str, float],
                       tta_temperatures: dict[str, float] | None = None) -> None:  # fmt: skip
    """Store calibration temperatures in a checkpoint (rewritten atomically; the weights are untouched): one set for
    single-pass answers and, for a model that may be asked with flip averaging, one for the averaged answers."""
    payload = load_checkpoint(path)
    payload["temperatures"] = {name: float(value) for name, value in temperatures.items()}
    payload.pop("temperatures_tta", None)
    if tta_temperatures is not None:
        payload["temperatures_tta"] = {name: float(value) for name, value in tta_temperatures.items()}
    save_checkpoint(resolve_checkpoint_path(path), payload)


def write_applicability(path: str | Path, description: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Store a fitted applicability module (`applicability.Applicability`) in a checkpoint, weights untouched."""
    payload = load_checkpoint(path)
    payload["applicability"] = {"description": description, "state": {k: v.detach().cpu() for k, v in state.items()}}
    save_checkpoint(resolve_checkpoint_path(path), payload)


def applicability_of(
    payload: dict[str, Any], path: str | Path = "checkpoint"
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The stored applicability module's description and tensors; None for checkpoints fitted without one."""
    data = payload.get("applicability")
    if data is None:
        return None
    try:
        description, state = dict(data["description"]), dict(data["state"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: damaged applicability record ({data!r:.100})") from None
    if not all(isinstance(v, torch.Tensor) and bool(torch.isfinite(v).all()) for v in state.values()):
        raise CheckpointError(f"{path}: damaged applicability record (tensors missing or not finite)")
    return description, state


def augmentation_of(payload: dict[str, Any]) -> Augmentation | None:
    """The augmentation a checkpoint's model was trained with; None for checkpoints older than that record."""
    data = payload.get("augmentation")
    return Augmentation.from_dict(data) if isinstance(data, dict) else None
