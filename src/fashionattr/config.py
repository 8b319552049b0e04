"""The settings of a training run, their defaults, and how a config file and the command line combine.

Precedence: dataclass defaults < a named recipe < config file (YAML or JSON) < options on the command line;
every value is checked, for its type and its range, in one place (`resolve_config`).
The resolved config is saved in the run directory so a run can be understood and repeated from it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fashionattr.applicability import DEFAULT_METHOD, METHODS
from fashionattr.errors import UserError
from fashionattr.io import FileReadError, atomic_write_text
from fashionattr.models.layouts import LAYOUTS
from fashionattr.parsing import DocumentError, read_document

if TYPE_CHECKING:  # torch comes with these: imported when used, so that `fashionattr --help` stays instant
    from fashionattr.data.augmentation import Augmentation

OPTIMIZERS = ("adamw", "sgd")
AMP_MODES = ("auto", "off", "bf16", "fp16")
CACHE_MODES = ("auto", "build", "off")
SELECT_METRICS = ("mean_accuracy", "map", "loss")


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
    backbone_lr_scale: float = 1.0
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
    applicability: str = DEFAULT_METHOD
    applicability_weight: float = 0.5
    applicability_negatives: float = 1.0
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

    def augmentation(self) -> Augmentation:
        """The augmentation preset with this config's settings."""
        from fashionattr.data.augmentation import resolve_augmentation

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
    """Merge defaults < a named recipe < a config file < command-line overrides (None means 'not given').

    Every value is then checked in one place, whatever it came from: its type strictly (`epochs: ten`,
    `lr: "1e-3"` or `clip_grad: off` are refused, not coerced), then its range. A wrong one is a user error that
    names the setting, the value and where it came from.
    """
    from_file: dict[str, Any] = read_config_file(file_path) if file_path else {}
    given = {k: v for k, v in overrides.items() if v is not None and k in FIELD_NAMES}
    recipe = given.get("recipe") or from_file.get("recipe")
    values: dict[str, Any] = recipe_settings(recipe) if recipe else {}
    origins = dict.fromkeys(values, f"recipe {recipe}")
    values.update(from_file)
    origins.update(dict.fromkeys(from_file, str(file_path)))
    values.update(given)
    origins.update(dict.fromkeys(given, "command line"))
    if isinstance(values.get("attributes"), str):
        values["attributes"] = [a for a in values["attributes"].split(",") if a]
    if isinstance(values.get("zoom"), str):
        values["zoom"] = _float_pair(values["zoom"], "zoom")
    config = TrainConfig(**check_types(values, origins))
    validate(config)
    # Record every augmentation setting, not only the preset's name, so config.yaml says what ran.
    resolved = config.augmentation().to_dict()
    return dataclasses.replace(config, **resolved)


def check_types(values: dict[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    """Each value checked strictly against its `TrainConfig` field type (an int is a fine float, nothing else)."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(TrainConfig)
    checked: dict[str, Any] = {}
    problems = []
    for key, value in values.items():
        try:
            checked[key] = TypeAdapter(hints[key]).validate_python(value, strict=True)
        except ValidationError as exc:
            wanted = _type_words(hints[key])
            where = f" (from {origins[key]})" if key in origins else ""
            problems.append(f"{key} must be {wanted}, got {value!r}{where}")
            del exc
    if problems:
        raise UserError("invalid setting(s): " + "; ".join(problems))
    return checked


def _type_words(hint: Any) -> str:
    words = {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "empty"}
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"a list of {_type_words(args[0])}s"
    if args:
        return " or ".join(_type_words(arg) for arg in args)
    return words.get(hint, str(hint))


def _float_pair(text: str, what: str) -> list[float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{what} must be two numbers MIN,MAX such as 0.85,1; got {text!r}") from None
    return [low, high]


def validate(config: TrainConfig) -> None:
    """The ranges and choices of every setting; the first one wrong is a user error."""
    from fashionattr.data.preprocessing import RESAMPLING

    c = config
    checks = [
        (bool(c.data), "no dataset given"),
        (c.epochs >= 1, f"epochs must be at least 1, got {c.epochs}"),
        (c.batch_size >= 1, f"batch size must be at least 1, got {c.batch_size}"),
        (c.img_size is None or 16 <= c.img_size <= 4096, f"image size must be 16-4096 px, got {c.img_size}"),
        (c.lr > 0, f"learning rate must be positive, got {c.lr}"),
        (c.backbone_lr_scale > 0, f"backbone lr scale must be positive, got {c.backbone_lr_scale}"),
        (c.min_lr >= 0, f"min lr must be 0 or more, got {c.min_lr}"),
        (c.weight_decay >= 0, f"weight decay must be 0 or more, got {c.weight_decay}"),
        (0.0 <= c.momentum < 1.0, f"momentum must be in [0, 1), got {c.momentum}"),
        (c.warmup_epochs >= 0, f"warm-up epochs must be 0 or more, got {c.warmup_epochs}"),
        (0.0 <= c.maybe_weight < 1.0, f"maybe weight must be in [0, 1), got {c.maybe_weight}"),
        (0.0 <= c.label_smoothing < 1.0, f"label smoothing must be in [0, 1), got {c.label_smoothing}"),
        (0.0 <= c.drop_rate < 1.0, f"drop rate must be in [0, 1), got {c.drop_rate}"),
        (c.clip_grad is None or c.clip_grad > 0, f"clip grad must be positive (or empty for none), got {c.clip_grad}"),
        (c.ema_decay is None or 0.0 <= c.ema_decay < 1.0, f"EMA decay must be in [0, 1) (0: off), got {c.ema_decay}"),
        (c.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {c.optimizer!r}"),
        (c.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {c.amp!r}"),
        (c.cache in CACHE_MODES, f"cache must be one of {', '.join(CACHE_MODES)}, got {c.cache!r}"),
        (c.layout in LAYOUTS, f"layout must be one of {', '.join(LAYOUTS)}, got {c.layout!r}"),
        (0.0 <= c.applicability_weight <= 10.0,
         f"applicability weight must be in [0, 10] (0: no applicability head), got {c.applicability_weight}"),
        (0.0 <= c.applicability_negatives <= 1.0,
         f"applicability negatives must be in [0, 1], got {c.applicability_negatives}"),
        (c.applicability in (*METHODS, "none"),
         f"applicability must be one of {', '.join(METHODS)} or none, got {c.applicability!r}"),
        (c.interpolation is None or c.interpolation in RESAMPLING,
         f"interpolation must be one of {', '.join(RESAMPLING)}, got {c.interpolation!r}"),
        (0.0 <= c.max_bad_fraction <= 1.0, f"max bad fraction must be in [0, 1], got {c.max_bad_fraction}"),
        (0.0 < c.val_fraction < 1.0, f"val fraction must be between 0 and 1 (exclusive), got {c.val_fraction}"),
        (c.workers >= 0, f"workers must be 0 or more, got {c.workers}"),
        (c.seed >= 0 and c.split_seed >= 0, f"seeds must be 0 or more, got {c.seed} and {c.split_seed}"),
        (c.early_stop is None or c.early_stop >= 1, f"early stop must be at least 1 epoch, got {c.early_stop}"),
        (c.max_steps_per_epoch is None or c.max_steps_per_epoch >= 1,
         f"max steps per epoch must be at least 1, got {c.max_steps_per_epoch}"),
        (c.select_metric in SELECT_METRICS,
         f"select metric must be one of {', '.join(SELECT_METRICS)}, got {c.select_metric!r}"),
        (bool(c.attributes), "attributes must name at least one attribute, or 'all'"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    from fashionattr.distributed import check_device

    check_device(c.device)
