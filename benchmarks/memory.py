"""Peak memory of training and predict, and that predict stays flat over 4x the images: `python benchmarks/memory.py`.

A thin front for `fashionattr bench --only mem`; extra arguments pass through (e.g. `--memory-images 2000`).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fashionattr.cli import main

    sys.exit(main(["bench", "--only", "mem", *sys.argv[1:]]))
