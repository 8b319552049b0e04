"""timm backbones under the seed study's names, their weights files and the preprocessing their weights expect."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import safetensors.torch
import timm
import timm.data
import torch
from torch import Tensor, nn

from fashionattr.data.preprocessing import Preprocessing, resolve_preprocessing
from fashionattr.errors import UserError
from fashionattr.models.layouts import STUDY_ARCHS

log = logging.getLogger(__name__)

# Study spellings that are not timm names. SE-ResNet152 maps to the legacy port because plain `seresnet152`
# has no ImageNet weights in timm.
_TIMM_ALIASES = {
    "se-resnet50": "seresnet50",
    "se-resnet152": "legacy_seresnet152",
    "seresnet152": "legacy_seresnet152",
}

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

# A weights file that fills less than this share of the backbone is the wrong file, not a partial fit.
MIN_LOADED_FRACTION = 0.9


def timm_model_name(arch: str) -> str:
    """The timm name for a study name (`se-resnet152` -> `legacy_seresnet152`) or any timm model name."""
    key = arch.strip().lower()
    name = _TIMM_ALIASES.get(key, key)
    if not timm.is_model(name):
        raise UserError(
            f"unknown architecture {arch!r}: use one of the study networks ({', '.join(STUDY_ARCHS)}) "
            "or any name that timm.list_models() prints"
        )
    return name


def create_backbone(
    arch: str, pretrained: bool = False, weights: str | Path | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """A timm network without its classifier, returning pooled features of size `feature_size(backbone)`.

    `weights` (a local file of the backbone's ImageNet weights) takes precedence over `pretrained` (the timm
    hub), so the same command works offline once the file is at hand.
    """
    name = timm_model_name(arch)
    use_hub = pretrained and weights is None
    try:
        backbone = timm.create_model(name, pretrained=use_hub, num_classes=0, drop_rate=drop_rate)
    except (OSError, RuntimeError) as exc:
        if not use_hub:
            raise
        raise UserError(
            f"cannot fetch pretrained weights for {arch!r} ({name}) from the timm hub: {exc}. "
            "Offline, download the weights elsewhere and pass them with --weights FILE"
        ) from None
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone


def feature_size(backbone: nn.Module) -> int:
    """Width of the pooled embedding; VGG's is its 4096-wide pre-logits layer, not `num_features`."""
    return int(getattr(backbone, "head_hidden_size", None) or cast(int, backbone.num_features))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a `.pth`/`.pt`/`.bin` or `.safetensors` file, without running code from it."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise UserError(f"{path}: weights must be a {', '.join(WEIGHT_SUFFIXES)} file; rename or convert it")
    if not path.is_file():
        raise UserError(f"{path}: weights file not found; check the --weights path")
    try:
        if path.suffix.lower() == ".safetensors":
            data: Any = safetensors.torch.load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a corrupt or foreign file
        raise UserError(
            f"{path}: cannot read weights ({type(exc).__name__}: {exc}); is it a PyTorch weights file?"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise UserError(f"{path}: expected a state dict of tensors (optionally under 'state_dict' or 'model')")
    # Weights saved from a DistributedDataParallel wrapper carry a `module.` prefix.
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a file of ImageNet weights in timm's key naming, refusing one that does not fit the backbone.

    Classifier tensors and any other shape misfits are skipped, so a full ImageNet checkpoint loads into the
    headless backbone; but a file that covers under 90% of the parameters raises, because silently training
    from scratch would waste a run.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    param_sizes = {name: p.numel() for name, p in backbone.named_parameters()}
    loaded = sum(size for name, size in param_sizes.items() if name in fitting)
    total = sum(param_sizes.values())
    if total == 0 or loaded / total < MIN_LOADED_FRACTION:
        missing = [name for name in param_sizes if name not in fitting]
        raise UserError(
            f"{path}: these weights fit only {loaded / max(total, 1):.0%} of the backbone's parameters "
            f"(missing or mis-shaped: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
            "pass a weights file for this same architecture, in timm's key naming"
        )
    backbone.load_state_dict(fitting, strict=False)
    log.info(
        "loaded %d of %d tensors from %s (%.1f%% of parameters)", len(fitting), len(own), path, 100 * loaded / total
    )


def data_config(arch: str) -> dict[str, Any]:
    """Input size, interpolation and normalisation that an architecture's pretrained weights expect.

    Read from timm's pretrained config without building the network (dpn131 has its own mean and std).
    """
    name = timm_model_name(arch)
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})
    return {
        "input_size": [int(v) for v in config["input_size"]],
        "interpolation": str(config["interpolation"]),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
    }


def model_preprocessing(arch: str, img_size: int | None = None, interpolation: str | None = None) -> Preprocessing:
    """The preprocessing a model of `arch` gets: every command that trains, caches or benchmarks asks here."""
    return resolve_preprocessing(data_config(arch), img_size=img_size, interpolation=interpolation)
