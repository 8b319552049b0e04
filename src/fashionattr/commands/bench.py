"""`fashionattr bench`: measure every speed-up the project claims as a ratio against its baseline, side by side."""

from __future__ import annotations

import argparse
from typing import Any

from fashionattr.commands.options import BATCH, WORKERS, add_device, add_out, count, number
from fashionattr.errors import UserError

FIGURE_HELP = (
    "a: loader with the prepare cache vs JPEG decoding; b: one multitask model vs eight per-attribute models; "
    "c: the training engine vs a bare timm loop; d: predict end to end vs the forward pass alone; "
    "e: channels_last, bf16 and torch.compile on CPU; g: a grouped-layout training step vs a multitask one; "
    "mem: peak memory of training and predict; "
    "gpu: AMP, channels_last, compile and resnet50 images/s on a GPU (skipped without one); "
    "int8: int8 ONNX model vs fp32 on a CPU (images/s, BP, mAP, top-class agreement); "
    "similar: similar-garment search, approximate vs exact index; facets: facet counts and filtered search "
    "through the facet index vs the previous GROUP BYs, SQLite and PostgreSQL; page: the catalogue page in Chromium; "
    "reindex: re-indexing an unchanged folder by size and time vs content hash; "
    "service: service throughput at 8 clients vs 1; catalog: similar,facets,page,reindex,service"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure the speed-ups as ratios against their baselines, side by side",
        description="Run each benchmark figure on synthetic 512 px JPEGs (or a sample copied from --data) and "
        "print it with its settings, the machine, and its ratio against a baseline measured in the same run "
        "(the two alternate round by round; medians are reported), then a summary of ratios against goals. "
        f"Figures: {FIGURE_HELP}. The defaults take about ten minutes on two CPU cores; --quick about two.",
    )
    parser.add_argument("--only", metavar="LIST", help="comma-separated figures to run (default: all): a,b,c,d,e,g,"
                        "mem,gpu,int8,similar,facets,page,reindex,service, or catalog for the last five")  # fmt: skip
    parser.add_argument("--data", metavar="DIR", help="sample images from this dataset (copied to a temporary "
                        "folder) instead of generating synthetic ones")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller sizes and no torch.compile (about 2 minutes)")
    add_out(parser, old=("--json",), help="also write the report (machine, settings, figures) as JSON")
    add_device(parser)
    parser.add_argument("--arch", help="timm architecture of the model figures (default resnet18)")
    parser.add_argument("--img-size", type=count(32), metavar="PX", help="input side of the model figures (default "
                        "224)")  # fmt: skip
    parser.add_argument("--batch-size", type=BATCH, metavar="N", help="batch size of the model figures (default 32; "
                        "quick 8)")  # fmt: skip
    parser.add_argument("--per-class", type=count(1), metavar="N", help="images per class, 54 classes (default 10; "
                        "quick 3)")  # fmt: skip
    parser.add_argument("--rounds", type=count(1), metavar="N", help="alternating rounds per comparison (default 3; "
                        "quick 2)")  # fmt: skip
    parser.add_argument("--workers", type=WORKERS, metavar="N", help="loader worker processes (default 2)")
    parser.add_argument("--compile-budget", type=number(0.0), dest="compile_budget_s", metavar="SECONDS",
                        help="time to compile and time torch.compile; 0 skips it (default 200; quick 0)")  # fmt: skip
    parser.add_argument("--memory-images", type=count(1), metavar="N",
                        help="predict over N and 4N images in the memory figure (default 1000; quick 200)")  # fmt: skip
    parser.add_argument("--catalog-sizes", metavar="LIST",
                        help="catalogue sizes of the similar and facets figures (default 10000,100000,1000000; "
                        "quick 10000)")  # fmt: skip
    parser.add_argument("--int8-run", metavar="RUN",
                        help="a trained run for the int8 figure's accuracy (BP, mAP against fp32 on its test or "
                        "validation images), e.g. runs/demo/run")  # fmt: skip
    parser.add_argument("--reindex-files", type=count(100), metavar="N",
                        help="files of the reindex figure (default 100000; quick 5000)")  # fmt: skip
    parser.add_argument("--embedding-dim", type=count(1), metavar="N",
                        help="embedding size of the similar figure (default 512, resnet18's; resnet50 gives "
                        "2048)")  # fmt: skip
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL database for the facets figure "
                        "(postgresql://...); by default a throwaway local server is started when the binaries are "
                        "installed")  # fmt: skip
    parser.set_defaults(func=run)


def _parse_only(text: str | None) -> tuple[str, ...] | None:
    from fashionattr.bench.context import CATALOG_FIGURES, FIGURES

    if text is None:
        return None
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    chosen = tuple(f for part in chosen for f in (CATALOG_FIGURES if part == "catalog" else (part,)))
    unknown = [part for part in chosen if part not in FIGURES]
    if unknown or not chosen:
        raise UserError(f"--only takes figures from {','.join(FIGURES)} (or catalog); got {text!r}")
    return chosen


def _parse_sizes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sizes = tuple(int(part.strip().replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 100:
        raise UserError(f"--catalog-sizes takes item counts of at least 100, comma-separated; got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    from fashionattr.bench import BenchSettings, run_bench, write_report
    from fashionattr.models.backbones import timm_model_name

    if args.arch:
        timm_model_name(args.arch)  # an unknown name fails here, not after minutes of other figures
    base = BenchSettings.quick_settings() if args.quick else BenchSettings()
    settings = base.with_overrides(
        only=_parse_only(args.only), data=args.data, device=args.device, arch=args.arch, img_size=args.img_size,
        batch_size=args.batch_size, per_class=args.per_class, rounds=args.rounds, workers=args.workers,
        compile_budget_s=args.compile_budget_s, memory_images=args.memory_images,
        catalog_sizes=_parse_sizes(args.catalog_sizes), embedding_dim=args.embedding_dim, postgres=args.postgres,
        reindex_files=args.reindex_files, int8_run=args.int8_run,
    )  # fmt: skip
    report = run_bench(settings, emit=lambda line: print(line, flush=True))
    if args.out:
        write_report(args.out, report)
        print(f"wrote {args.out}")
    return 0
