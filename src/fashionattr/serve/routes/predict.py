"""Predicting: `POST /v1/predict` for uploaded photos, `GET /v1/schema` for what the server answers."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from fashionattr.data.images import ImageError
from fashionattr.inference import Prediction
from fashionattr.serve.errors import COMMON_ERRORS, error_responses
from fashionattr.serve.responses import PredictionEntry, PredictResponse, SchemaResponse
from fashionattr.serve.services import BatcherDep, ServicesDep
from fashionattr.serve.uploads import UPLOADS_BODY, decode_uploads, image_problem, read_uploads

router = APIRouter(prefix="/v1", tags=["predict"], responses=COMMON_ERRORS)


async def predict_request(request: Request, found: ServicesDep, batcher: BatcherDep,
                          max_images: int) -> list[Prediction | ImageError]:  # fmt: skip
    """Every image of the request predicted, or the reason it could not be; good images share batches."""
    items = await read_uploads(request, max_images)
    decoded = await decode_uploads(items, found.predictor.load, found.decode_slots)
    good = [(n, image) for n, image in enumerate(decoded) if not isinstance(image, ImageError)]
    answers = await batcher.submit([image for _, image in good], [items[n].name for n, _ in good])
    results: list[Prediction | ImageError] = list(decoded)  # type: ignore[arg-type]
    for (n, _), answer in zip(good, answers, strict=True):
        results[n] = answer
    return results


def prediction_entry(result: Prediction | ImageError) -> PredictionEntry:
    if isinstance(result, ImageError):
        return PredictionEntry(source=result.path, error=image_problem(result))
    return PredictionEntry.model_validate(result.to_dict())


@router.post("/predict", openapi_extra=UPLOADS_BODY, responses=error_responses(413, 415))
async def predict(request: Request, found: ServicesDep, batcher: BatcherDep) -> PredictResponse:
    """Every attribute's value, confidence and class probabilities for each uploaded image.

    Each image is answered on its own: one that cannot be used (not an image, damaged, too large when decoded) is
    an entry with `error`, and the others are answered all the same (status 200).
    """
    begin = time.perf_counter()
    results = await predict_request(request, found, batcher, found.settings.max_images)
    return PredictResponse(predictions=[prediction_entry(r) for r in results],
                           elapsed_ms=round((time.perf_counter() - begin) * 1000, 1))  # fmt: skip


@router.get("/schema")
def schema(found: ServicesDep) -> SchemaResponse:
    """Attributes and their classes in order, the models behind them, and what else the server offers."""
    predictor = found.predictor
    described = predictor.describe()
    attributes = [predictor.schema.attribute(name) for name in predictor.attributes]
    return SchemaResponse.model_validate({
        **described,
        "short_names": {a.name: a.short_name for a in attributes},
        "labels": {a.name: a.label for a in attributes},
        "min_confidence": predictor.min_confidence, "tta": predictor.tta,
        "heatmaps": found.explainer.available, "catalog": found.catalog is not None,
        "similar_uploads": found.similar_uploads, "review": found.review is not None,
    })  # fmt: skip
