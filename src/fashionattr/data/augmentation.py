"""Length-safe training augmentation, run on whole batches on the training device, and flip test-time averaging.

Augmenting uint8 letterboxes in one batched affine warp on the device is far cheaper than per-image PIL
transforms in loader workers. The warp only ever zooms out and shifts within the room the zoom-out made, so the
whole letterboxed frame, and with it every hem and sleeve end, stays inside the picture: a length attribute's
true value never changes. What comes into view is padded with the letterbox pad value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from fashionattr.errors import UserError


@dataclass(frozen=True)
class Augmentation:
    """One augmentation preset and its settings; saved in `config.yaml` and in every checkpoint.

    `zoom` is the range of the scale factor (at most 1: zoom out only); `shift` the share (0-1) of the room the
    zoom-out leaves that a random shift may use; `color_jitter` the strength of the random brightness, contrast
    and saturation changes. `flip` mirrors half the images: switch it off for attributes that are not
    mirror-symmetric (left/right, text, digits).
    """

    flip: bool = True
    zoom: tuple[float, float] = (0.85, 1.0)
    shift: float = 1.0
    color_jitter: float = 0.2

    def __post_init__(self) -> None:
        low, high = self.zoom
        if not 0.1 <= low <= high <= 1.0:
            raise UserError(f"zoom must be a range within 0.1-1 (zoom out only, so no hem is cut), got {low}-{high}")
        if not 0.0 <= self.shift <= 1.0:
            raise UserError(f"shift must be in 0-1 (a share of the room the zoom-out leaves), got {self.shift}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise UserError(f"colour jitter must be in [0, 1), got {self.color_jitter}")

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.zoom == (1.0, 1.0) and self.color_jitter == 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "zoom": list(self.zoom)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Augmentation:
        """The augmentation a config or checkpoint recorded; a field added since it was written takes its default,
        so checkpoints and run folders of earlier versions still load."""
        values: dict[str, Any] = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "zoom" in values:
            low, high = (float(v) for v in values["zoom"])
            values["zoom"] = (low, high)
        for name, kind in (("flip", bool), ("shift", float), ("color_jitter", float)):
            if name in values:
                values[name] = kind(values[name])
        return cls(**values)


AUGMENTATION_PRESETS: dict[str, Augmentation] = {
    "standard": Augmentation(),
    "no-flip": Augmentation(flip=False),
    "none": Augmentation(flip=False, zoom=(1.0, 1.0), shift=0.0, color_jitter=0.0),
}
"""Named presets: `standard` (flip, zoom out to 85%, shift within the margin, colour jitter 0.2), `no-flip`
(the same without mirroring), `none` (images as letterboxed)."""


def resolve_augmentation(preset: str, **overrides: Any) -> Augmentation:
    """A preset with the given settings replaced (None means 'the preset's')."""
    if preset not in AUGMENTATION_PRESETS:
        raise UserError(f"unknown augmentation preset {preset!r}; choose one of: {', '.join(AUGMENTATION_PRESETS)}")
    given = {key: value for key, value in overrides.items() if value is not None}
    if "zoom" in given:
        given["zoom"] = tuple(float(v) for v in given["zoom"])
    return replace(AUGMENTATION_PRESETS[preset], **given)


def random_affine(n: int, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """(n,2,3) `affine_grid` matrices mapping each output pixel to where it samples the input (in -1..1 units).

    For an output point x the input point is x / s + t; the input frame [-1, 1] lands on [s(-1 - t), s(1 - t)],
    which stays inside [-1, 1] exactly when |t| <= 1/s - 1. So the shift is drawn within that margin.
    """

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) * (high - low) + low

    inverse = 1.0 / uniform(*augmentation.zoom)
    flip = torch.rand(n, generator=generator) < 0.5
    if not augmentation.flip:
        flip = torch.zeros(n, dtype=torch.bool)
    margin = (inverse - 1.0).clamp(min=0.0) * augmentation.shift
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = inverse * torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = inverse
    theta[:, 0, 2] = uniform(-1.0, 1.0) * margin
    theta[:, 1, 2] = uniform(-1.0, 1.0) * margin
    return theta


def augment_batch(
    images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator, pad_value: int
) -> torch.Tensor:
    """Randomly transform a float batch (N,3,H,W, values 0-255) in one go; `generator` makes it reproducible."""
    n = images.shape[0]
    theta = random_affine(n, augmentation, generator).to(images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample fills with zeros: shift by the pad value so what comes into view is letterbox padding.
    out = F.grid_sample(images - pad_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out + pad_value

    def factors() -> torch.Tensor:
        jitter = augmentation.color_jitter
        return (torch.rand(n, generator=generator) * 2 * jitter + 1 - jitter).to(images.device).view(n, 1, 1, 1)

    brightness, contrast, saturation = factors(), factors(), factors()
    out = out * brightness
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    gray = 0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3]
    out = (out - gray) * saturation + gray
    return out.clamp(0.0, 255.0)


Probabilities = TypeVar("Probabilities")
Images = TypeVar("Images", torch.Tensor, list[torch.Tensor])


def mirrored(images: Images) -> Images:
    """Left-right mirror images of an (N,C,H,W) batch, or of each batch of a list."""
    if isinstance(images, torch.Tensor):
        return torch.flip(images, dims=[-1])
    return [torch.flip(batch, dims=[-1]) for batch in images]


def flip_averaged(
    run: Callable[[Images], Mapping[str, Probabilities]],
    images: Images,
    names: Iterable[str],
    plain: Mapping[str, Probabilities] | None = None,
) -> dict[str, Probabilities]:
    """Flip test-time augmentation: each attribute's probabilities averaged over the images and their mirror images.

    `run` maps an (N,C,H,W) batch (or a list of them, one per model input) to probabilities per attribute
    (tensors or arrays); `plain`, when the caller
    already has `run(images)`, saves running it again. Every backend and the validation loop use this one helper,
    so they all average the same way.
    """
    plain = plain if plain is not None else run(images)
    flipped = run(mirrored(images))
    return {name: (plain[name] + flipped[name]) / 2 for name in names}  # type: ignore[operator]
