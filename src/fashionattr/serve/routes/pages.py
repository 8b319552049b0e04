"""The web pages and their files, served from a fixed table read once from the package (never from a path built
out of the URL, which rules out path traversal)."""

from __future__ import annotations

import functools
import mimetypes
from importlib import resources

from fastapi import APIRouter, Response

from fashionattr.serve.errors import ApiError

router = APIRouter(include_in_schema=False)

PAGES = {"/": "index.html", "/catalog": "catalog.html", "/review": "review.html"}


@functools.cache
def static_files() -> dict[str, bytes]:
    """Every file shipped in the package's static folder: the only files the page routes can serve."""
    folder = resources.files("fashionattr.serve").joinpath("static")
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}


def static_response(name: str) -> Response:
    files = static_files()
    if name not in files:
        raise ApiError(404, f"no static file {name!r}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type == "application/javascript":
        media_type += "; charset=utf-8"
    return Response(files[name], media_type=media_type, headers={"Cache-Control": "no-cache"})


def _page(name: str) -> Response:
    return static_response(name)


for _path, _name in PAGES.items():
    router.add_api_route(_path, functools.partial(_page, _name), methods=["GET"], name=f"page_{_name.split('.')[0]}")


@router.get("/static/{name:path}")
def static_file(name: str) -> Response:
    return static_response(name)
