"""`python -m fashionattr` (and `torchrun -m fashionattr`) run the command line."""

import sys

from fashionattr.cli import main

sys.exit(main())
