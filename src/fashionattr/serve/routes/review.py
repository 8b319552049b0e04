"""Label review: the queue of labels worth checking (`GET /v1/review`), their images, and a person's decisions
(`POST /v1/review/decisions`), which go to the dataset's corrections file (see `fashionattr.serve.review`)."""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from fashionattr.serve.errors import COMMON_ERRORS, error_responses
from fashionattr.serve.responses import ReviewDecision, ReviewDecisionResponse, ReviewQueue
from fashionattr.serve.review import ReviewQueueFile
from fashionattr.serve.services import review_queue

router = APIRouter(prefix="/v1/review", tags=["review"], responses={**COMMON_ERRORS, **error_responses(404)})

ReviewDep = Annotated[ReviewQueueFile, Depends(review_queue)]


@router.get("")
def review_candidates(
    queue: ReviewDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    undecided: Annotated[bool, Query(description="only candidates nobody has decided on yet")] = False,
) -> ReviewQueue:
    """Labels worth checking, most likely mislabelled first, each with the decision made on it so far."""
    return queue.queue(offset, limit, undecided)


IMAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "the image file", "content": {"image/jpeg": {}, "image/png": {}}}
}


@router.get("/image/{number}", response_class=FileResponse, responses=IMAGE)
def review_image(queue: ReviewDep, number: Annotated[int, PathParam(ge=0, le=10**9)]) -> FileResponse:
    """The image of the candidate at this position of the queue (only images of the queue are served)."""
    path = queue.image(number)
    return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")


@router.post("/decisions")
async def review_decide(queue: ReviewDep, decision: ReviewDecision) -> ReviewDecisionResponse:
    """Record a decision on one candidate in the dataset's corrections file (append-only, with the time)."""
    return await asyncio.to_thread(queue.decide, decision)
