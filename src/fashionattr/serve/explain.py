"""The service's heatmap route: `POST /v1/explain?attribute=A[&class=C]` with one photo, the map laid over it.

The heatmap needs gradients through the network, so it runs on copies of the served models, made on the first
request, one request at a time: a prediction batch running on the served models at the same moment is never
touched by the heatmap's hooks. The web page asks for it when an attribute's card is clicked.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request

from fashionattr.data.images import ImageError

if TYPE_CHECKING:
    from fashionattr.explain.cam import Explainer
    from fashionattr.inference import Predictor

ReadUploads = Callable[[Request], Awaitable[list[tuple[str, bytes]]]]

NO_TORCH_MODEL = (
    "heatmaps need the network's gradients, which an exported ONNX file does not give; serve the checkpoint or run "
    "directory instead (fashionattr serve RUN)"
)


class ServedExplainer:
    """The explainer of a served predictor, built on first use on copies of its models."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self._explainer: Explainer | None = None
        self._build = threading.Lock()
        self.busy = asyncio.Lock()

    def get(self) -> Explainer:
        from fashionattr.explain.cam import Explainer

        if not self.predictor.models:
            raise HTTPException(409, NO_TORCH_MODEL)
        with self._build:
            if self._explainer is None:
                self._explainer = Explainer.copy_of(self.predictor.models, self.predictor.schema)
            return self._explainer


def explain_upload(served: ServedExplainer, data: bytes, name: str, attribute: str,
                   class_name: str | None) -> dict[str, Any]:  # fmt: skip
    """The heatmap of one upload as JSON, the overlay as a PNG data URL; runs in a worker thread."""
    from fashionattr.explain.pictures import overlay, png_bytes

    explainer = served.get()
    attribute = explainer.resolve_attribute(attribute)
    if attribute not in served.predictor.attributes:
        raise HTTPException(422, f"this server answers {', '.join(served.predictor.attributes)}, not {attribute}")
    chosen = explainer.resolve_class(attribute, class_name) if class_name else None
    try:
        image = explainer.load(data, name)
    except ImageError as exc:
        raise HTTPException(422, f"cannot use {exc.path}: {exc.reason}. Send a JPEG, PNG, WebP, BMP, GIF or TIFF "
                            "photo.") from None  # fmt: skip
    [heatmap] = explainer.explain([image], attribute, chosen)
    classes = explainer.schema.attribute(attribute).classes
    encoded = base64.b64encode(png_bytes(overlay(heatmap))).decode("ascii")
    return {"name": name, "attribute": attribute, "class": heatmap.class_name, "index": heatmap.class_index,
            "probability": heatmap.probability, "predicted": classes[heatmap.predicted_index],
            "method": explainer.method, "layers": explainer.layers_for(attribute), "size": int(heatmap.cam.shape[0]),
            "peak": list(heatmap.peak), "overlay": f"data:image/png;base64,{encoded}"}  # fmt: skip


def add_explain_route(app: FastAPI, predictor: Predictor, read_uploads: ReadUploads) -> None:
    """Register `POST /v1/explain`; `read_uploads` reads a request's images as the predict route does."""
    served = ServedExplainer(predictor)
    upload = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"files": {"type": "string", "format": "binary"}}}}}}}  # fmt: skip

    @app.post("/v1/explain", openapi_extra=upload, tags=["predict"])
    async def explain(
        request: Request,
        attribute: Annotated[str, Query(description="the attribute to explain (short names work)")],
        class_name: Annotated[
            str | None, Query(alias="class", description="a class (default: the predicted one)")
        ] = None,
    ) -> dict[str, Any]:
        """Where the model looks for one attribute of one uploaded photo: a heatmap over the letterboxed photo."""
        begin = time.perf_counter()
        items = await read_uploads(request)
        if len(items) != 1:
            raise HTTPException(422, f"send exactly one photo to explain, not {len(items)}")
        name, data = items[0]
        async with served.busy:
            answer = await asyncio.to_thread(explain_upload, served, data, name, attribute, class_name)
        return {**answer, "elapsed_ms": round((time.perf_counter() - begin) * 1000, 1)}
