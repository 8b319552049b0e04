"""Image preprocessing shared by training, evaluation and inference.

Every image becomes a square uint8 `letterbox`: resized so its longer side fits, centred, padded. No
crop ever cuts off a hem or a sleeve end, which would change a length attribute's true value. Random
augmentation and normalisation then run on whole batches on the training device (see `augment_batch`
and `normalize_batch`), which is far cheaper than per-image PIL transforms in loader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PAD_VALUE = 0
"""Letterbox padding; normalisation maps it to a constant, and the model learns to ignore it."""

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: input side, normalisation, resampling. Stored in every checkpoint."""

    img_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {"img_size": self.img_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(
            img_size=int(data["img_size"]),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data.get("interpolation", "bilinear")),
        )


def letterbox(image: Image.Image, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize the longer side to `size`, centre on a `size` x `size` canvas; returns HWC uint8.

    Decode with `open_image(path, target_size=size)`: a JPEG then arrives already shrunk in the DCT domain.
    """
    width, height = image.size
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert() copies even an RGB image
    resized = rgb.resize((new_w, new_h), _RESAMPLE.get(interpolation, Image.Resampling.BILINEAR))
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized)
    return canvas


def to_chw_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def normalize_batch(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float normalised with the model's mean and std, on the images' device."""
    mean = torch.tensor(preprocessing.mean, device=images.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(preprocessing.std, device=images.device).view(1, 3, 1, 1) * 255.0
    return (images.float() - mean) / std


@dataclass(frozen=True)
class Augmentation:
    """Length-preserving augmentation: mild zoom-out and shift, horizontal flip, colour jitter."""

    scale: tuple[float, float] = (0.85, 1.0)
    shift: float = 0.05
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "shift": self.shift, "flip": self.flip, "brightness": self.brightness,
                "contrast": self.contrast, "saturation": self.saturation}  # fmt: skip


def augment_batch(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform a float batch (N,3,H,W, values 0-255) in one go; `generator` makes it reproducible.

    Zoom is only outward (scale <= 1) so the whole garment stays in frame and its lengths stay true.
    """
    n = images.shape[0]
    device = images.device

    def uniform(low: float, high: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(device)

    scale = uniform(*augmentation.scale)
    inverse = 1.0 / scale
    flip = (
        (torch.rand(n, generator=generator) < 0.5).to(device)
        if augmentation.flip
        else torch.zeros(n, dtype=torch.bool, device=device)
    )
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = inverse * torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = inverse
    # A zoomed-out image has room to move without leaving the frame: shift at most that margin.
    margin = (inverse - 1.0).clamp(min=0.0) + augmentation.shift
    theta[:, 0, 2] = uniform(-1.0, 1.0) * margin
    theta[:, 1, 2] = uniform(-1.0, 1.0) * margin
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    brightness = uniform(1 - augmentation.brightness, 1 + augmentation.brightness).view(n, 1, 1, 1)
    contrast = uniform(1 - augmentation.contrast, 1 + augmentation.contrast).view(n, 1, 1, 1)
    saturation = uniform(1 - augmentation.saturation, 1 + augmentation.saturation).view(n, 1, 1, 1)
    out = out * brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    gray = 0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3]
    out = (out - gray) * saturation + gray
    return out.clamp(0.0, 255.0)
