"""Heatmaps for the service: where the model looks for one attribute of one uploaded photo.

The heatmap needs gradients through the network, so it runs on copies of the served models, made on the first
request, one request at a time: a prediction batch running on the served models at the same moment is never
touched by the heatmap's hooks. An exported ONNX file has no gradients: the service says so (409), and the schema
endpoint tells the page not to offer heatmaps at all.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import TYPE_CHECKING, Any

from fashionattr.data.images import ImageError
from fashionattr.serve.errors import ApiError

if TYPE_CHECKING:
    from fashionattr.explain.cam import Explainer
    from fashionattr.inference import Predictor

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

    @property
    def available(self) -> bool:
        """Whether heatmaps can be made: only PyTorch models give gradients."""
        return bool(self.predictor.models)

    def get(self) -> Explainer:
        from fashionattr.explain.cam import Explainer

        if not self.available:
            raise ApiError(409, NO_TORCH_MODEL)
        with self._build:
            if self._explainer is None:
                self._explainer = Explainer.copy_of(self.predictor.models, self.predictor.schema)
            return self._explainer

    def explain(self, data: bytes, name: str, attribute: str, class_name: str | None) -> dict[str, Any]:
        """The heatmap of one upload as JSON, the overlay as a PNG data URL; runs in a worker thread."""
        from fashionattr.explain.pictures import overlay, png_bytes

        explainer = self.get()
        attribute = explainer.resolve_attribute(attribute)
        if attribute not in self.predictor.attributes:
            raise ApiError(422, f"this server answers {', '.join(self.predictor.attributes)}, not {attribute}")
        chosen = explainer.resolve_class(attribute, class_name) if class_name else None
        try:
            image = explainer.load(data, name)
        except ImageError as exc:
            raise ApiError(422, f"cannot use {exc.path}: {exc.reason}. Send a JPEG, PNG, WebP, BMP, GIF or TIFF "
                           "photo.") from None  # fmt: skip
        [heatmap] = explainer.explain([image], attribute, chosen)
        classes = explainer.schema.attribute(attribute).classes
        encoded = base64.b64encode(png_bytes(overlay(heatmap))).decode("ascii")
        return {"name": name, "attribute": attribute, "class": heatmap.class_name, "index": heatmap.class_index,
                "probability": heatmap.probability, "predicted": classes[heatmap.predicted_index],
                "method": explainer.method, "layers": explainer.layers_for(attribute),
                "size": int(heatmap.cam.shape[0]), "peak": [int(v) for v in heatmap.peak],
                "overlay": f"data:image/png;base64,{encoded}"}  # fmt: skip
