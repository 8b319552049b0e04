"""The demo's figures over several seeds: the scores the README quotes, as mean ± sd, from runs trained with seeds.

Give the runs of `fashionattr demo --seed S --out runs/demo-S` (or any runs of the demo's recipe on a synthetic
dataset, e.g. those `benchmarks/applicability_study.py` trains), each with its own dataset:

    for s in 0 1 2; do fashionattr demo --seed $s --out runs/demo-$s; done
    python benchmarks/seed_figures.py runs/demo-0/run runs/demo-1/run runs/demo-2/run

For each run it runs the commands a user would: `evaluate --split test --tta --complete-labels` (the challenge's
scores, the tags a catalogue shows, the calibration error), the same with `--no-calibration` (the raw error), and
`explain --pointing-game` (where the heatmaps point, validation split), then prints every figure as mean ± sd over
the runs, per attribute where it has one. `--skip-pointing` leaves out the slowest part. `--review` scores a label
review of runs trained with switched labels (`fashionattr demo --seed S --label-noise 0.05`) against the switched
ones the generator recorded (`Annotations/flipped.csv`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def fashionattr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fashionattr", *args], check=True, stdout=subprocess.DEVNULL)


def measure(run: Path, pointing: bool, review: bool = False) -> dict[str, Any]:
    """Every figure of one run, from the files its commands write."""
    from fashionattr.checkpoint import load_checkpoint
    from fashionattr.data.complete_labels import TEST_COMPLETE_RELPATH
    from fashionattr.data.dataset import dataset_of_run
    from fashionattr.run_dir import RunDir

    payload = load_checkpoint(RunDir(run).checkpoint)
    data = dataset_of_run(RunDir(run).checkpoint, payload).path
    calibrated, raw = run / "seed-figures-test", run / "seed-figures-test-raw"
    fashionattr("evaluate", str(run), "--split", "test", "--tta", "--workers", "0", "--out", str(calibrated),
                "--complete-labels", str(data / TEST_COMPLETE_RELPATH))  # fmt: skip
    fashionattr("evaluate", str(run), "--split", "test", "--tta", "--workers", "0", "--no-calibration", "--out",
                str(raw))  # fmt: skip
    scores = json.loads((calibrated / "scores.json").read_text())
    figures: dict[str, Any] = {
        "test BP": scores["basic_precision"], "test mAP": scores["mean_average_precision"],
        "accuracy": {n: e["accuracy"] for n, e in scores["attributes"].items()},
        "ECE calibrated": _mean(scores["expected_calibration_error"].values()),
        "ECE raw": _mean(json.loads((raw / "scores.json").read_text())["expected_calibration_error"].values()),
    }  # fmt: skip
    tags = json.loads((calibrated / "tags.json").read_text())
    figures["tag precision"], figures["tag recall"] = tags["overall"]["precision"], tags["overall"]["recall"]
    if review:
        folder = run / "seed-figures-review"
        fashionattr("review", str(run), "--out", str(folder), "--known-errors",
                    str(data / "Annotations" / "flipped.csv"))  # fmt: skip
        known = json.loads((folder / "review.json").read_text())["known_errors"]
        figures["review precision at the number switched"] = known["precision_at_known"]
        figures["review recall"], figures["review precision"] = known["recall"], known["precision"]
    if pointing:
        fashionattr("explain", str(run), "--pointing-game")
        game = json.loads(RunDir(run).pointing_game.read_text())
        figures["pointing"] = {n: e["score"] for n, e in game["attributes"].items()}
        figures["pointing chance"] = {n: e["chance"] for n, e in game["attributes"].items()}
    return figures


def _mean(values: Any) -> float:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else float("nan")


def spread(values: list[float]) -> str:
    scaled = [100 * v for v in values if v is not None]
    if len(scaled) < 2:
        return f"{scaled[0]:.1f}" if scaled else "n/a"
    return f"{statistics.mean(scaled):.1f} ± {statistics.stdev(scaled):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, one per seed")
    parser.add_argument("--skip-pointing", action="store_true", help="leave out the pointing game")
    parser.add_argument("--review", action="store_true", help="also score a label review against the switched labels")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    results = [measure(run, not args.skip_pointing, args.review) for run in args.runs]
    if args.json:
        args.json.write_text(json.dumps({str(r): f for r, f in zip(args.runs, results, strict=True)}, indent=1))
    print(f"mean ± sd over {len(results)} runs (%)\n")
    keys = ["test BP", "test mAP", "tag precision", "tag recall", "ECE raw", "ECE calibrated"]
    if args.review:
        keys += ["review precision at the number switched", "review recall", "review precision"]
    for key in keys:
        print(f"{key:<40} {spread([r[key] for r in results])}")
    pointing = "pointing" in results[0]
    print("\n| attribute | test accuracy % |" + (" pointing game % | random point % |" if pointing else ""))
    print("|---|---|" + ("---|---|" if pointing else ""))
    for name in results[0]["accuracy"]:
        cells = [spread([r["accuracy"][name] for r in results])]
        if pointing:
            cells += [spread([r["pointing"].get(name) for r in results]),
                      spread([r["pointing chance"].get(name) for r in results])]  # fmt: skip
        print(f"| {name.removesuffix('_labels')} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
