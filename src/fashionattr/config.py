"""The settings of a training run, their defaults, and how a config file and the command line combine.

Precedence: dataclass defaults < config file (YAML or JSON) < options given on the command line.
The resolved config is saved in the run directory so a run can be understood and repeated from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fashionattr.data.augmentation import Augmentation, resolve_augmentation
from fashionattr.data.preprocessing import RESAMPLING
from fashionattr.errors import UserError
from fashionattr.io import FileReadError, atomic_write_text
from fashionattr.parsing import DocumentError, read_document

PRETRAINED_BACKBONE_LR_SCALE = 0.1
"""A pretrained backbone learns at this share of the heads' rate (docs/defaults.md has the measurement)."""


@dataclass
class TrainConfig:
    recipe: str | None = None
    data: str = ""
    out: str = "runs/train"
    arch: str = "resnet50"
    layout: str = "multitask"
    attributes: list[str] = field(default_factory=lambda: ["all"])
    grouping: str = "upper-lower"
    pretrained: bool = False
    weights: str | None = None
    img_size: int | None = None
    interpolation: str | None = None
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    backbone_lr_scale: float | None = None
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    label_smoothing: float = 0.1
    maybe_weight: float = 0.3
    drop_rate: float = 0.0
    clip_grad: float | None = 5.0
    ema_decay: float | None = 0.9998
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    workers: int = 2
    seed: int = 0
    deterministic: bool = False
    split_file: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    select_metric: str = "mean_accuracy"
    early_stop: int | None = None
    max_bad_fraction: float = 0.01
    tta: bool = False
    augment: str = "standard"
    flip: bool | None = None
    zoom: list[float] | None = None
    shift: float | None = None
    color_jitter: float | None = None
    cache: str = "auto"
    device: str = "auto"
    progress: bool = True
    max_steps_per_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_backbone_lr_scale(self) -> float:
        """The backbone's share of the rate: as set, else 0.1 when it starts from pretrained weights, else 1."""
        if self.backbone_lr_scale is not None:
            return self.backbone_lr_scale
        return PRETRAINED_BACKBONE_LR_SCALE if (self.pretrained or self.weights) else 1.0

    def augmentation(self) -> Augmentation:
        """The augmentation preset with this config's settings."""
        return resolve_augmentation(self.augment, flip=self.flip, zoom=self.zoom, shift=self.shift,
                                    color_jitter=self.color_jitter)  # fmt: skip

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


FIELD_NAMES = {f.name for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML/JSON file, read strictly; unknown keys are errors (a typo must not be silently ignored)."""
    path = Path(path)
    try:
        data = read_document(path)
    except FileReadError as exc:
        raise UserError(f"{path}: cannot read config file: {exc.reason}") from None
    except DocumentError as exc:
        raise UserError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of setting: value")
    unknown = sorted(set(data) - FIELD_NAMES)
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELD_NAMES))}")
    return data


def recipe_settings(name: str) -> dict[str, Any]:
    """A named recipe's training settings, checked like a config file's."""
    from fashionattr.recipes import load_recipe

    settings = load_recipe(name).settings
    unknown = sorted(set(settings) - FIELD_NAMES)
    if unknown:
        raise UserError(f"recipe {name!r} names unknown setting(s) {', '.join(unknown)}")
    return settings


def resolve_config(file_path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Merge defaults < a named recipe < a config file < command-line overrides (None means 'not given')."""
    from_file: dict[str, Any] = read_config_file(file_path) if file_path else {}
    given = {k: v for k, v in overrides.items() if v is not None and k in FIELD_NAMES}
    recipe = given.get("recipe") or from_file.get("recipe")
    values: dict[str, Any] = recipe_settings(recipe) if recipe else {}
    values.update(from_file)
    values.update(given)
    if isinstance(values.get("attributes"), str):
        values["attributes"] = [a for a in values["attributes"].split(",") if a]
    if isinstance(values.get("zoom"), str):
        values["zoom"] = _float_pair(values["zoom"], "zoom")
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise UserError(f"invalid settings: {exc}") from None
    validate(config)
    # Record every augmentation setting, not only the preset's name, so config.yaml says what ran.
    resolved = config.augmentation().to_dict()
    return dataclasses.replace(config, **resolved)


def _float_pair(text: str, what: str) -> list[float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{what} must be two numbers MIN,MAX such as 0.85,1; got {text!r}") from None
    return [low, high]


def validate(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (config.batch_size >= 1, f"batch size must be at least 1, got {config.batch_size}"),
        (config.img_size is None or config.img_size >= 16, f"image size must be at least 16 px, got {config.img_size}"),
        (config.lr > 0, f"learning rate must be positive, got {config.lr}"),
        (0.0 <= config.maybe_weight < 1.0, f"maybe weight must be in [0, 1), got {config.maybe_weight}"),
        (0.0 <= config.label_smoothing < 1.0, f"label smoothing must be in [0, 1), got {config.label_smoothing}"),
        (config.optimizer in ("adamw", "sgd"), f"optimizer must be adamw or sgd, got {config.optimizer!r}"),
        (config.amp in ("auto", "off", "bf16", "fp16"), f"amp must be auto, off, bf16 or fp16, got {config.amp!r}"),
        (config.cache in ("auto", "build", "off"), f"cache must be auto, build or off, got {config.cache!r}"),
        (
            config.interpolation is None or config.interpolation in RESAMPLING,
            f"interpolation must be one of {', '.join(RESAMPLING)}, got {config.interpolation!r}",
        ),
        (0.0 <= config.max_bad_fraction <= 1.0, f"max bad fraction must be in [0, 1], got {config.max_bad_fraction}"),
        (
            config.select_metric in ("mean_accuracy", "map", "loss"),
            f"select metric must be mean_accuracy, map or loss, got {config.select_metric!r}",
        ),
        (bool(config.data), "no dataset given"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
