"""Training choices measured side by side: `python benchmarks/recipe_study.py [--per-class 60] [--epochs 10] ...`.

Every variant trains on the same synthetic dataset, split and seed, with the same budget (epochs, image size),
starting from the `cpu-demo` recipe; only the settings the variant names differ. Each run's best-epoch
validation scores and its held-out test scores are printed as one Markdown table (and saved with `--json`), so
a default can be justified by the figure beside its alternative. Built-in variant sets:

    --study defaults   EMA with warm-up vs none; soft `m` weights; the checkpoint-selection metric
    --study finetune   the backbone's learning-rate share when starting from pretrained weights: `--weights FILE`
                       (e.g. the backbone of a demo run, see `backbone_weights`), else weights made by first
                       training on a different synthetic dataset (no hub access is needed)
    --variant NAME=key:value,key:value   any other comparison (repeatable)

Timings in the table are wall seconds on whatever else the machine is doing: compare them within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Idle OpenMP threads must not spin against the other jobs of a shared machine (as `fashionattr` itself sets it);
# set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

STUDIES: dict[str, dict[str, dict[str, Any]]] = {
    "defaults": {
        "default": {},
        "no EMA": {"ema_decay": 0.0},
        "EMA 0.99": {"ema_decay": 0.99},
        "soft m 0": {"maybe_weight": 0.0},
        "soft m 0.15": {"maybe_weight": 0.15},
        "soft m 0.5": {"maybe_weight": 0.5},
        "select by mAP": {"select_metric": "map"},
        "select by loss": {"select_metric": "loss"},
    },
    "finetune": {
        "backbone share 1 (one rate, the default)": {},
        "backbone share 0.1": {"backbone_lr_scale": 0.1},
        "backbone share 0.3": {"backbone_lr_scale": 0.3},
    },
}


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    import yaml

    name, _, body = text.partition("=")
    settings: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        settings[key.strip()] = yaml.safe_load(value)
    return name.strip(), settings


def pretrained_weights(workdir: Path, base: dict[str, Any], per_class: int, size: int) -> Path:
    """Backbone weights from a run on another synthetic dataset (another seed): a stand-in for ImageNet weights."""
    from fashionattr.config import resolve_config
    from fashionattr.data.synth import generate_dataset
    from fashionattr.training import train

    data, run = workdir / "pretrain-data", workdir / "pretrain-run"
    generate_dataset(data, per_class=per_class, size=size, seed=101, progress=False)
    train(resolve_config(None, {**base, "data": str(data), "out": str(run), "seed": 101}))
    return backbone_weights(run, workdir / "pretrained-backbone.pth")


def backbone_weights(run: Path, path: Path) -> Path:
    """The backbone of a multitask run's best checkpoint as a weights file `--weights` takes."""
    import torch

    from fashionattr.checkpoint import model_from_checkpoint
    from fashionattr.run_dir import RunDir

    model, *_ = model_from_checkpoint(RunDir(run).checkpoint)
    torch.save(model.attribute_backbone(model.attributes[0]).state_dict(), path)
    return path


def run_variant(name: str, overrides: dict[str, Any], base: dict[str, Any], data: Path, workdir: Path) -> dict:
    from fashionattr.config import resolve_config
    from fashionattr.distributed import DistributedContext
    from fashionattr.evaluation import evaluate_checkpoint
    from fashionattr.training import train

    out = workdir / f"run-{abs(hash(name))}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    [summary] = train(resolve_config(None, {**base, **overrides, "data": str(data), "out": str(out)}))
    seconds = time.perf_counter() - start
    test = evaluate_checkpoint(out, DistributedContext(), subset="test", workers=0)
    best = summary["best_metrics"]
    return {"variant": name, "settings": overrides, "val_bp": best["val_mean_accuracy"], "val_map": best["val_map"],
            "test_bp": test.scores.mean_accuracy, "test_map": test.scores.mean_average_precision,
            "best_epoch": summary["best_epoch"], "seconds": seconds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), help="a built-in set of variants")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key:value,key:value (repeatable)")
    parser.add_argument("--per-class", type=int, default=60, help="synthetic images per class (60)")
    parser.add_argument("--size", type=int, default=128, help="synthetic image side (128)")
    parser.add_argument("--img-size", type=int, default=64, help="training input side (64)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every variant (10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="reuse this synthetic dataset instead of generating one")
    parser.add_argument("--json", type=Path, help="also save the results here")
    parser.add_argument("--weights", type=Path, help="with --study finetune: start from this backbone (.pth), or from "
                        "the backbone of this run folder's best.pt")  # fmt: skip
    args = parser.parse_args()

    from fashionattr.data.synth import generate_dataset

    variants = dict(STUDIES[args.study]) if args.study else {}
    variants.update(parse_variant(text) for text in args.variant)
    if not variants:
        parser.error("give --study or at least one --variant")
    base = {"recipe": "cpu-demo", "img_size": args.img_size, "epochs": args.epochs, "seed": args.seed,
            "progress": False}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="recipe-study-") as scratch:
        workdir = Path(scratch)
        data = args.data or workdir / "data"
        if args.data is None:
            generate_dataset(data, per_class=args.per_class, size=args.size, seed=args.seed, progress=False)
        if args.study == "finetune":
            if args.weights and args.weights.is_dir():
                base["weights"] = str(backbone_weights(args.weights, workdir / "pretrained-backbone.pth"))
            elif args.weights:
                base["weights"] = str(args.weights)
            else:
                base["weights"] = str(pretrained_weights(workdir, base, args.per_class, args.size))
        results = []
        for name, overrides in variants.items():
            results.append(run_variant(name, overrides, base, data, workdir))
            row = results[-1]
            print(
                f"{name}: val BP {100 * row['val_bp']:.1f}  test BP {100 * row['test_bp']:.1f}  "
                f"test mAP {100 * row['test_map']:.1f}  ({row['seconds']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    print(f"\nrecipe cpu-demo, {args.per_class} images per class at {args.size} px, trained at {args.img_size} px for "
          f"{args.epochs} epochs, seed {args.seed}\n")  # fmt: skip
    print("| variant | val BP % | val mAP % | test BP % | test mAP % | best epoch | seconds |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        scores = " | ".join(f"{100 * row[key]:.1f}" for key in ("val_bp", "val_map", "test_bp", "test_map"))
        print(f"| {row['variant']} | {scores} | {row['best_epoch']} | {row['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
