"""Training choices measured side by side, over seeds: `python benchmarks/recipe_study.py --seeds 0,1,2 ...`.

For every seed, every variant trains on the same synthetic dataset (made with that seed), split and training seed,
with the same budget (epochs, image size), starting from the `cpu-demo` recipe; only the settings the variant names
differ. The first variant is the reference (`default`). The table gives each variant's best-epoch validation scores
and held-out test scores as mean ± sd over the seeds, and its paired difference to the reference (the mean of the
per-seed differences, ± their sd): a difference whose mean is within one sd of zero is noise, and docs/defaults.md
keeps a default only where the difference exceeds that. Saved with `--json`. Built-in variant sets:

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
import statistics
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
    from fashionattr.synthetic.generate import generate_dataset
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
            "test_bp": test.scores.basic_precision, "test_map": test.scores.mean_average_precision,
            "best_epoch": summary["best_epoch"], "seconds": seconds}  # fmt: skip


KEYS = ("val_bp", "val_map", "test_bp", "test_map")
LABELS = {"val_bp": "val BP", "val_map": "val mAP", "test_bp": "test BP", "test_map": "test mAP"}


def spread(values: list[float]) -> str:
    """Percent mean ± sample sd (just the value for one seed)."""
    scaled = [100 * v for v in values]
    if len(scaled) == 1:
        return f"{scaled[0]:.1f}"
    return f"{statistics.mean(scaled):.1f} ± {statistics.stdev(scaled):.1f}"


def markdown(results: dict[str, list[dict[str, Any]]], keys: tuple[str, ...]) -> str:
    """Each variant's scores over the seeds, and its paired difference to the first variant's on the same seeds."""
    reference = next(iter(results.values()))
    lines = ["| variant | " + " | ".join(f"{LABELS[k]} %" for k in keys)
             + " | Δ test BP vs default | Δ test mAP vs default |",
             "|---|" + "---|" * (len(keys) + 2)]  # fmt: skip
    for name, rows in results.items():
        cells = [spread([row[key] for row in rows]) for key in keys]
        deltas = [spread([row[key] - base[key] for row, base in zip(rows, reference, strict=True)])
                  for key in ("test_bp", "test_map")] if rows is not reference else ["", ""]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells + deltas) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), help="a built-in set of variants")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key:value,key:value (repeatable)")
    parser.add_argument("--per-class", type=int, default=60, help="synthetic images per class (60)")
    parser.add_argument("--size", type=int, default=128, help="synthetic image side (128)")
    parser.add_argument("--img-size", type=int, default=64, help="training input side (64)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every variant (10)")
    parser.add_argument(
        "--seeds", default="0,1,2", help="comma-separated seeds, each its own data and training (0,1,2)"
    )
    parser.add_argument("--data", type=Path, help="reuse this synthetic dataset instead of generating one")
    parser.add_argument("--json", type=Path, help="also save the results here")
    parser.add_argument("--weights", type=Path, help="with --study finetune: start from this backbone (.pth), or from "
                        "the backbone of this run folder's best.pt")  # fmt: skip
    args = parser.parse_args()

    from fashionattr.synthetic.generate import generate_dataset

    variants = dict(STUDIES[args.study]) if args.study else {"default": {}}
    variants.update(parse_variant(text) for text in args.variant)
    if len(variants) < 2:
        parser.error("give --study or at least one --variant to compare with the default")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="recipe-study-") as scratch:
        for seed in seeds:
            workdir = Path(scratch) / f"seed-{seed}"
            base = {"recipe": "cpu-demo", "img_size": args.img_size, "epochs": args.epochs, "seed": seed,
                    "split_seed": seed, "progress": False}  # fmt: skip
            data = args.data or workdir / "data"
            if args.data is None:
                generate_dataset(data, per_class=args.per_class, size=args.size, seed=seed, progress=False)
            if args.study == "finetune":
                if args.weights and args.weights.is_dir():
                    base["weights"] = str(backbone_weights(args.weights, workdir / "pretrained-backbone.pth"))
                elif args.weights:
                    base["weights"] = str(args.weights)
                else:
                    base["weights"] = str(pretrained_weights(workdir, base, args.per_class, args.size))
            for name, overrides in variants.items():
                row = run_variant(name, overrides, base, data, workdir)
                results[name].append(row)
                print(
                    f"seed {seed}, {name}: val BP {100 * row['val_bp']:.1f}  test BP {100 * row['test_bp']:.1f}  "
                    f"test mAP {100 * row['test_map']:.1f}  ({row['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"\nrecipe cpu-demo, {args.per_class} images per class at {args.size} px, trained at {args.img_size} px for "
        f"{args.epochs} epochs; mean ± sd over seeds {args.seeds} (each seed its own data, split and training)\n"
    )
    print(markdown(results, KEYS))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
