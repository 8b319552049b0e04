"""The speed figures alone (a-e, no memory or GPU section): `python benchmarks/speedups.py [--quick]`.

A thin front for `fashionattr bench --only a,b,c,d,e`; extra arguments pass through.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fashionattr.cli import main

    sys.exit(main(["bench", "--only", "a,b,c,d,e", *sys.argv[1:]]))
