"""`fashionattr demo`: the whole job on the built-in synthetic dataset, from nothing to a report."""

from __future__ import annotations

import argparse

from fashionattr.commands.options import BATCH, WORKERS, add_out, count, number

DEMO_RECIPE = "cpu-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate synthetic data, train a multitask model, evaluate it and write a report",
        description="Generate the synthetic garment dataset, check and split it, build the image cache, train one "
        f"multitask model (one backbone, a head per attribute) with the {DEMO_RECIPE} recipe, score it on the "
        "held-out test set and write a Markdown report with the per-attribute table, learning curves and "
        "confusion matrices. Defaults come from the recipe (`fashionattr recipes cpu-demo`).",
    )
    add_out(parser, folder=True, default="runs/demo", help="folder for the dataset and the run (default runs/demo)")
    parser.add_argument("--per-class", type=count(1), metavar="N", help="synthetic images per class (the recipe's)")
    parser.add_argument("--size", type=count(32), metavar="PX", help="synthetic image side in pixels (the recipe's)")
    parser.add_argument("--img-size", type=count(16), metavar="PX", help="training input side in pixels (the recipe's)")
    parser.add_argument("--arch", help="backbone (the recipe's, small enough for a CPU)")
    parser.add_argument("--epochs", type=count(1), metavar="N", help="training epochs (the recipe's)")
    parser.add_argument("--batch-size", type=BATCH, metavar="N", help="images per training step (the recipe's)")
    parser.add_argument("--workers", type=WORKERS, metavar="N",
                        help="loader processes (the recipe's: 0, the cache makes them unneeded)")  # fmt: skip
    parser.add_argument("--seed", type=count(0), default=0, metavar="S", help="seed of the data and the training "
                        "(default 0)")  # fmt: skip
    parser.add_argument("--label-noise", type=number(0.0, 1.0, below_maximum=True), default=0.0, metavar="F",
                        help="switch this share of the training labels to another class (true ones in "
                        "data/Annotations/flipped.csv), to try `fashionattr review` on (default 0)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from fashionattr.config import resolve_config
    from fashionattr.data.cache import build_cache, open_cache
    from fashionattr.data.complete_labels import TEST_COMPLETE_RELPATH
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.data.split import make_split, write_split
    from fashionattr.distributed import DistributedContext
    from fashionattr.errors import UserError
    from fashionattr.evaluation import evaluate_checkpoint, evaluate_tags, write_evaluation
    from fashionattr.models.backbones import model_preprocessing
    from fashionattr.recipes import load_recipe
    from fashionattr.render.tables import scores_table, tag_table
    from fashionattr.run_dir import RunDir
    from fashionattr.synthetic.generate import (
        fewest_per_class_with_a_test_image,
        generate_dataset,
        held_out_per_class,
    )
    from fashionattr.training import train

    start = time.perf_counter()
    out = Path(args.out)
    data, run = out / "data", RunDir(out / "run")
    synthetic = load_recipe(DEMO_RECIPE).synthetic
    per_class, size = args.per_class or synthetic["per_class"], args.size or synthetic["size"]
    if not (data / "Annotations" / "label.csv").is_file() and not held_out_per_class(per_class):
        least = fewest_per_class_with_a_test_image()
        raise UserError(f"--per-class {per_class} holds out no test image (the demo scores a tenth of each class, "
                        f"rounded); give --per-class {least} or more")  # fmt: skip

    def step(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    if (data / "Annotations" / "label.csv").is_file():
        step(f"using the synthetic dataset in {data}")
    else:
        step(f"generating {per_class} synthetic images per class at {size}px into {data}")
        generate_dataset(data, per_class=per_class, size=size, seed=args.seed, label_noise=args.label_noise)
    data_root = DatasetRoot.open(data)
    records = data_root.read_labels()
    questions = data_root.read_questions()
    step(f"checked {len(records)} labelled rows and {len(questions)} test questions")
    if not data_root.default_split_path.is_file():
        write_split(data_root.default_split_path, make_split(records, val_fraction=0.2, seed=args.seed, root=data))
    step(f"4:1 stratified split in {data_root.default_split_path}")

    config = resolve_config(None, {
        "recipe": DEMO_RECIPE, "data": str(data), "out": str(run), "arch": args.arch, "img_size": args.img_size,
        "epochs": args.epochs, "batch_size": args.batch_size, "workers": args.workers, "seed": args.seed,
    })  # fmt: skip
    paths = sorted({r.path for r in records + questions})
    preprocessing = model_preprocessing(config.arch, config.img_size, config.interpolation)  # what training reads
    if open_cache(data, paths, preprocessing) is None:
        build_cache(data, paths, preprocessing)
    step(f"image cache at {preprocessing.describe()} ready")

    resume = run.last.is_file()
    step(f"training {config.arch} (multitask, 8 heads) for {config.epochs} epochs{' (resuming)' if resume else ''}")
    [summary] = train(config, resume=resume)
    best = summary["best_metrics"]
    step(f"best epoch {summary['best_epoch']}: validation accuracy {100 * best['val_mean_accuracy']:.1f}%")

    result = evaluate_checkpoint(run.path, DistributedContext(), subset="test", workers=config.workers,
                                 tta=config.tta)  # fmt: skip
    tags = evaluate_tags(run.path, data / TEST_COMPLETE_RELPATH, result, data, tta=config.tta, workers=config.workers)
    write_evaluation(result, run.evaluation("test"), tags)
    step("scored the held-out test set, and the tags a catalogue shows for it")
    print(f"\nValidation (best epoch) — report: {run.report}")
    print(scores_table(data_root.schema, json.loads(run.scores.read_text(encoding="utf-8")), "val images"))
    print(f"\nTest set — report: {run.evaluation('test') / 'report.md'}")
    print(scores_table(result.schema, result.scores.to_dict(), "test images"))
    print(f"\nTags a catalogue would show for the test images (every attribute asked of each of {tags.images}):")
    print(tag_table(tags.to_dict()))
    step("done")
    return 0
