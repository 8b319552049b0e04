#!/usr/bin/env bash
# Run every benchmark figure and keep the printout and the JSON report beside this script.
#   benchmarks/run_all.sh            full run (about ten minutes on two CPU cores, plus the catalogue figures:
#                                    over an hour at 1M items; --catalog-sizes 10000,100000 keeps it short)
#   benchmarks/run_all.sh --quick    smaller sizes, no torch.compile (about two minutes)
# Extra arguments go to `fashionattr bench` (see `fashionattr bench --help`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# PyTorch's OpenMP threads spin while idle by default; on a shared machine that steals the cores the
# measurement needs. An explicit setting in the environment wins.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
device="$(python -c 'import torch; print("gpu" if torch.cuda.is_available() else "cpu")')"
suffix=""
for arg in "$@"; do [[ "$arg" == "--quick" ]] && suffix="-quick"; done
fashionattr bench --json "$here/results-$device$suffix.json" "$@" | tee "$here/results-$device$suffix.txt"
