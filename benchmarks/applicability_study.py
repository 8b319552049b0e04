"""Which photos show which attributes: the applicability methods compared on the same runs, over seeds.

For each seed and applicability-head weight: the synthetic dataset (that seed), the `cpu-demo` recipe trained on it
(that seed; weight 0.5 is the recipe's own, 0 trains no head), then every method fitted on the same trained model and
scored on the held-out test images against their complete labels, as a catalogue shows tags (every attribute asked of
every photo). `every tag` is the catalogue before applicability: every attribute of every photo tagged with the head's
top class (`Invisible` included, a value like the others). `categories` keeps only the attributes a product's
category can show (the schema's mapping), on top of the default method. The challenge's own scores (test BP and mAP,
the attribute given) come with each training weight.

    python benchmarks/applicability_study.py --workdir runs/applicability --seeds 0,1,2
    python benchmarks/applicability_study.py --workdir runs/applicability --applicability-weights 0.5 \
        --applicability-negatives 0.25,0.05 --methods head,probe    # lighter negatives for the head

Runs and datasets are reused when present, so a rerun only scores. Prints mean ± sd over the seeds and writes
`study.json` in the work folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

LENGTHS = ("skirt_length_labels", "pant_length_labels", "coat_length_labels")
DESIGNS = ("collar_design_labels", "lapel_design_labels", "neck_design_labels", "neckline_design_labels")


def train_seed(
    workdir: Path,
    seed: int,
    per_class: int,
    epochs: int | None,
    weight: float,
    negatives: float = 1.0,
    img_size: int | None = None,
) -> tuple[Path, Path]:
    from fashionattr.config import resolve_config
    from fashionattr.run_dir import RunDir
    from fashionattr.synthetic.generate import generate_dataset
    from fashionattr.training import train

    suffix = ("" if negatives == 1.0 else f"-n{negatives:g}") + (f"-{img_size}px" if img_size else "")
    data, run = workdir / f"data-{seed}", workdir / f"run-{seed}-w{weight:g}{suffix}"
    if not (data / "Tests" / "complete.csv").is_file():
        generate_dataset(data, per_class=per_class, size=128, seed=seed, progress=False)
    if not RunDir(run).summary.is_file():
        overrides: dict[str, Any] = {"recipe": "cpu-demo", "data": str(data), "out": str(run), "seed": seed,
                                     "split_seed": seed, "progress": False, "applicability_weight": weight,
                                     "applicability_negatives": negatives}  # fmt: skip
        if epochs:
            overrides["epochs"] = epochs
        if img_size:
            overrides["img_size"] = img_size
        train(resolve_config(None, overrides), resume=(run / "last.pt").is_file())
    return data, run


def score_methods(data: Path, run: Path, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Each method fitted on the run's model, and the catalogue's tags scored on the test images."""
    import torch

    from fashionattr.applicability.fitting import fit_applicability
    from fashionattr.applicability.modules import Applicability
    from fashionattr.checkpoint import load_checkpoint
    from fashionattr.data.complete_labels import (
        TEST_CATEGORIES_RELPATH,
        TEST_COMPLETE_RELPATH,
        read_categories,
        read_complete,
    )
    from fashionattr.data.dataset import DatasetRoot
    from fashionattr.evaluation import run_split_records, score_catalogue_tags
    from fashionattr.inference import Predictor
    from fashionattr.run_dir import RunDir
    from fashionattr.training.applicability import embed_records, sample_records

    dataset = DatasetRoot.open(data)
    predictor = Predictor.from_path(run, device="cpu")
    [loaded] = predictor.models
    config = load_checkpoint(RunDir(run).checkpoint)["config"]
    train = run_split_records(RunDir(run), config, dataset, "train")
    val = run_split_records(RunDir(run), config, dataset, "val")
    device = torch.device("cpu")
    fit = embed_records(loaded.model, loaded.preprocessing, dataset.path, dataset.schema, sample_records(train), device)
    held_out = embed_records(
        loaded.model, loaded.preprocessing, dataset.path, dataset.schema, sample_records(val), device
    )
    truth = read_complete(data / TEST_COMPLETE_RELPATH, dataset.schema)
    labelled = {r.path: r.attribute for r in dataset.read_labels(dataset.answers_path)}
    categories = read_categories(data / TEST_CATEGORIES_RELPATH)
    results: dict[str, dict[str, Any]] = {"challenge": challenge_scores(run)}
    head = loaded.model.applicability_head()
    invisible = predictor.invisible
    for method in methods:
        # The catalogue before this decision tagged every attribute of every photo, `Invisible` included.
        predictor.invisible = {} if method == "every tag" else invisible
        if method == "every tag":
            loaded.applicability = Applicability(loaded.attributes, {})
        elif method == "categories" or (method == "head" and head is None):
            continue
        else:
            loaded.applicability = fit_applicability(method, fit, held_out, dataset.schema, loaded.attributes, head)
        scores = score_catalogue_tags(predictor, dataset.path, truth, labelled, workers=0)
        results[method] = summarise(scores.to_dict())
    predictor.invisible = invisible
    if "categories" in methods:
        from fashionattr.applicability import DEFAULT_METHOD

        loaded.applicability = fit_applicability(DEFAULT_METHOD, fit, held_out, dataset.schema, loaded.attributes,
                                                 head)  # fmt: skip
        allowed = dataset.schema.categories
        scores = score_catalogue_tags(predictor, dataset.path, truth, labelled, workers=0,
                                      allowed={p: allowed.get(c, ()) for p, c in categories.items()})  # fmt: skip
        results["categories"] = summarise(scores.to_dict())
    return results


def challenge_scores(run: Path) -> dict[str, Any]:
    """BP and mAP on the test questions, as the challenge asks them (the attribute given): what must not drop."""
    from fashionattr.distributed import DistributedContext
    from fashionattr.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(run, DistributedContext(), subset="test", workers=0, tta=True)
    return {"bp": result.scores.basic_precision, "map": result.scores.mean_average_precision}


def summarise(tags: dict[str, Any]) -> dict[str, Any]:
    """The figures the study compares: overall and worst attribute precision, recall, lengths on close-ups."""
    attributes = tags["attributes"]
    precisions = [entry["precision"] for entry in attributes.values() if entry["precision"] is not None]
    rates = tags["tag_rates"]
    closeups = [rates[group][name] for group in DESIGNS if group in rates for name in LENGTHS]
    return {
        "precision": tags["overall"]["precision"],
        "recall": tags["overall"]["recall"],
        "decision_precision": tags["overall"]["decision_precision"],
        "decision_recall": tags["overall"]["decision_recall"],
        "worst_precision": min(precisions) if precisions else None,
        "lengths_on_closeups": max(closeups) if closeups else None,
        "attributes": {name: {"precision": e["precision"], "recall": e["recall"]} for name, e in attributes.items()},
    }


def spread(values: list[float | None]) -> str:
    present = [100 * v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.1f}"
    return f"{statistics.mean(present):.1f} ± {statistics.stdev(present):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/applicability"))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (data and training)")
    parser.add_argument("--per-class", type=int, default=150, help="synthetic images per class (the demo's 150)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the cpu-demo recipe's)")
    parser.add_argument("--img-size", type=int, help="training size in px (default: the cpu-demo recipe's 64)")
    parser.add_argument("--methods", default="every tag,invisible,mahalanobis,probe,head,categories")
    parser.add_argument(
        "--applicability-weights", default="0,0.5", help="applicability-head loss weights to train with (0: no head)"
    )
    parser.add_argument(
        "--applicability-negatives",
        default="1",
        help="weights of the other attributes' images as the head's negatives to train with (1: the default)",
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    weights = [float(w) for w in args.applicability_weights.split(",")]
    negatives = [float(n) for n in args.applicability_negatives.split(",")]
    trainings = [(w, n) for w in weights for n in (negatives if w else [1.0])]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for weight, negative in trainings:
        key = f"{weight:g}" if negative == 1.0 else f"{weight:g} n{negative:g}"
        for seed in seeds:
            data, run = train_seed(args.workdir, seed, args.per_class, args.epochs, weight, negative, args.img_size)
            results.setdefault(key, {})[seed] = score_methods(data, run, methods)
            print(f"weight {key}, seed {seed}: scored", file=sys.stderr)
            (args.workdir / "study.json").write_text(json.dumps(results, indent=1))  # what is done, if stopped
    print(f"Held-out synthetic test images, mean ± sd over seeds {args.seeds} (%)")
    print(f"{'head weight':<12} {'test BP':>12} {'test mAP':>12}")
    for weight, per_seed in results.items():
        challenge = [per_seed[s]["challenge"] for s in seeds]
        print(f"{weight:<12} {spread([c['bp'] for c in challenge]):>12} {spread([c['map'] for c in challenge]):>12}")
    print("\nTags as a catalogue shows them (every attribute asked of every photo)")
    print(f"{'head weight':<12} {'method':<12} {'precision':>12} {'recall':>12} {'worst attr.':>12} "
          f"{'lengths on close-ups':>21} {'decision precision':>19} {'decision recall':>16}")  # fmt: skip
    for weight, per_seed in results.items():
        for method in methods:
            rows = [per_seed[s][method] for s in seeds if method in per_seed[s]]
            if not rows:
                continue
            print(f"{weight:<12} {method:<12} {spread([r['precision'] for r in rows]):>12} "
                  f"{spread([r['recall'] for r in rows]):>12} {spread([r['worst_precision'] for r in rows]):>12} "
                  f"{spread([r['lengths_on_closeups'] for r in rows]):>21} "
                  f"{spread([r['decision_precision'] for r in rows]):>19} "
                  f"{spread([r['decision_recall'] for r in rows]):>16}")  # fmt: skip
    print("\nper attribute, precision / recall:")
    for weight, per_seed in results.items():
        for method in methods:
            rows = [per_seed[s][method] for s in seeds if method in per_seed[s]]
            if not rows:
                continue
            cells = []
            for name in rows[0]["attributes"]:
                precision = spread([r["attributes"][name]["precision"] for r in rows])
                recall = spread([r["attributes"][name]["recall"] for r in rows])
                cells.append(f"{name.removesuffix('_labels')} {precision} / {recall}")
            print(f"  {weight} {method}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
