"""The GPU section: AMP, channels_last and torch.compile against fp32 eager, and resnet50 training images/s.

Runs only when the bench's device is a CUDA GPU. The resnet50 figure compares the engine's training step
(with its augmentation and loss) at 224 px, AMP and channels_last with timm's published 1218 img/s on an
RTX 3090; another GPU scales that figure, so it is reported for information, with the GPU's name.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, measure
from fashionattr.bench.cpu_options import Option, compile_figures, option_figures
from fashionattr.bench.inputs import labelled_batch
from fashionattr.bench.training import EngineTrainer

TIMM_RESNET50_TRAIN = 1218.0
"""timm's published resnet50 training throughput, img/s (RTX 3090, AMP, channels_last, batch 256)."""
TIMM_BATCH = 256


def gpu_figures(context: BenchContext) -> list[Figure]:
    if context.device.type != "cuda":
        reason = "no CUDA device" if not torch.cuda.is_available() else f"the bench runs on {context.device}"
        return [Figure("gpu", "GPU: AMP, channels_last, compile; resnet50 vs timm", skipped=reason)]
    amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    options = [Option("eager fp32"), Option("amp", amp=amp), Option("amp+channels_last", amp=amp, channels_last=True)]
    figures = option_figures(context, "gpu", options, rounds=context.settings.rounds, budget_s=120)
    figures.extend(compile_figures(context, "gpu", options[-1]))
    figures.append(resnet50_figure(context, amp))
    return figures


def resnet50_figure(context: BenchContext, amp: torch.dtype) -> Figure:
    settings = replace(context.settings, arch="resnet50", img_size=224, batch_size=TIMM_BATCH)
    resnet50 = replace(context, settings=settings, shared={})
    trainer = EngineTrainer(resnet50, labelled_batch(resnet50), amp=amp, channels_last=True)
    measurement = measure([Variant("engine", trainer.step)], rounds=max(5, settings.rounds), warmup=3)
    rate = measurement.median("engine")
    return Figure(
        "gpu.resnet50", "resnet50 training img/s vs timm's published figure", ratio=rate / TIMM_RESNET50_TRAIN,
        values={f"engine on {torch.cuda.get_device_name(context.device)}": rate, "timm, RTX 3090": TIMM_RESNET50_TRAIN},
        settings={"size": 224, "batch": TIMM_BATCH, "amp": str(amp).replace("torch.", ""), "channels_last": True},
        notes=["different GPUs: read the ratio against the two GPUs' relative speed"],
    )  # fmt: skip
