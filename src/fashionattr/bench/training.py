"""Figure c: the project's training step (`training.loop.train_one_epoch`) against a bare timm + torch loop.

Both train the same backbone on the same batch. The engine adds what a real run needs: batch augmentation on
the device, normalisation, the masked multi-head loss with label smoothing, gradient clipping and the LR
schedule. The bare loop feeds ready normalised tensors to a timm classifier with one 54-way output and
`F.cross_entropy`. A breakdown of the engine's extras, each timed alone, says where any overhead goes.

Figure g: the same engine step with the grouped layout (a backbone per group) against the multitask one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure, sync
from fashionattr.bench.inputs import bench_preprocessing, labelled_batch, new_model
from fashionattr.config import TrainConfig
from fashionattr.data.preprocessing import Preprocessing, normalize_batch
from fashionattr.distributed import DistributedContext
from fashionattr.engine import StepSettings, prepare_images, resolve_amp
from fashionattr.losses import masked_cross_entropy
from fashionattr.models.backbones import timm_model_name
from fashionattr.training.loop import train_one_epoch
from fashionattr.training.optim import build_optimizer, warmup_cosine
from fashionattr.training.run import step_settings


def engine_step_settings(context: BenchContext, config: TrainConfig, amp: torch.dtype | None,
                         channels_last: bool) -> StepSettings:  # fmt: skip
    """The step settings `fit` resolves from this config (its augmentation, loss, clipping and applicability)."""
    schema = context.data.schema
    return step_settings(config, schema, schema.names, bench_preprocessing(context, config.img_size, config.arch), amp,
                         channels_last)  # fmt: skip


class EngineTrainer:
    """One model (multitask unless told otherwise) trained by `train_one_epoch` on a fixed batch, a step per call."""

    def __init__(self, context: BenchContext, batch: dict[str, Any], amp: torch.dtype | None = None,
                 channels_last: bool = False, compiled: bool = False, seed: int = 0,
                 layout: str = "multitask") -> None:  # fmt: skip
        self.device = context.device
        config = TrainConfig(data="bench", arch=context.settings.arch, img_size=context.settings.img_size)
        self.model = new_model(context, layout=layout, seed=seed)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(10_000, 100, 1e-3))
        self.settings = engine_step_settings(context, config, amp, channels_last)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == torch.float16 else None
        self.train_model: nn.Module = torch.compile(self.model) if compiled else self.model  # type: ignore[assignment]
        self.generator = torch.Generator().manual_seed(seed)
        self.distributed = DistributedContext(device=self.device)
        self.batch = batch
        self.num_classes = {name: context.data.schema.attribute(name).num_classes for name in self.settings.attributes}

    def step(self) -> int:
        # The engine only iterates its loader: a list holding the one ready batch keeps loading out of the timing.
        loader = cast(DataLoader, [self.batch])
        stats = train_one_epoch(self.train_model, self.optimizer, self.scheduler, loader, self.distributed,
                                self.settings, self.generator, scaler=self.scaler)  # fmt: skip
        sync(self.device)
        return int(stats["train_images"])


class BareTrainer:
    """The same backbone as a plain timm classifier over all classes, trained by the textbook loop."""

    def __init__(self, context: BenchContext, batch: dict[str, Any], preprocessing: Preprocessing,
                 amp: torch.dtype | None = None, channels_last: bool = False) -> None:  # fmt: skip
        schema, self.device, self.amp = context.data.schema, context.device, amp
        torch.manual_seed(0)
        sizes = [schema.attribute(name).num_classes for name in schema.names]
        name = timm_model_name(context.settings.arch)
        self.model = timm.create_model(name, num_classes=sum(sizes)).to(self.device)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=memory_format)
        config = TrainConfig(data="bench")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        offsets = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))])
        self.targets = (offsets[batch["attribute_index"]] + batch["target"]).to(self.device)
        images = normalize_batch(batch["image"].to(self.device), preprocessing)
        self.images = images.contiguous(memory_format=memory_format)

    def step(self) -> int:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits = self.model(self.images)
        loss = F.cross_entropy(logits.float(), self.targets)
        loss.backward()
        self.optimizer.step()
        sync(self.device)
        return self.images.shape[0]


def _median_seconds(action: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overhead_breakdown(engine: EngineTrainer, step_seconds: float) -> list[str]:
    """Each extra of the engine step timed alone, as a share of one engine step."""
    settings, batch, device = engine.settings, engine.batch, engine.device
    images = batch["image"].to(device)
    generator = torch.Generator().manual_seed(1)
    logits = {name: torch.randn(len(images), k, device=device, requires_grad=True)
              for name, k in engine.num_classes.items()}  # fmt: skip
    attribute_index, targets, maybe = (batch[key].to(device) for key in ("attribute_index", "target", "maybe"))

    def loss() -> None:
        value, _ = masked_cross_entropy(logits, settings.attributes, attribute_index, targets, maybe,
                                        maybe_weight=settings.maybe_weight,
                                        label_smoothing=settings.label_smoothing)  # fmt: skip
        value.backward()

    parts = {
        "augment + normalise": _median_seconds(lambda: prepare_images(images, settings, generator), device),
        "masked loss (forward + backward)": _median_seconds(loss, device),
        "gradient clipping": _median_seconds(
            lambda: nn.utils.clip_grad_norm_(engine.model.parameters(), settings.clip_grad or 1.0), device
        ),
    }
    return [f"{name}: {1000 * seconds:.1f} ms = {100 * seconds / step_seconds:.1f}% of a step"
            for name, seconds in parts.items()]  # fmt: skip


def engine_figure(context: BenchContext) -> list[Figure]:
    settings, device = context.settings, context.device
    batch = labelled_batch(context)
    amp = resolve_amp("auto", device)
    channels_last = device.type == "cuda"  # the training default: channels_last on GPU only
    engine = EngineTrainer(context, batch, amp=amp, channels_last=channels_last)
    bare = BareTrainer(context, batch, engine.settings.preprocessing, amp=amp, channels_last=channels_last)
    variants = [Variant("training.loop.train_one_epoch", engine.step), Variant("bare timm + torch loop", bare.step)]
    # Two more rounds than elsewhere: the goal sits within a few percent of 1, where a busy machine's noise is.
    measurement = measure(variants, rounds=settings.rounds + 2, warmup=1, budget_s=150)
    step_seconds = batch["image"].shape[0] / measurement.median("training.loop.train_one_epoch")
    figure = compared(
        "c", "training step: the engine vs a bare timm loop", measurement, "training.loop.train_one_epoch",
        "bare timm + torch loop", goal=0.95,
        settings={"arch": settings.arch, "size": settings.img_size, "batch": batch["image"].shape[0],
                  "amp": str(amp).replace("torch.", ""), "channels_last": channels_last, "device": str(device)},
        notes=overhead_breakdown(engine, step_seconds),
    )  # fmt: skip
    return [figure]


def grouped_figure(context: BenchContext) -> list[Figure]:
    """Figure g: a grouped (upper vs lower body backbones) training step against a multitask one on the same batch.

    Each image goes through its own group's backbone only, so two backbones cost about what one does.
    """
    settings, device = context.settings, context.device
    batch = labelled_batch(context)
    amp = resolve_amp("auto", device)
    channels_last = device.type == "cuda"
    multitask = EngineTrainer(context, batch, amp=amp, channels_last=channels_last)
    grouped = EngineTrainer(context, batch, amp=amp, channels_last=channels_last, layout="grouped")
    variants = [Variant("grouped (upper-lower)", grouped.step), Variant("multitask", multitask.step)]
    measurement = measure(variants, rounds=settings.rounds + 2, warmup=1, budget_s=150)
    figure = compared(
        "g", "training step: grouped layout vs multitask", measurement, "grouped (upper-lower)", "multitask",
        goal=0.9,
        settings={"arch": settings.arch, "size": settings.img_size, "batch": batch["image"].shape[0],
                  "device": str(device)},
        notes=["grouped: two backbones, each image through its own group's backbone only (per-group batches)"],
    )  # fmt: skip
    return [figure]
