"""Figure a: images/s of the training loader reading the `prepare` cache vs decoding the 512 px JPEGs each epoch.

Also times the decoder itself: PIL with DCT-domain downscaling (`open_image(..., target_size=)`, what the
loader uses) against a full PIL decode and against `torchvision.io.decode_jpeg`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fashionattr.bench.context import BenchContext
from fashionattr.bench.core import Figure, Variant, compared, measure
from fashionattr.config import TrainConfig
from fashionattr.data.cache import build_cache
from fashionattr.data.images import open_image
from fashionattr.data.preprocessing import PAD_VALUE, Preprocessing, letterbox
from fashionattr.data.torch_dataset import LabelledImages, collate

DECODE_SAMPLE = 100
"""Images the decoder comparison decodes per round."""
LOADER_BATCH = TrainConfig.batch_size
"""The training default, whatever `--batch-size` the model figures use: per-batch costs are part of the figure."""


def _epoch(loader: DataLoader) -> int:
    return sum(batch["image"].shape[0] for batch in loader if "image" in batch)


def _loader(dataset: LabelledImages, batch_size: int, workers: int) -> DataLoader:
    # As training builds it: shuffled, collated, workers kept alive between epochs.
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                      persistent_workers=workers > 0)  # fmt: skip


def loader_figure(context: BenchContext) -> list[Figure]:
    # The comparison's loaders (and their persistent workers) are gone before the decoders are timed.
    return [cache_figure(context), *decoder_figures(context)]


def cache_figure(context: BenchContext) -> Figure:
    settings, data = context.settings, context.data
    size = settings.loader_size
    paths = sorted({r.path for r in data.records})
    start = time.perf_counter()
    preprocessing = Preprocessing(img_size=size)
    cache = build_cache(data.root, paths, preprocessing, progress=False)
    build_seconds = time.perf_counter() - start

    def dataset(with_cache: bool) -> LabelledImages:
        return LabelledImages(data.root, data.records, data.schema, data.schema.names, preprocessing,
                              cache if with_cache else None)  # fmt: skip

    cached = _loader(dataset(True), LOADER_BATCH, settings.workers)
    decoding = _loader(dataset(False), LOADER_BATCH, settings.workers)
    measurement = measure([Variant("cached (prepare)", lambda: _epoch(cached)),
                           Variant("decode 512 px JPEG every epoch", lambda: _epoch(decoding))],
                          rounds=max(settings.rounds, 5), warmup=1, budget_s=90)  # fmt: skip
    common = {"images": len(paths), "size": size, "batch": LOADER_BATCH, "workers": settings.workers}
    return compared("a", f"loader images/s at {size} px: cache vs JPEG decoding", measurement,
                      "cached (prepare)", "decode 512 px JPEG every epoch", goal=4.0, settings=common,
                      notes=[f"building the cache took {build_seconds:.1f} s once ({len(paths) / build_seconds:.0f} "
                             "img/s over all cores); an epoch over the JPEGs pays the decode every time"])  # fmt: skip


def torchvision_letterbox(path: Path, size: int) -> np.ndarray:
    """The letterbox `letterbox` makes, but decoded by libjpeg through torchvision and resized by torch."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 deprecates its decoders for TorchCodec
        image = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    height, width = image.shape[1:]
    scale = size / max(width, height)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True)
    canvas = torch.full((3, size, size), PAD_VALUE, dtype=torch.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resized[0].round().clamp(0, 255).to(torch.uint8)
    return canvas.permute(1, 2, 0).numpy()


def decoder_figures(context: BenchContext) -> list[Figure]:
    """Single-process decode + letterbox of the same JPEGs by three decoders, on one thread like a loader worker."""
    size = context.settings.loader_size
    preprocessing = Preprocessing(img_size=size)
    files = context.data.images[:DECODE_SAMPLE]

    def pil(target: int | None) -> int:
        for path in files:
            with open_image(path, target_size=target) as image:
                letterbox(image, preprocessing)
        return len(files)

    def torchvision() -> int:
        for path in files:
            torchvision_letterbox(path, size)
        return len(files)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # loader workers run single-threaded
    try:
        measurement = measure([Variant("PIL, DCT downscale (draft)", lambda: pil(size)),
                               Variant("PIL, full decode", lambda: pil(None)),
                               Variant("torchvision.io.decode_jpeg", torchvision)],
                              rounds=max(context.settings.rounds, 5), warmup=1, budget_s=40)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    common = {"images": len(files), "size": size, "threads": 1}
    versus_torchvision = compared(
        "a.decode", "JPEG decode+letterbox: PIL draft vs torchvision.io.decode_jpeg", measurement,
        "PIL, DCT downscale (draft)", "torchvision.io.decode_jpeg", goal=None, settings=common,
        notes=["the loader keeps whichever is faster; torchvision decodes at full size (no DCT scaling), would "
               "need its own CMYK/PNG/bomb handling, and deprecates its decoders as of 0.29"],
    )  # fmt: skip
    versus_full = compared(
        "a.draft", "JPEG decode+letterbox: PIL draft vs full decode (the fix)", measurement,
        "PIL, DCT downscale (draft)", "PIL, full decode", goal=None, settings=common,
        notes=["`open_image(path, target_size=)` asks libjpeg for 1/2 scale before loading; `load_letterboxed`, "
               "which every path that feeds a model goes through (training, cache, evaluate, predict, serve), uses it"],
    )  # fmt: skip
    return [versus_torchvision, versus_full]
