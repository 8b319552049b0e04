"""Run under torchrun by tests/test_catalog_postgres.py: `catalog index` into PostgreSQL, rank 1 killed midway.

Rank 1 SIGKILLs itself after its first batch is written, as a lost machine or an out-of-memory kill would;
torchrun then stops the other rank. What was written stays, and the rerun must tag what is missing.
"""

import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from fashionattr.catalog import index_catalog
from fashionattr.distributed import init_distributed
from fashionattr.inference import Predictor

BATCH = 2


class KilledAfterOneBatch:
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict_paths(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, entry in enumerate(self.predictor.predict_paths(*args, **kwargs)):
            if n == BATCH:  # the first batch went to the database when this entry was asked for
                os.kill(os.getpid(), signal.SIGKILL)
            yield entry


def main(folder: str, db: str, model: str) -> None:
    context = init_distributed("cpu")
    predictor: Any = Predictor.from_path(model, device="cpu")
    if context.rank == 1:
        predictor = KilledAfterOneBatch(predictor)
    index_catalog(db, folder, model, predictor=predictor, batch_size=BATCH, workers=0, progress=False,
                  context=context)  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:4])
