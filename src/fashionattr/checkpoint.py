"""Self-describing checkpoints: weights plus everything needed to rebuild and use the model.

A checkpoint holds the model spec (architecture, layout, heads), the schema, the preprocessing and the
training state. It is written atomically and read with `torch.load(weights_only=True)`, which refuses
any pickled code, so a downloaded checkpoint cannot execute anything on load.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fashionattr.data.transforms import Preprocessing
from fashionattr.errors import CheckpointError
from fashionattr.io import atomic_write_bytes
from fashionattr.schema import Schema

FORMAT = "fashionattr-checkpoint"
FORMAT_VERSION = 1
__all__ = ["CheckpointError", "load_checkpoint", "model_from_checkpoint", "save_checkpoint"]

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best checkpoint, else its last)."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST_NAME, LAST_NAME):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {BEST_NAME} or {LAST_NAME} in this folder; is it a finished run directory?")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; every failure becomes a :class:`CheckpointError` naming the file."""
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the file contains pickled objects other than tensors and plain data, "
            f"which could execute code on load ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupted?): {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fashionattr checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer fashionattr (format {payload['format_version']}); upgrade")
    for key in ("model", "spec", "schema", "preprocessing"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}; it is incomplete")
    return payload


def model_from_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Schema, Preprocessing, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; also returns schema, preprocessing, payload."""
    from fashionattr.models import model_from_spec

    payload = load_checkpoint(path)
    schema = Schema.from_dict(payload["schema"], source=f"{path} (schema)")
    model = model_from_spec(payload["spec"], schema)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {str(exc)[:300]}") from None
    model.to(device).eval()
    return model, schema, Preprocessing.from_dict(payload["preprocessing"]), payload
