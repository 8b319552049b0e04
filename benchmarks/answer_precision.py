"""How many digits an answer file needs: AP of a confident model, from memory and from the file written two ways.

A simulated attribute (8 classes): each answer's top-class margin grows with a hidden confidence, and so does its
chance of being right, so the ranking by top probability carries information all the way up. 80% of the answers
are so confident that six decimals print their top probability as 1.000000; the old writer made all of those one
tied group, the current one (`write_submission`, shortest round-trip decimals) keeps them apart.

    python benchmarks/answer_precision.py [--rows 5000] [--saturated 0.8] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fashionattr.metrics import average_precision
from fashionattr.schema import FASHIONAI
from fashionattr.submission import read_submission, write_submission

ATTRIBUTE = "coat_length_labels"


def simulate(rows: int, saturated: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (float32 softmax, as a model gives them) and targets; `saturated` share print as 1.000000."""
    rng = np.random.default_rng(seed)
    classes = FASHIONAI.attribute(ATTRIBUTE).num_classes
    confidence = rng.random(rows)
    # Margins of 16 and more put the top probability within 5e-7 of 1, where six decimals print 1.000000.
    cut = np.quantile(confidence, 1 - saturated)
    margin = np.where(confidence >= cut, 16 + 6 * (confidence - cut) / (1 - cut), 1 + 15 * confidence / cut)
    right = rng.random(rows) < 0.55 + 0.45 * confidence
    targets = rng.integers(0, classes, rows)
    predicted = np.where(right, targets, (targets + rng.integers(1, classes, rows)) % classes)
    logits = rng.normal(0, 0.3, (rows, classes))
    logits[np.arange(rows), predicted] += margin
    logits = logits.astype(np.float32)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32), targets


def six_decimals(probabilities: np.ndarray) -> np.ndarray:
    """What the earlier writer put in the file: rounded to 1e-6, the residue given to the largest class."""
    rounded = np.round(probabilities.astype(np.float64), 6)
    largest = rounded.argmax(axis=1)
    rows = np.arange(len(rounded))
    rounded[rows, largest] = np.round(1.0 - (rounded.sum(axis=1) - rounded[rows, largest]), 6)
    return rounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--saturated", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    probabilities, targets = simulate(args.rows, args.saturated, args.seed)
    no_maybe = np.zeros(probabilities.shape, dtype=bool)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "answers.csv"
        rows = [(f"Images/{ATTRIBUTE}/{n:05d}.jpg", ATTRIBUTE) for n in range(args.rows)]
        write_submission(path, rows, list(probabilities), FASHIONAI)
        from_file = np.stack([vector for _, _, vector in read_submission(path, FASHIONAI)])
        size = path.stat().st_size
    old = six_decimals(probabilities)
    top_old = old.max(axis=1)
    print(f"{args.rows} answers, {np.mean(top_old == 1.0):.0%} printed as 1.000000 with six decimals")
    print(f"AP from the model's output:        {average_precision(probabilities, targets, no_maybe):.4f}")
    print(f"AP from a six-decimal answer file: {average_precision(old, targets, no_maybe):.4f}")
    print(f"AP from the answer file now:       {average_precision(from_file, targets, no_maybe):.4f} "
          f"({size / args.rows:.0f} bytes a row; read back bit for bit: "
          f"{bool(np.array_equal(from_file, probabilities.astype(np.float64)))})")  # fmt: skip


if __name__ == "__main__":
    main()
