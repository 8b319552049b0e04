"""Heatmaps: `POST /v1/explain?attribute=A[&class=C]` with one photo, the map of where the model looks laid over it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from fashionattr.serve.errors import COMMON_ERRORS, error_responses
from fashionattr.serve.responses import HeatmapResponse
from fashionattr.serve.services import ServicesDep
from fashionattr.serve.uploads import ONE_UPLOAD_BODY, read_one_upload

router = APIRouter(prefix="/v1", tags=["predict"], responses=COMMON_ERRORS)


@router.post("/explain", openapi_extra=ONE_UPLOAD_BODY, responses=error_responses(409, 413, 415))
async def explain(
    request: Request,
    found: ServicesDep,
    attribute: Annotated[str, Query(description="the attribute to explain (short names work)")],
    class_name: Annotated[str | None, Query(alias="class", description="a class (default: the predicted one)")] = None,
) -> HeatmapResponse:
    """Where the model looks for one attribute of one uploaded photo: a heatmap over the letterboxed photo.

    Needs a PyTorch model (409 for an exported ONNX file; `GET /v1/schema` says so in `heatmaps`).
    """
    begin = time.perf_counter()
    found.explainer.get()  # 409 before reading the upload when the model cannot explain
    upload = await read_one_upload(request)
    async with found.explainer.busy:
        answer = await asyncio.to_thread(found.explainer.explain, upload.data, upload.name, attribute, class_name)
    return HeatmapResponse.model_validate({**answer, "elapsed_ms": round((time.perf_counter() - begin) * 1000, 1)})
