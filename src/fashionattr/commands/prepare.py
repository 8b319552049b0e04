"""`fashionattr prepare DATA`: build the preprocessed image cache that training reads instead of JPEGs."""

from __future__ import annotations

import argparse

from fashionattr.commands.options import WORKERS, count


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="build the preprocessed image cache for a training size",
        description="Decode and letterbox every image once into a memory-mapped array under "
        "DATA/.fashionattr-cache/. train, evaluate and grid with the same --arch, --img-size and --interpolation "
        "use it automatically while it matches the source files; run prepare again after the images change (or "
        "train with --cache build).",
    )
    parser.add_argument("data", help="dataset root")
    parser.add_argument(
        "--size",
        "--img-size",
        dest="size",
        type=count(16),
        default=None,
        help="input side in pixels, as train's --img-size (default: the architecture's)",
    )
    parser.add_argument(
        "--arch", default=None, help="the architecture you will train, for its resampling (default: train's default)"
    )
    parser.add_argument("--interpolation", default=None, help="bilinear, bicubic, lanczos or nearest (default: the "
                        "architecture's, as train uses it)")  # fmt: skip
    parser.add_argument("--workers", type=WORKERS, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is up to date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from fashionattr.config import TrainConfig
    from fashionattr.data.cache import build_cache, open_cache
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.models.backbones import model_preprocessing

    preprocessing = model_preprocessing(args.arch or TrainConfig.arch, args.size, args.interpolation)
    dataset = DatasetRoot.open(args.data)
    records = dataset.read_labels()
    if dataset.questions_path.is_file():
        records += dataset.read_questions()
    paths = sorted({r.path for r in records})
    what = f"{len(paths)} images at {preprocessing.describe()}"
    if not args.force and open_cache(dataset.path, paths, preprocessing) is not None:
        print(f"cache of {what} is up to date")
        return 0
    start = time.perf_counter()
    cache = build_cache(dataset.path, paths, preprocessing, workers=args.workers)
    print(f"cached {what} in {time.perf_counter() - start:.1f}s -> {cache.directory}")
    if cache.bad:
        print(f"{len(cache.bad)} image(s) could not be decoded and will be skipped by training:")
        for path, reason in sorted(cache.bad.items())[:20]:
            print(f"  {path}: {reason}")
    return 0
