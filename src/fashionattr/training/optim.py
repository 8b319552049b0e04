"""The optimiser, the learning-rate schedule and the weight average of a run, built from its config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fashionattr.config import TrainConfig
from fashionattr.models.networks import AttributeNet


def build_optimizer(config: TrainConfig, model: AttributeNet) -> torch.optim.Optimizer:
    """timm's optimiser, with the backbone at `backbone_lr_scale` of the rate when that is not 1.

    A smaller share fine-tunes a pretrained backbone gently while new heads learn at the full rate (the
    `fashionai` recipe does that, after published practice); measured on this project's own stand-in for
    pretrained weights one rate did as well or better, so it is the default (docs/defaults.md). Each parameter
    group carries its `lr_scale` (timm's convention) and `build_scheduler` keeps every group at its share. Norms
    and biases get no weight decay either way, as timm does it.
    """
    from timm.optim import create_optimizer_v2

    scale = config.backbone_lr_scale
    params: Any = model
    if scale != 1.0:
        grouped: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param, role in model.named_parameter_roles():
            if not param.requires_grad:
                continue
            decay = 0.0 if param.ndim <= 1 or name.endswith(".bias") else config.weight_decay
            grouped.setdefault((decay, scale if role == "backbone" else 1.0), []).append(param)
        params = [{"params": group, "weight_decay": decay, "lr_scale": lr_scale}
                  for (decay, lr_scale), group in grouped.items()]  # fmt: skip
    optimizer = create_optimizer_v2(params, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum)  # fmt: skip
    for group in optimizer.param_groups:
        group.setdefault("lr_scale", 1.0)
    return optimizer


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to `min_ratio` of the base rate."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """Stepped once per training step: warm-up for `warmup_epochs`, then cosine down to `min_lr`.

    Every group follows the same curve times its `lr_scale`, so a scaled backbone stays at its share.
    """
    factor = warmup_cosine(steps_per_epoch * config.epochs, round(steps_per_epoch * config.warmup_epochs),
                           config.min_lr / config.lr)  # fmt: skip
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    for group, lr_scale in zip(optimizer.param_groups, scales, strict=True):
        group["initial_lr"] = config.lr * lr_scale
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_ema(config: TrainConfig, model: nn.Module) -> nn.Module | None:
    """An exponential moving average of the weights, or None when `ema_decay` is off.

    With warm-up: the decay at optimiser step t is min(ema_decay, 1 - (1 + t)^(-2/3)), so early steps average
    over a short window. Without it, a 0.999 average over a 1,300-step run still holds 27% of the random initial
    weights (0.999^1300), and those are the weights that are validated and shipped.
    """
    if not config.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=config.ema_decay, use_warmup=True)
