"""The shared objects of one running service, and the FastAPI dependencies through which routes reach them.

`create_app` builds one `Services` and hands it to the application's lifespan, which starts the batcher and puts
the services in the lifespan state; a route asks for what it needs (`PredictorDep`, `CatalogDep`, ...) and gets
it from there, or an `ApiError` saying why it cannot have it (no catalogue on this server: 404; the model's
worker stopped: 503).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from fashionattr.catalog import Catalog
from fashionattr.errors import UserError
from fashionattr.inference import Predictor
from fashionattr.serve.batching import DynamicBatcher
from fashionattr.serve.errors import ApiError, unavailable
from fashionattr.serve.explain import ServedExplainer
from fashionattr.serve.review import ReviewQueueFile
from fashionattr.serve.settings import ServeSettings
from fashionattr.serve.thumbnails import Thumbnails

NO_CATALOG = ("this server has no catalogue; index one with `fashionattr catalog index MODEL DIR --catalog "
              "catalog.sqlite` and start `fashionattr serve` with --catalog catalog.sqlite")  # fmt: skip
NO_REVIEW = ("this server has no review queue; run `fashionattr review MODEL --out REVIEW` and start `fashionattr "
             "serve` with --review REVIEW")  # fmt: skip


@dataclass
class Services:
    """Everything the routes share: the model and its batcher, the catalogue, the review queue, the settings."""

    predictor: Predictor
    catalog: Catalog | None
    settings: ServeSettings
    review: ReviewQueueFile | None = None
    batcher: DynamicBatcher = field(init=False)
    explainer: ServedExplainer = field(init=False)
    thumbnails: Thumbnails | None = field(init=False)
    similar_uploads: bool = field(init=False)
    started: float = field(init=False, default_factory=time.time)
    _decode_slots: asyncio.Semaphore | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        predictor = self.predictor
        self.batcher = DynamicBatcher(
            lambda images, names: predictor.predict_letterboxed(images, names, embed=True),
            max_batch=self.settings.max_batch,
            wait_ms=self.settings.batch_wait_ms,
        )
        self.explainer = ServedExplainer(predictor)
        self.thumbnails = Thumbnails() if self.catalog is not None else None
        self.similar_uploads = catalog_compatible(predictor, self.catalog)

    @property
    def decode_slots(self) -> asyncio.Semaphore:
        """Uploads decoded at once, made on first use inside the running loop."""
        if self._decode_slots is None:
            self._decode_slots = asyncio.Semaphore(self.settings.decode_threads)
        return self._decode_slots


def catalog_compatible(predictor: Predictor, catalog: Catalog | None) -> bool:
    """Whether uploads can be compared with the catalogue: only embeddings of the very same model are."""
    from fashionattr.catalog import files_fingerprint

    if catalog is None:
        return False
    sources = [Path(model["source"]) for model in predictor.describe()["models"]]
    try:
        return files_fingerprint(sources) == catalog.model_fingerprint
    except (OSError, UserError):  # a model file gone or unreadable since loading: no match
        return False


def services(request: Request) -> Services:
    found: Services = request.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def predictor(found: ServicesDep) -> Predictor:
    return found.predictor


def running_batcher(found: ServicesDep) -> DynamicBatcher:
    """The batcher, if its worker runs: without it no image can be predicted (503 until the service restarts)."""
    if not found.batcher.running:
        raise unavailable("the model's worker is not running; the service must be restarted",
                          found.settings.retry_after_s)  # fmt: skip
    return found.batcher


def catalog(found: ServicesDep) -> Catalog:
    if found.catalog is None:
        raise ApiError(404, NO_CATALOG)
    return found.catalog


def review_queue(found: ServicesDep) -> ReviewQueueFile:
    if found.review is None:
        raise ApiError(404, NO_REVIEW)
    return found.review


PredictorDep = Annotated[Predictor, Depends(predictor)]
BatcherDep = Annotated[DynamicBatcher, Depends(running_batcher)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
