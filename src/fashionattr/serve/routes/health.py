"""`GET /healthz` (and HEAD): whether the service can do its job, part by part.

The model is the service's job: without it the answer is 503. A catalogue that is down (its database unreachable)
makes the service `degraded` but still healthy for a load balancer (200), since predicting still works; the
catalogue routes answer 503 with `Retry-After` meanwhile.
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Response

from fashionattr import __version__
from fashionattr.errors import UserError
from fashionattr.serve.errors import error_responses
from fashionattr.serve.responses import BatchingStats, HealthResponse, PartHealth
from fashionattr.serve.services import Services, ServicesDep

router = APIRouter(tags=["service"], responses=error_responses(500))


def _catalog_health(found: Services) -> tuple[PartHealth, int | None]:
    if found.catalog is None:
        return PartHealth(status="absent"), None
    try:
        return PartHealth(status="ok"), len(found.catalog)
    except Exception as exc:  # any failure to count is the catalogue being unusable, whatever raised it
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, UserError):
            reason = f"{type(exc).__name__}: {reason}"
        return PartHealth(status="down", detail=reason), None


def health(found: Services) -> HealthResponse:
    model = PartHealth(status="ok") if found.batcher.running else PartHealth(
        status="down", detail="the model's worker is not running")  # fmt: skip
    catalog, items = _catalog_health(found)
    status: Literal["ok", "degraded", "down"] = (
        "down" if model.status == "down" else "degraded" if catalog.status == "down" else "ok"
    )
    return HealthResponse(status=status, version=__version__, uptime_s=round(time.time() - found.started, 1),
                          parts={"model": model, "catalog": catalog}, attributes=len(found.predictor.attributes),
                          batching=BatchingStats(**found.batcher.stats.to_dict()), catalog_items=items)  # fmt: skip


@router.get("/healthz", responses={503: {"model": HealthResponse, "description": "the model is down"}})
def healthz(found: ServicesDep, response: Response) -> HealthResponse:
    """Each part's state plus batching counters (`multi_image_batches` > 0 shows requests sharing forward passes).

    503 only when the service cannot predict; a catalogue that is down shows as `degraded` with 200.
    """
    answer = health(found)
    if answer.status == "down":
        response.status_code = 503
        response.headers["Retry-After"] = str(found.settings.retry_after_s)
    return answer


@router.head("/healthz", include_in_schema=False, responses=error_responses(503))
def healthz_head(found: ServicesDep, response: Response) -> HealthResponse:
    """HEAD for health checkers that send it: the status of GET, no body."""
    return healthz(found, response)
