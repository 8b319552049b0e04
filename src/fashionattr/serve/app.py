"""The HTTP service: predict attributes of uploaded photos, browse a tagged catalogue, and a web page for both.

`create_app` wires a `Predictor` (and optionally a `Catalog`) into a FastAPI app. Uploads are decoded off the
event loop with the same safe decoder as everything else, and run on the model through one `DynamicBatcher`,
so concurrent requests share forward passes. Every error a client can cause is a 4xx with a JSON body
`{"error": "..."}` that says what to do; the server carries on after each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import mimetypes
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fashionattr import __version__
from fashionattr.data.images import ImageError
from fashionattr.errors import UserError
from fashionattr.parsing import json_nesting_depth
from fashionattr.serve.batching import DynamicBatcher
from fashionattr.serve.explain import add_explain_route
from fashionattr.serve.limits import MAX_JSON_NESTING

if TYPE_CHECKING:
    import torch

    from fashionattr.catalog import Catalog
    from fashionattr.inference import Prediction, Predictor


T = TypeVar("T")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching knobs of the service (the `serve` command's options)."""

    max_upload_mb: float = 10.0
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_images: int = 64
    decode_threads: int = field(default_factory=lambda: min(8, os.cpu_count() or 2))
    """Uploads decoded at once, server-wide: each may briefly hold up to 64 megapixels at full size."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ApiError(Exception):
    """A client error: answered with `status` and `{"error": message, ...extra}`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


# ---------------------------------------------------------------------------------------------------------------
# Request body size limit


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a request body over the limit, by its Content-Length before reading it, else while reading.

    Pure ASGI so it sees the body as it streams in: a multipart parser would otherwise spool the whole upload
    to disk before anyone could look at its size.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (f"the request body is over the {self.max_bytes / 1024 / 1024:g} MB upload limit; send smaller or "
                "fewer images per request (or start the server with a larger --max-upload-mb)")  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, self._message())(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await error_response(413, self._message())(scope, receive, send)


# ---------------------------------------------------------------------------------------------------------------
# Static files


def _static_files() -> dict[str, bytes]:
    """Every file shipped in the package's static folder, read once: the only files the page routes can serve.

    Serving from this fixed table, never from a path built out of the URL, rules out path traversal.
    """
    folder = resources.files("fashionattr.serve").joinpath("static")
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}


def _static_response(files: dict[str, bytes], name: str) -> Response:
    if name not in files:
        raise ApiError(404, f"no static file {name!r}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    return Response(files[name], media_type=media_type, headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------------------------------------------------------
# Reading uploads


REQUEST_FORMATS = (
    'send multipart/form-data with one or more `files` fields, or JSON {"images": [{"name": "photo.jpg", '
    '"data": "<base64>"}]}'
)


async def read_uploads(request: Request, max_images: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart or JSON request, in order."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=max_images + 1)
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        items = [(upload.filename or f"file {n + 1}", await upload.read()) for n, upload in enumerate(uploads)]
        await form.close()
    elif content_type == "application/json":
        items = _json_images(await request.body())
    else:
        raise ApiError(415, f"unsupported content type {content_type or '(none)'!r}; {REQUEST_FORMATS}")
    if not items:
        raise ApiError(422, f"the request holds no image; {REQUEST_FORMATS}")
    if len(items) > max_images:
        raise ApiError(413, f"the request holds {len(items)} images, more than the {max_images} allowed; "
                       "split it into several requests")  # fmt: skip
    return items


def _json_images(body: bytes) -> list[tuple[str, bytes]]:
    depth = json_nesting_depth(body)  # json.loads recurses: 100,000 nested lists would end in a RecursionError
    if depth > MAX_JSON_NESTING:
        raise ApiError(422, f"the JSON body nests {depth} levels deep, more than the {MAX_JSON_NESTING} allowed; "
                       f"{REQUEST_FORMATS}")  # fmt: skip
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not valid JSON ({exc}); {REQUEST_FORMATS}") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        raise ApiError(422, f"the JSON body needs an `images` list; {REQUEST_FORMATS}")
    items = []
    for n, entry in enumerate(images):
        name = entry.get("name") if isinstance(entry, dict) else None
        name = str(name) if name else f"image {n + 1}"
        data = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(data, str):
            raise ApiError(422, f"{name}: `data` must be the image file encoded as a base64 string")
        if data.startswith("data:") and "," in data:  # a browser data: URL
            data = data.split(",", 1)[1]
        try:
            items.append((name, base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(422, f"{name}: `data` is not valid base64; encode the image file's bytes") from None
    return items


async def decode_uploads(items: Sequence[tuple[str, bytes]], prepare: Callable[[bytes, str], T],
                         slots: asyncio.Semaphore) -> list[T]:  # fmt: skip
    """`prepare(data, name)` every upload in worker threads, at most `slots` at once; any bad file fails the request.

    `prepare` decodes and shrinks an image to what the model takes, so that the server holds an image at full
    size only while a slot decodes it: a request of many small files that each declare tens of megapixels
    (PNG compresses a plain 64-megapixel image to 200 KB) cannot make it hold them all at once. Measured: forty
    such files in one request took a server from 0.9 GB to 12 GB before; see docs/reliability.md.
    """

    async def one(name: str, data: bytes) -> T:
        async with slots:
            return await asyncio.to_thread(prepare, data, name)

    decoded = await asyncio.gather(*(one(name, data) for name, data in items), return_exceptions=True)
    failures = [result for result in decoded if isinstance(result, ImageError)]
    if failures:
        names = "; ".join(f"{e.path}: {e.reason}" for e in failures)
        raise ApiError(422, f"cannot use {names}. Send JPEG, PNG, WebP, BMP, GIF or TIFF photos.",
                       files=[{"name": e.path, "reason": e.reason} for e in failures])  # fmt: skip
    for result in decoded:
        if isinstance(result, BaseException):
            raise result
    return list(decoded)  # type: ignore[arg-type]


def letterboxed_upload(predictor: Predictor, data: bytes, name: str) -> list[torch.Tensor]:
    """One upload as the model's inputs, by the one preprocessing function: the pixels of training and `predict`."""
    return predictor.load(data, name)


# ---------------------------------------------------------------------------------------------------------------
# The app


def _catalog_compatible(predictor: Predictor, catalog: Catalog | None) -> bool:
    """Whether uploads can be compared with the catalogue: only embeddings of the very same model are."""
    from fashionattr.catalog import files_fingerprint

    if catalog is None:
        return False
    sources = [Path(model["source"]) for model in predictor.describe()["models"]]
    try:
        return files_fingerprint(sources) == catalog.model_fingerprint
    except (OSError, UserError):  # a model file gone or unreadable since loading: no match
        return False


def create_app(predictor: Predictor, catalog: Catalog | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The service for one predictor, with the catalogue routes when a catalogue is given."""
    settings = settings or ServeSettings()
    batcher = DynamicBatcher(lambda images, names: predictor.predict_letterboxed(images, names, embed=True),
                             max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms)  # fmt: skip
    decode_slots = asyncio.Semaphore(settings.decode_threads)
    static = _static_files()
    similar_uploads = _catalog_compatible(predictor, catalog)
    started = time.time()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPIOffline(  # /docs and /redoc from assets installed with the package: they work without internet
        title="fashionattr",
        version=__version__,
        description="Apparel attribute recognition: every attribute's value and class probabilities for product "
        "photos, and a tagged catalogue to browse by tags and likeness.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.predictor = predictor
    app.state.catalog = catalog
    app.state.similar_uploads = similar_uploads
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    _add_error_handlers(app)

    async def predict_uploads(request: Request) -> list[Prediction]:
        items = await read_uploads(request, settings.max_images)
        images = await decode_uploads(items, functools.partial(letterboxed_upload, predictor), decode_slots)
        return await batcher.submit(images, [name for name, _ in items])

    upload_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "application/json": {"schema": {"type": "object", "properties": {"images": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"},
                                             "data": {"type": "string", "format": "byte"}}}}}}},
    }}}  # fmt: skip

    @app.post("/v1/predict", openapi_extra=upload_body, tags=["predict"])
    async def predict(request: Request) -> dict[str, Any]:
        """Every attribute's value, confidence, uncertain flag and class probabilities for each uploaded image."""
        begin = time.perf_counter()
        predictions = await predict_uploads(request)
        return {"predictions": [p.to_dict() for p in predictions],
                "elapsed_ms": round((time.perf_counter() - begin) * 1000, 1)}  # fmt: skip

    add_explain_route(app, predictor, functools.partial(read_uploads, max_images=1))

    @app.get("/v1/schema", tags=["predict"])
    def schema() -> dict[str, Any]:
        """Attributes and their classes in order, the models behind them, and what the catalogue offers."""
        return {**predictor.describe(), "short_names": {a: a.removesuffix("_labels") for a in predictor.attributes},
                "min_confidence": predictor.min_confidence, "tta": predictor.tta,
                "catalog": catalog is not None, "similar_uploads": similar_uploads}  # fmt: skip

    @app.api_route("/healthz", methods=["GET", "HEAD"], tags=["service"])  # health checkers often send HEAD
    def healthz() -> dict[str, Any]:
        """Liveness plus batching counters (`multi_image_batches` > 0 shows requests sharing forward passes)."""
        return {"status": "ok", "version": __version__, "uptime_s": round(time.time() - started, 1),
                "attributes": len(predictor.attributes), "batching": batcher.stats.to_dict(),
                "catalog_items": len(catalog) if catalog is not None else None}  # fmt: skip

    @app.get("/", include_in_schema=False)
    def index_page() -> Response:
        return _static_response(static, "index.html")

    @app.get("/catalog", include_in_schema=False)
    def catalog_page() -> Response:
        return _static_response(static, "catalog.html")

    @app.get("/static/{name:path}", include_in_schema=False)
    def static_file(name: str) -> Response:
        return _static_response(static, name)

    if catalog is not None:
        _add_catalog_routes(app, catalog, predict_uploads, similar_uploads)
    else:

        @app.api_route("/v1/catalog/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
        def no_catalog(rest: str) -> Response:
            raise ApiError(404, "this server has no catalogue; index one with `fashionattr catalog index DIR "
                           "--model CKPT --db catalog.sqlite` and start `fashionattr serve` with --catalog "
                           "catalog.sqlite")  # fmt: skip

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": sentence}`: FastAPI's defaults ({"detail": ...}) vary in shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, **exc.extra)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, f"nothing at {request.url.path}; see /docs for the API")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} is not allowed on {request.url.path}; see /docs")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The connection closed mid-body (the client left, or the body timeout shut it): no one reads this answer,
        # and it is no server error.
        return error_response(400, "the client disconnected before the whole request arrived")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__}: {exc}); the server log has the details")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{' '.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(422, f"invalid request: {problems}")


def _add_catalog_routes(app: FastAPI, catalog: Catalog, predict_uploads: Any, similar_uploads: bool) -> None:
    """Facets, search, similar items and the indexed images themselves (by database id only)."""

    def filters_from(expressions: list[str] | None) -> dict[str, str]:
        return catalog.parse_filters(expressions or [])

    @app.get("/v1/catalog", tags=["catalog"])
    def catalog_info() -> dict[str, Any]:
        """Size of the catalogue, its attributes and classes, and unreadable files found while indexing."""
        return {"items": len(catalog), "root_name": catalog.root.name, "model": Path(catalog.model).name,
                "attributes": {a.name: list(a.classes) for a in catalog.schema}, "errors": len(catalog.errors()),
                "similar_uploads": similar_uploads}  # fmt: skip

    @app.get("/v1/catalog/facets", tags=["catalog"])
    def facets(
        filter: FilterQuery = None,
        min_confidence: ConfidenceQuery = 0.0,
    ) -> dict[str, Any]:
        """For each attribute, item counts per value given the other attributes' active filters, and how many of
        those items have no value for it (`no_value`: the attribute does not apply to the photo, or its tag is below
        min_confidence; `not_applicable`: the part of them it does not apply to)."""
        active, counts = filters_from(filter), catalog.facet_counts(filters_from(filter), min_confidence)
        return {"filters": active, "total": counts.total, "facets": counts.counts, "no_value": counts.no_value,
                "not_applicable": counts.not_applicable}  # fmt: skip

    @app.get("/v1/catalog/search", tags=["catalog"])
    def search(
        filter: FilterQuery = None,
        min_confidence: ConfidenceQuery = 0.0,
        limit: Annotated[int, Query(ge=1, le=500)] = 48,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Items carrying every filtered tag, most confident first."""
        active = filters_from(filter)
        result = catalog.search(active, min_confidence, limit=limit, offset=offset)
        return {"filters": active, "total": result.total, "offset": offset,
                "items": [_item_json(item) for item in result.items]}  # fmt: skip

    @app.get("/v1/catalog/items/{item_id}", tags=["catalog"])
    def item(item_id: str) -> dict[str, Any]:
        """One item with every attribute's class probabilities."""
        found = catalog.item(_parse_id(item_id), probabilities=True)
        if found is None:
            raise ApiError(404, f"no catalogue item {item_id}")
        return _item_json(found)

    @app.get("/v1/catalog/similar/{item_id}", tags=["catalog"])
    def similar(item_id: str, k: CountQuery = 12) -> dict[str, Any]:
        """The k items most like this one (itself first), by cosine similarity of embeddings."""
        found = catalog.item(_parse_id(item_id))
        if found is None:
            raise ApiError(404, f"no catalogue item {item_id}")
        return {"query": _item_json(found), "results": _similar_json(catalog.similar(found.id, k))}

    @app.post("/v1/catalog/similar", openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"files": {"type": "string",
                                                                                        "format": "binary"}}}}}}},
        tags=["catalog"])  # fmt: skip
    async def similar_upload(request: Request, k: CountQuery = 12) -> dict[str, Any]:
        """Catalogue items most like an uploaded photo (needs the server's model to be the catalogue's)."""
        if not similar_uploads:
            raise ApiError(409, "the catalogue was indexed with another model than this server runs, so their "
                           "embeddings cannot be compared; serve the catalogue's model to search by photo")  # fmt: skip
        predictions = await predict_uploads(request)
        results = await asyncio.to_thread(catalog.similar, predictions[0].embedding, k)
        return {"query": predictions[0].to_dict(), "results": _similar_json(results)}

    @app.get("/v1/catalog/image/{item_id}", tags=["catalog"])
    def image(item_id: str) -> FileResponse:
        """The image file of an item, looked up by id and served only if it lies inside the indexed folder."""
        path = catalog.image_file(_parse_id(item_id))
        if path is None:
            raise ApiError(404, f"no catalogue image {item_id}")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


FilterQuery = Annotated[
    list[str] | None,
    Query(description="a tag to match, as attribute=value (short attribute names allowed); repeat for several"),
]
ConfidenceQuery = Annotated[float, Query(ge=0.0, le=1.0, description="count a tag only at this probability or more")]
CountQuery = Annotated[int, Query(ge=1, le=200, description="how many similar items to return")]
MAX_OFFSET = 10**9
"""Every integer parameter is bounded: SQLite's integers end at 2**63, and a larger one answered 500."""


def _parse_id(text: str) -> int:
    """Ids are plain decimal numbers; anything else (a path, `..`, an encoded slash) is simply not found."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no catalogue item {text!r}; items are addressed by their numeric id")
    return int(text)


def _item_json(item: Any) -> dict[str, Any]:
    return {**item.to_dict(), "image_url": f"/v1/catalog/image/{item.id}"}


def _similar_json(results: Sequence[tuple[Any, float]]) -> list[dict[str, Any]]:
    return [{**_item_json(item), "similarity": round(score, 6)} for item, score in results]
