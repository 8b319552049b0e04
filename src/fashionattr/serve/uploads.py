"""Reading the images of a request: multipart `files` fields or a JSON list of base64 images, decoded off the loop.

A request that cannot be read as a whole (wrong content type, no image, malformed JSON, too many images) is one
error; an image that cannot be used (not an image, truncated, a decompression bomb, bad base64) is an error of
that image only, so a batch answers every good image and names each bad one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.datastructures import UploadFile
from starlette.requests import Request

from fashionattr.data.images import ImageError
from fashionattr.parsing import json_nesting_depth
from fashionattr.serve.errors import ApiError
from fashionattr.serve.limits import MAX_JSON_NESTING

T = TypeVar("T")

REQUEST_FORMATS = (
    'send multipart/form-data with one or more `files` fields, or JSON {"images": [{"name": "photo.jpg", '
    '"data": "<base64>"}]}'
)
ACCEPTED_IMAGES = "Send JPEG, PNG, WebP, BMP, GIF or TIFF photos."


@dataclass(frozen=True)
class Upload:
    """One image of a request: its name and bytes, or why its bytes could not even be read (bad base64)."""

    name: str
    data: bytes = b""
    problem: str | None = None


def _schema_of_uploads(multiple: bool) -> dict[str, Any]:
    files: dict[str, Any] = {"type": "string", "format": "binary"}
    if multiple:
        files = {"type": "array", "items": files}
    image = {"type": "object", "required": ["data"],
             "properties": {"name": {"type": "string"}, "data": {"type": "string", "format": "byte"}}}  # fmt: skip
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {"files": files}}},
        "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {"images": {
            "type": "array", "items": image, "minItems": 1, **({} if multiple else {"maxItems": 1})}}}},
    }}}  # fmt: skip


UPLOADS_BODY = _schema_of_uploads(multiple=True)
"""The OpenAPI request body of an endpoint taking images (the route reads the request itself)."""
ONE_UPLOAD_BODY = _schema_of_uploads(multiple=False)


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """Every image of a multipart or JSON request, in order."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=max_images + 1)
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        items = [Upload(upload.filename or f"file {n + 1}", await upload.read()) for n, upload in enumerate(files)]
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


async def read_one_upload(request: Request) -> Upload:
    """The single image of a request that takes one (explain, search by photo); a bad one fails the request."""
    items = await read_uploads(request, max_images=1)
    if items[0].problem:
        raise ApiError(422, f"cannot use {items[0].name}: {items[0].problem}. {ACCEPTED_IMAGES}")
    return items[0]


def _json_images(body: bytes) -> list[Upload]:
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
            items.append(Upload(name, base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError):
            items.append(Upload(name, problem="`data` is not valid base64; encode the image file's bytes"))
    return items


async def decode_uploads(items: Sequence[Upload], prepare: Callable[[bytes, str], T],
                         slots: asyncio.Semaphore) -> list[T | ImageError]:  # fmt: skip
    """`prepare(data, name)` every upload in worker threads, at most `slots` at once; a bad file is its ImageError.

    `prepare` decodes and shrinks an image to what the model takes, so that the server holds an image at full
    size only while a slot decodes it: a request of many small files that each declare tens of megapixels
    (PNG compresses a plain 64-megapixel image to 200 KB) cannot make it hold them all at once. Measured: forty
    such files in one request took a server from 0.9 GB to 12 GB before; see docs/reliability.md.
    """

    async def one(item: Upload) -> T | ImageError:
        if item.problem:
            return ImageError(item.name, item.problem)
        async with slots:
            try:
                return await asyncio.to_thread(prepare, item.data, item.name)
            except ImageError as exc:
                return exc

    return list(await asyncio.gather(*(one(item) for item in items)))


def image_problem(error: ImageError) -> str:
    """The sentence for an image the service cannot use."""
    return f"cannot use {error.path}: {error.reason}. {ACCEPTED_IMAGES}"
