"""The training loop: one pass of augment -> forward -> masked loss -> step, as torchvision's reference scripts have it.

It runs on a single process or under DistributedDataParallel; the step settings, mixed precision and the images as
the model takes them are `fashionattr.engine`'s, shared with evaluation and inference.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from fashionattr.distributed import DistributedContext
from fashionattr.engine import StepSettings, autocast, labelled_batches, prepare_images
from fashionattr.errors import RunError
from fashionattr.losses import applicability_loss, masked_cross_entropy


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the run stops and the last good checkpoint is kept."""


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loader: DataLoader,
    context: DistributedContext,
    settings: StepSettings,
    generator: torch.Generator,
    scaler: torch.amp.GradScaler | None = None,
    ema: nn.Module | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """One epoch of training; returns the mean loss, throughput and the images skipped as unreadable."""
    model.train()
    device = context.device
    skipped: list[tuple[str, str]] = []
    loss_sum = torch.zeros((), device=device)
    seen = 0
    start = time.perf_counter()
    for steps, batch in enumerate(labelled_batches(loader, skipped), start=1):
        images = prepare_images(batch["image"].to(device, non_blocking=True), settings, generator)
        attribute_index = batch["attribute_index"].to(device, non_blocking=True)
        targets = batch["target"].to(device, non_blocking=True)
        maybe = batch["maybe"].to(device, non_blocking=True)
        with autocast(device, settings.amp_dtype):
            logits = model(images, attribute_index)
        loss, _ = masked_cross_entropy(
            logits, settings.attributes, attribute_index, targets, maybe,
            maybe_weight=settings.maybe_weight, label_smoothing=settings.label_smoothing,
        )  # fmt: skip
        applicability = getattr(logits, "applicability", None)
        if applicability is not None and settings.applicability_weight > 0:
            invisible = torch.tensor(settings.invisible or [-1] * len(settings.attributes), device=device)
            loss = loss + settings.applicability_weight * applicability_loss(
                applicability, attribute_index, targets, invisible, settings.unlabelled_weight
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if settings.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            # The optimiser step count drives the average's warm-up (`training.optim.build_ema`).
            step = scheduler.last_epoch if scheduler is not None else None
            ema.update(model, step=step)  # type: ignore[operator]
        count = images.shape[0]
        loss_sum += loss.detach() * count
        seen += count
        # Reading the loss forces a device sync, so it is checked every few steps rather than every step.
        if steps % settings.check_every == 0 and not math.isfinite(loss_sum.item()):
            raise TrainingDiverged(f"the training loss became {loss_sum.item()} at step {steps}")
        if progress is not None:
            progress.update(count)
        if settings.max_steps is not None and steps >= settings.max_steps:
            break
    elapsed = time.perf_counter() - start
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(f"the training loss became {mean_loss} during the epoch")
    return {"train_loss": mean_loss, "train_images": seen, "train_seconds": elapsed,
            "train_images_per_second": seen / elapsed if elapsed > 0 else 0.0, "skipped": skipped}  # fmt: skip
