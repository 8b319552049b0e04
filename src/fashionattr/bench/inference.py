"""Figures b and d: what one shared backbone saves at inference, and what `predict` costs beyond the network.

b runs all eight attributes through the Predictor (the path `predict`, `serve` and `submit` take) with one
multitask model and with eight per-attribute models of the same architecture. d streams a folder of 512 px
JPEGs through `Predictor.predict_paths` and compares it with the bare forward pass on ready tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure, sync
from fashionattr.bench.inputs import bench_preprocessing, image_batch, new_model, shared_multitask
from fashionattr.data.preprocessing import normalize_batch
from fashionattr.engine import autocast, resolve_amp
from fashionattr.inference import Predictor
from fashionattr.inference.torch_backend import LoadedModel, TorchBackend

PREDICT_BATCHES = 4
"""Batches per round of figure d: a small folder. Its fixed start (loader workers, decoding the first batch
before the model can begin, about 0.4 s on 2 cores) weighs on the ratio as it would on a real folder of a few
hundred images, not as on a single batch."""


def _predictor(context: BenchContext, models: list[LoadedModel]) -> Predictor:
    return Predictor(TorchBackend(models, context.device), context.data.schema)


def ready_tensor(predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
    """`images` normalised and in the memory format the predictor runs its models in, as it would prepare them."""
    backend = cast(TorchBackend, predictor.backend)
    preprocessing = backend.models[0].preprocessing
    return normalize_batch(images.to(backend.device), preprocessing).contiguous(memory_format=backend.memory_format)


def multitask_predictor(context: BenchContext) -> Predictor:
    model = shared_multitask(context)
    preprocessing = bench_preprocessing(context)
    return _predictor(context, [LoadedModel(model, preprocessing, context.data.schema.names, Path("multitask"))])


def multitask_figure(context: BenchContext) -> list[Figure]:
    settings, schema = context.settings, context.data.schema
    one = multitask_predictor(context)
    preprocessing = one.models[0].preprocessing
    loaded = []
    for seed, name in enumerate(schema.names, start=1):
        model = new_model(context, layout="per-attribute", attributes=[name], seed=seed).eval()
        loaded.append(LoadedModel(model, preprocessing, [name], Path(name)))
    eight = _predictor(context, loaded)
    batch = image_batch(context)

    def run(predictor: Predictor) -> int:
        predictor.probabilities([batch])
        sync(context.device)
        return batch.shape[0]

    run(one)
    with torch.no_grad():
        loaded[0].model(ready_tensor(eight, batch))  # the eight share shapes: one warm-up serves all
    measurement = measure([Variant("one multitask model", lambda: run(one)),
                           Variant(f"{len(loaded)} per-attribute models", lambda: run(eight))],
                          rounds=settings.rounds, warmup=0, budget_s=60)  # fmt: skip
    figure = compared(
        "b", f"inference of all {len(loaded)} attributes: multitask vs per-attribute models", measurement,
        "one multitask model", f"{len(loaded)} per-attribute models", goal=6.0,
        settings={"arch": settings.arch, "size": settings.img_size, "batch": batch.shape[0],
                  "device": str(context.device)},
        notes=["through Predictor.probabilities, as predict/serve/submit run it"],
    )  # fmt: skip
    return [figure]


def predict_figure(context: BenchContext) -> list[Figure]:
    settings = context.settings
    predictor = multitask_predictor(context)
    model = shared_multitask(context)
    files = context.data.images[: settings.batch_size * PREDICT_BATCHES]
    amp = resolve_amp("auto", context.device)
    batch = image_batch(context)
    ready = [ready_tensor(predictor, batch) for _ in range(max(1, len(files) // batch.shape[0]))]

    def end_to_end() -> int:
        done = sum(1 for p in predictor.predict_paths(files, batch_size=settings.batch_size, workers=settings.workers)
                   if not isinstance(p, Exception))  # fmt: skip
        sync(context.device)
        return done

    @torch.no_grad()
    def forward_only() -> int:
        for tensor in ready:
            with autocast(context.device, amp):
                model(tensor)
        sync(context.device)
        return sum(t.shape[0] for t in ready)

    measurement = measure([Variant("predict_paths over JPEG files", end_to_end),
                           Variant("forward pass on ready tensors", forward_only)],
                          rounds=settings.rounds, warmup=1, budget_s=90)  # fmt: skip
    figure = compared(
        "d", "predict end to end vs the forward pass alone", measurement,
        "predict_paths over JPEG files", "forward pass on ready tensors", goal=0.7,
        settings={"arch": settings.arch, "size": settings.img_size, "images": len(files),
                  "batch": settings.batch_size, "workers": settings.workers, "device": str(context.device)},
        notes=["end to end: 512 px JPEG decode + letterbox in loader workers, normalise, forward, softmax, "
               "result objects; each round starts its own loader workers, as each predict call does"],
    )  # fmt: skip
    return [figure]
