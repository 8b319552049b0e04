"""The one owner of a model's input pixels: size, resampling, letterbox padding and normalisation.

Every path that feeds a model — training, the image cache, evaluation, predict, submit, the service, the
catalogue, ONNX export and the benchmarks — holds one :class:`Preprocessing`, resolved once by
:func:`resolve_preprocessing` and stored in the checkpoint, and gets its pixels from :func:`load_letterboxed`.
So the same file becomes the same uint8 input everywhere, and what validation measured is what a submission
is scored on.

Every image becomes a square uint8 letterbox: resized so its longer side fits, centred, padded. No crop ever
cuts off a hem or a sleeve end, which would change a length attribute's true value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fashionattr.data.images import open_image
from fashionattr.errors import UserError

PAD_VALUE = 0
"""Default letterbox padding; normalisation maps it to a constant, and the model learns to ignore it."""

MIN_IMG_SIZE = 16
MAX_IMG_SIZE = 4096
"""Input sides the code handles: a 4096 px letterbox is 50 MB of uint8 per image; a larger one stored in a
checkpoint or an ONNX file is damage or tampering, refused before a single buffer is allocated."""
MEAN_RANGE = (-10.0, 10.0)
STD_RANGE = (1e-3, 10.0)
"""Normalisation in the units of a 0-1 pixel (timm's): real models use means of 0-1 and deviations of 0.2-1. A
deviation of 0 (or NaN) turns every input into NaN or infinity; one in 0-255 units is a mix-up of scales."""

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
"""The resampling filters a letterbox can use, by the names timm's pretrained configs give them."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects as input. Pass it whole: its parts only mean something together."""

    img_size: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: int = PAD_VALUE

    def __post_init__(self) -> None:
        """Every number checked when a preprocessing is made, whatever it was read from (a checkpoint, ONNX metadata,
        a config), before anything is sized by it."""
        if not _is_int(self.img_size) or not MIN_IMG_SIZE <= self.img_size <= MAX_IMG_SIZE:
            raise UserError(f"image size must be a whole number of {MIN_IMG_SIZE}-{MAX_IMG_SIZE} px, got "
                            f"{self.img_size!r}")  # fmt: skip
        if self.interpolation not in RESAMPLING:
            raise UserError(f"unknown interpolation {self.interpolation!r}; choose one of: {', '.join(RESAMPLING)}")
        if not _is_int(self.pad_value) or not 0 <= self.pad_value <= 255:
            raise UserError(f"letterbox pad value must be a whole number in 0-255, got {self.pad_value!r}")
        for what, values, (low, high) in (("mean", self.mean, MEAN_RANGE), ("std", self.std, STD_RANGE)):
            if len(values) != 3 or not all(_is_number(v) and low <= v <= high for v in values):
                raise UserError(f"normalisation {what} must be three finite numbers in {low:g}..{high:g} (0-1 pixel "
                                f"units), got {list(values)!r}")  # fmt: skip

    @property
    def pixel_key(self) -> str:
        """What fixes the uint8 pixels (not the normalisation): names cache folders and ONNX inputs."""
        key = f"letterbox-{self.img_size}-{self.interpolation}"
        return key if self.pad_value == PAD_VALUE else f"{key}-pad{self.pad_value}"

    def describe(self) -> str:
        return f"{self.img_size} px, {self.interpolation}"

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": self.img_size, "interpolation": self.interpolation, "mean": list(self.mean),
                "std": list(self.std), "pad_value": self.pad_value}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """A stored preprocessing (checkpoint, ONNX metadata), its fields of their exact types: nothing converted."""
        if not isinstance(data, Mapping):
            raise UserError(f"preprocessing must be a mapping, got {type(data).__name__}")
        interpolation = data.get("interpolation", "bilinear")
        if not isinstance(interpolation, str):
            raise UserError(f"interpolation must be a name, got {interpolation!r}")
        return cls(
            img_size=data["img_size"],
            interpolation=interpolation,
            mean=_triple(data["mean"], "mean"),
            std=_triple(data["std"], "std"),
            pad_value=data.get("pad_value", PAD_VALUE),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _triple(values: Any, what: str = "values") -> tuple[float, float, float]:
    if not isinstance(values, list | tuple) or len(values) != 3 or not all(_is_number(v) for v in values):
        raise UserError(f"normalisation {what} must be three finite numbers, got {values!r:.100}")
    first, second, third = (float(v) for v in values)
    return first, second, third


def resolve_preprocessing(
    data_config: Mapping[str, Any], img_size: int | None = None, interpolation: str | None = None
) -> Preprocessing:
    """A model's preprocessing: its pretrained data config (timm's, as `models.data_config` gives it) plus overrides.

    In the manner of timm's `resolve_model_data_config`: the user's image size and resampling win, the model's
    normalisation always comes from its weights (dpn131 has its own mean and std).
    """
    size = img_size if img_size is not None else int(data_config.get("input_size", (3, 224, 224))[-1])
    return Preprocessing(
        img_size=size,
        interpolation=interpolation or str(data_config.get("interpolation") or "bilinear"),
        mean=_triple(data_config.get("mean", IMAGENET_MEAN)),
        std=_triple(data_config.get("std", IMAGENET_STD)),
    )


@dataclass(frozen=True)
class Placement:
    """Where an image of a given size lands in its letterbox: resized to `width` x `height`, at (`left`, `top`)."""

    width: int
    height: int
    left: int
    top: int
    scale: float

    def map_box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box (x0, y0, x1, y1) in pixels of the original image, in pixels of the letterboxed input."""
        x0, y0, x1, y1 = box
        return (self.left + x0 * self.scale, self.top + y0 * self.scale,
                self.left + x1 * self.scale, self.top + y1 * self.scale)  # fmt: skip


def letterbox_placement(width: int, height: int, preprocessing: Preprocessing) -> Placement:
    """The one rule for where an image goes in its letterbox: longer side to the input size, centred."""
    size = preprocessing.img_size
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Placement(new_w, new_h, (size - new_w) // 2, (size - new_h) // 2, new_w / width)


def letterbox(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """Resize the longer side to the input size, centre on a square canvas of the pad value; returns HWC uint8.

    Prefer :func:`load_letterboxed`, which decodes a file for exactly this; this one is for images already decoded.
    """
    size = preprocessing.img_size
    place = letterbox_placement(*image.size, preprocessing)
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even an RGB image
    resized = rgb.resize((place.width, place.height), RESAMPLING[preprocessing.interpolation])
    canvas = np.full((size, size, 3), preprocessing.pad_value, dtype=np.uint8)
    canvas[place.top : place.top + place.height, place.left : place.left + place.width] = np.asarray(resized)
    return canvas


def load_letterboxed(source: str | Path | bytes, preprocessing: Preprocessing, name: str | None = None) -> np.ndarray:
    """Decode a file (a path or its bytes) and letterbox it: the input pixels of every path that feeds a model.

    A JPEG is decoded straight at the smallest DCT scale that still covers the input size, about twice as fast as
    a full decode; since every path decodes through here, they all get the same pixels for the same file.
    Raises :class:`~fashionattr.data.images.ImageError` for a file that cannot be used.
    """
    with open_image(source, name=name, target_size=preprocessing.img_size) as image:
        return letterbox(image, preprocessing)


def to_chw_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def normalize_batch(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (or 0-255 float) (N,3,H,W) -> float normalised with the model's mean and std, on the images' device."""
    mean = torch.tensor(preprocessing.mean, device=images.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(preprocessing.std, device=images.device).view(1, 3, 1, 1) * 255.0
    return (images.float() - mean) / std
