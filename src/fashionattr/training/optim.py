"""The optimiser, the learning-rate schedule and the weight average of a run, built from its config."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fashionattr.config import TrainConfig


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum)  # fmt: skip


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
    """Stepped once per training step: warm-up for `warmup_epochs`, then cosine down to `min_lr`."""
    factor = warmup_cosine(steps_per_epoch * config.epochs, round(steps_per_epoch * config.warmup_epochs),
                           config.min_lr / config.lr)  # fmt: skip
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_ema(config: TrainConfig, model: nn.Module) -> nn.Module | None:
    """An exponential moving average of the weights, or None when `ema_decay` is off."""
    if not config.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=config.ema_decay)
