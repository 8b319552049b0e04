"""`fashionattr prepare DATA --size S`: build the preprocessed image cache that training reads instead of JPEGs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="build the preprocessed image cache for a training size",
        description="Decode and letterbox every image once into a memory-mapped array under "
        "DATA/.fashionattr-cache/. train, evaluate and grid use it automatically while it matches the source "
        "files; run prepare again after the images change (or train with --cache build).",
    )
    parser.add_argument("data", help="dataset root")
    parser.add_argument("--size", type=int, required=True, help="training image size in pixels, e.g. 224")
    parser.add_argument("--arch", default=None, help="take the resampling filter from this model's config")
    parser.add_argument("--interpolation", default=None, help="bilinear (default), bicubic, lanczos or nearest")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache is up to date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from fashionattr.data.cache import build_cache, open_cache
    from fashionattr.data.layout import DatasetLayout
    from fashionattr.errors import UserError

    if args.size < 16:
        raise UserError(f"--size must be at least 16 pixels, got {args.size}")
    interpolation = args.interpolation
    if interpolation is None and args.arch:
        from fashionattr.models import create_backbone, preprocessing_config

        interpolation = preprocessing_config(create_backbone(args.arch))["interpolation"]
    interpolation = interpolation or "bilinear"
    layout = DatasetLayout.open(args.data)
    records = layout.read_labels()
    if layout.questions_path.is_file():
        records += layout.read_questions()
    paths = sorted({r.path for r in records})
    if not args.force and open_cache(layout.root, paths, args.size, interpolation) is not None:
        print(f"cache for {len(paths)} images at {args.size}px ({interpolation}) is up to date")
        return 0
    start = time.perf_counter()
    cache = build_cache(layout.root, paths, args.size, interpolation, workers=args.workers)
    print(f"cached {len(cache.slots)} images at {args.size}px ({interpolation}) in {time.perf_counter() - start:.1f}s "
          f"-> {cache.directory}")  # fmt: skip
    if cache.bad:
        print(f"{len(cache.bad)} image(s) could not be decoded and will be skipped by training:")
        for path, reason in sorted(cache.bad.items())[:20]:
            print(f"  {path}: {reason}")
    return 0
