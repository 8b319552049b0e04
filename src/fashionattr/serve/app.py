"""The HTTP service: predict attributes of uploaded photos, browse a tagged catalogue, review labels, and the pages.

`create_app` wires a `Predictor` (and optionally a `Catalog` and a review queue) into a FastAPI app made of one
router per area (`fashionattr.serve.routes`); the routes reach the shared objects through dependencies
(`fashionattr.serve.services`). Uploads are decoded off the event loop with the same safe decoder as everything
else (`uploads`), and run on the model through one `DynamicBatcher`, so concurrent requests share forward passes.
Every error is `{"error": "..."}` (`errors`), declared in /openapi.json; the server carries on after each.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from fashionattr import __version__
from fashionattr.serve.errors import add_error_handlers
from fashionattr.serve.limits import BodySizeLimit
from fashionattr.serve.routes import catalog as catalog_routes
from fashionattr.serve.routes import explain, health, pages, predict
from fashionattr.serve.routes import review as review_routes
from fashionattr.serve.services import Services
from fashionattr.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fashionattr.catalog import Catalog
    from fashionattr.inference import Predictor
    from fashionattr.serve.review import ReviewQueueFile

API_VERSION = "v1"
"""The prefix of every API route (`/v1/...`); a change that breaks clients gets a new one beside it."""


def operation_id(route: APIRoute) -> str:
    """The operation id of a route in /openapi.json: its function's name, unique across the routers (a test checks)."""
    return route.name


def create_app(predictor: Predictor, catalog: Catalog | None = None, settings: ServeSettings | None = None,
               review: ReviewQueueFile | None = None) -> FastAPI:  # fmt: skip
    """The service for one predictor, with the catalogue's routes answering when a catalogue is given."""
    services = Services(predictor, catalog, settings or ServeSettings(), review)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await services.batcher.start()
        yield {"services": services}
        await services.batcher.stop()

    app = FastAPIOffline(  # /docs and /redoc from assets installed with the package: they work without internet
        title="fashionattr",
        version=__version__,
        description="Apparel attribute recognition: every attribute's value and class probabilities for product "
        "photos, a tagged catalogue to browse by tags and likeness, and a label review queue. Every error is "
        '`{"error": "<sentence>"}`; 503 (with `Retry-After`) means a part the endpoint needs is down.',
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.add_middleware(BodySizeLimit, max_bytes=services.settings.max_upload_bytes)
    add_error_handlers(app, services.settings.retry_after_s)
    for area in (predict, explain, catalog_routes, review_routes, health, pages):
        app.include_router(area.router)
    return app
