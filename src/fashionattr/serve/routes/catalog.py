"""The catalogue: facets, search, items, similar items, the images and thumbnails (by id only), and export.

Every route needs the server to have a catalogue (`serve --catalog DB`; 404 saying how otherwise); a catalogue
whose database is down answers 503 with `Retry-After` (see `fashionattr.serve.errors`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import mimetypes
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from fashionattr.catalog import Catalog, CatalogItem
from fashionattr.data.images import ImageError
from fashionattr.serve.errors import COMMON_ERRORS, ApiError, error_responses
from fashionattr.serve.responses import (
    CatalogInfo,
    FacetsResponse,
    HeatmapResponse,
    Item,
    SearchResponse,
    SimilarItem,
    SimilarResponse,
    SimilarUploadResponse,
)
from fashionattr.serve.routes.predict import prediction_entry
from fashionattr.serve.services import BatcherDep, CatalogDep, ServicesDep
from fashionattr.serve.thumbnails import DEFAULT_SIDE, THUMBNAIL_SIDES
from fashionattr.serve.uploads import ONE_UPLOAD_BODY, decode_uploads, image_problem, read_one_upload

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], responses={**COMMON_ERRORS, **error_responses(404)})

FilterQuery = Annotated[
    list[str] | None,
    Query(description="a tag to match, as attribute=value (short attribute names allowed); repeat for several"),
]
ConfidenceQuery = Annotated[float, Query(ge=0.0, le=1.0, description="count a tag only at this probability or more")]
CountQuery = Annotated[int, Query(ge=1, le=200, description="how many similar items to return")]
MAX_OFFSET = 10**9
"""Every integer parameter is bounded: SQLite's integers end at 2**63, and a larger one answered 500."""
EXPORT_PAGE = 500
IMAGE_TYPES: dict[str, Any] = {"image/jpeg": {}, "image/png": {}, "image/webp": {}, "application/octet-stream": {}}


def parse_id(text: str) -> int:
    """Ids are plain decimal numbers; anything else (a path, `..`, an encoded slash) is simply not found."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no catalogue item {text!r}; items are addressed by their numeric id")
    return int(text)


def item_json(item: CatalogItem) -> dict[str, Any]:
    return {**item.to_dict(), "image_url": f"/v1/catalog/image/{item.id}",
            "thumbnail_url": f"/v1/catalog/thumbnail/{item.id}?v={item.sha256[:16]}"}  # fmt: skip


def similar_json(results: Sequence[tuple[CatalogItem, float]]) -> list[SimilarItem]:
    return [SimilarItem.model_validate({**item_json(item), "similarity": round(score, 6)}) for item, score in results]


def find_item(catalog: Catalog, item_id: str, probabilities: bool = False) -> CatalogItem:
    found = catalog.item(parse_id(item_id), probabilities=probabilities)
    if found is None:
        raise ApiError(404, f"no catalogue item {item_id}")
    return found


def no_value_counts(catalog: Catalog, filters: dict[str, str], min_confidence: float) -> dict[str, int] | None:
    """Per attribute, the items (under the other filters) that have no value for it, where the catalogue counts
    them (`Catalog.no_value_counts`); None from a catalogue version that does not."""
    counter = getattr(catalog, "no_value_counts", None)
    return dict(counter(filters, min_confidence)) if counter is not None else None


@router.get("")
def catalog_info(found: ServicesDep, catalog: CatalogDep) -> CatalogInfo:
    """Size of the catalogue, its attributes and classes, and unreadable files found while indexing."""
    return CatalogInfo(items=len(catalog), root_name=catalog.root.name, model=catalog.model.rsplit("/", 1)[-1],
                       attributes={a.name: list(a.classes) for a in catalog.schema}, errors=len(catalog.errors()),
                       similar_uploads=found.similar_uploads)  # fmt: skip


@router.get("/facets")
def facets(catalog: CatalogDep, filter: FilterQuery = None, min_confidence: ConfidenceQuery = 0.0) -> FacetsResponse:
    """For each attribute, item counts per value given the other attributes' active filters.

    Only tags that apply to their photo are counted; `no_value` says, per attribute, how many items have none.
    """
    active = catalog.parse_filters(filter or [])
    return FacetsResponse(filters=active, total=catalog.search(active, min_confidence, limit=0).total,
                          facets=catalog.facets(active, min_confidence),
                          no_value=no_value_counts(catalog, active, min_confidence))  # fmt: skip


@router.get("/search")
def search(
    catalog: CatalogDep,
    filter: FilterQuery = None,
    min_confidence: ConfidenceQuery = 0.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 48,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SearchResponse:
    """Items carrying every filtered tag, most confident first."""
    active = catalog.parse_filters(filter or [])
    result = catalog.search(active, min_confidence, limit=limit, offset=offset)
    return SearchResponse.model_validate({"filters": active, "total": result.total, "offset": offset,
                                          "items": [item_json(item) for item in result.items]})  # fmt: skip


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"description": "the matching items, one per line or row",
                             "content": {"text/csv": {}, "application/x-ndjson": {}}}})  # fmt: skip
def export(
    catalog: CatalogDep,
    filter: FilterQuery = None,
    min_confidence: ConfidenceQuery = 0.0,
    format: Annotated[
        Literal["csv", "jsonl"], Query(description="csv: a row per item; jsonl: an object per line")
    ] = "csv",
) -> StreamingResponse:
    """Every item matching the filters (not just one page), as CSV or JSON lines, most confident first.

    CSV columns: id, path, sha256, size, then for each attribute its value (empty where it does not apply) and
    `<attribute> confidence`.
    """
    active = catalog.parse_filters(filter or [])
    lines = _csv_lines(catalog, active, min_confidence) if format == "csv" else _jsonl_lines(
        catalog, active, min_confidence)  # fmt: skip
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"catalog-{time.strftime('%Y%m%d-%H%M%S')}.{format}"
    return StreamingResponse(lines, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _all_items(catalog: Catalog, filters: dict[str, str], min_confidence: float) -> Iterator[CatalogItem]:
    offset = 0
    while True:
        page = catalog.search(filters, min_confidence, limit=EXPORT_PAGE, offset=offset)
        yield from page.items
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return


def _csv_lines(catalog: Catalog, filters: dict[str, str], min_confidence: float) -> Iterator[str]:
    names = catalog.schema.names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["id", "path", "sha256", "size", *(f"{n}{suffix}" for n in names for suffix in ("", " confidence"))]
    )
    for item in _all_items(catalog, filters, min_confidence):
        cells: list[Any] = [item.id, item.path, item.sha256, item.size]
        for name in names:
            tag = item.tags.get(name)
            shown = tag is not None and tag.value is not None and getattr(tag, "applies", True)
            cells += [tag.value if shown and tag else "", f"{tag.confidence:.6f}" if tag else ""]
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _jsonl_lines(catalog: Catalog, filters: dict[str, str], min_confidence: float) -> Iterator[str]:
    for item in _all_items(catalog, filters, min_confidence):
        yield json.dumps(item.to_dict(), ensure_ascii=False, allow_nan=False) + "\n"


@router.get("/items/{item_id}")
def item(catalog: CatalogDep, item_id: str) -> Item:
    """One item with every attribute's class probabilities."""
    return Item.model_validate(item_json(find_item(catalog, item_id, probabilities=True)))


@router.get("/items/{item_id}/heatmap", responses=error_responses(409))
async def item_heatmap(
    found: ServicesDep,
    catalog: CatalogDep,
    item_id: str,
    attribute: Annotated[str, Query(description="the attribute to explain (short names work)")],
    class_name: Annotated[str | None, Query(alias="class", description="a class (default: the predicted one)")] = None,
) -> HeatmapResponse:
    """Where the served model looks for one attribute in a catalogue image (PyTorch models only: 409 otherwise)."""
    begin = time.perf_counter()
    found.explainer.get()
    path = catalog.image_file(find_item(catalog, item_id).id)
    if path is None:
        raise ApiError(404, f"the image of catalogue item {item_id} is no longer in the indexed folder")
    data = await asyncio.to_thread(path.read_bytes)
    async with found.explainer.busy:
        answer = await asyncio.to_thread(found.explainer.explain, data, path.name, attribute, class_name)
    return HeatmapResponse.model_validate({**answer, "elapsed_ms": round((time.perf_counter() - begin) * 1000, 1)})


@router.get("/similar/{item_id}")
def similar(catalog: CatalogDep, item_id: str, k: CountQuery = 12) -> SimilarResponse:
    """The k items most like this one (itself first), by cosine similarity of embeddings."""
    found = find_item(catalog, item_id)
    return SimilarResponse(
        query=Item.model_validate(item_json(found)), results=similar_json(catalog.similar(found.id, k))
    )


@router.post("/similar", openapi_extra=ONE_UPLOAD_BODY, responses=error_responses(409, 413, 415))
async def similar_upload(request: Request, found: ServicesDep, catalog: CatalogDep, batcher: BatcherDep,
                         k: CountQuery = 12) -> SimilarUploadResponse:  # fmt: skip
    """Catalogue items most like an uploaded photo (needs the server's model to be the catalogue's: 409 otherwise)."""
    if not found.similar_uploads:
        raise ApiError(409, "the catalogue was indexed with another model than this server runs, so their "
                       "embeddings cannot be compared; serve the catalogue's model to search by photo")  # fmt: skip
    upload = await read_one_upload(request)
    [decoded] = await decode_uploads([upload], found.predictor.load, found.decode_slots)
    if isinstance(decoded, ImageError):
        raise ApiError(422, image_problem(decoded))
    [prediction] = await batcher.submit([decoded], [upload.name])
    results = await asyncio.to_thread(catalog.similar, prediction.embedding, k)
    return SimilarUploadResponse(query=prediction_entry(prediction), results=similar_json(results))


@router.get("/image/{item_id}", response_class=FileResponse,
            responses={200: {"description": "the image file", "content": IMAGE_TYPES}})  # fmt: skip
def image(catalog: CatalogDep, item_id: str) -> FileResponse:
    """The image file of an item, looked up by id and served only if it lies inside the indexed folder."""
    path = catalog.image_file(parse_id(item_id))
    if path is None:
        raise ApiError(404, f"no catalogue image {item_id}")
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


@router.get("/thumbnail/{item_id}", response_class=Response,
            responses={200: {"description": "a JPEG of the image, its longer side at most `size`",
                             "content": {"image/jpeg": {}}}})  # fmt: skip
async def thumbnail(
    found: ServicesDep,
    catalog: CatalogDep,
    item_id: str,
    size: Annotated[
        int, Query(description=f"longer side in pixels, one of {', '.join(map(str, THUMBNAIL_SIDES))}")
    ] = DEFAULT_SIDE,
    v: Annotated[str | None, Query(description="the content version (part of the item's sha256), for caching")] = None,
) -> Response:
    """A small JPEG of an item's image, made once per content and size and cached (by the browser too)."""
    if size not in THUMBNAIL_SIDES:
        raise ApiError(422, f"size must be one of {', '.join(map(str, THUMBNAIL_SIDES))}, not {size}")
    entry = find_item(catalog, item_id)
    path = catalog.image_file(entry.id)
    if path is None or found.thumbnails is None:
        raise ApiError(404, f"no catalogue image {item_id}")
    try:
        data = await asyncio.to_thread(found.thumbnails.get, entry.sha256, path, size)
    except ImageError as exc:
        raise ApiError(404, f"catalogue item {item_id} has no usable image: {exc.reason}") from None
    versioned = v is not None and v == entry.sha256[: len(v)] and len(v) >= 8
    cache = "public, max-age=31536000, immutable" if versioned else "no-cache"
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": cache, "ETag": f'"{entry.sha256}-{size}"'})
