"""The bodies the HTTP API answers with, as pydantic models: /openapi.json describes each one in full.

Field names follow the library's own `to_dict()` forms (a prediction as `fashionattr predict --format json` writes
it, a catalogue item as `catalog search` knows it), so the command line and the API read alike. Attributes are
keyed by the schema's names everywhere (e.g. `coat_length_labels`); requests accept the short names too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# --- predicting ---------------------------------------------------------------------------------------------------


class AttributeAnswer(BaseModel):
    """One attribute's answer for one image."""

    value: str | None = Field(description="the class shown; null where the attribute does not apply to the photo "
                              "or the answer is below the server's confidence threshold")  # fmt: skip
    applies: bool = Field(description="whether the photo shows this attribute's part (a close-up has no hem)")
    applicability: float = Field(ge=0, le=1, description="how likely the photo shows the part")
    index: int = Field(ge=0, description="position of the most probable class in the schema's class order")
    confidence: float = Field(ge=0, le=1, description="probability of the most probable class")
    uncertain: bool = Field(description="the attribute applies but no class reaches the confidence threshold")
    probabilities: dict[str, float] = Field(description="every class's probability, in the schema's order")


class PredictionEntry(BaseModel):
    """One uploaded image: its answers, or why it could not be used (the other images are answered all the same)."""

    source: str = Field(description="the uploaded file's name")
    attributes: dict[str, AttributeAnswer] | None = Field(default=None, description="per attribute; absent on an error")
    error: str | None = Field(default=None, description="why this image could not be used; absent on success")


class PredictResponse(BaseModel):
    predictions: list[PredictionEntry] = Field(description="one entry per uploaded image, in upload order")
    elapsed_ms: float


class ModelInfo(BaseModel):
    """One model behind the service (a per-attribute run has one per attribute)."""

    model_config = ConfigDict(extra="allow")
    source: str
    backend: Literal["torch", "onnx"]
    arch: str | None = None
    attributes: list[str]
    preprocessing: dict[str, Any]
    temperatures: dict[str, float] = Field(default_factory=dict)


class SchemaResponse(BaseModel):
    """What the server answers: attributes and classes in order, the models, and what the catalogue offers."""

    schema_name: str = Field(alias="schema", description="the schema's name, e.g. fashionai")
    attributes: dict[str, list[str]] = Field(description="attribute -> its classes, in order")
    short_names: dict[str, str] = Field(description="attribute -> the short name requests may use")
    labels: dict[str, str] = Field(description="attribute -> a human label, e.g. 'Skirt length'")
    models: list[ModelInfo]
    min_confidence: float
    applicability_threshold: float = Field(ge=0, le=1, description="a tag is shown (`applies`) where its "
                                           "attribute's applicability reaches this")  # fmt: skip
    tta: bool
    heatmaps: bool = Field(description="whether POST /v1/explain works (PyTorch models; an ONNX file has no "
                           "gradients)")  # fmt: skip
    catalog: bool
    similar_uploads: bool = Field(description="whether POST /v1/catalog/similar works (the catalogue's model)")
    review: bool = Field(description="whether the label review queue is served")

    model_config = ConfigDict(populate_by_name=True)


class HeatmapResponse(BaseModel):
    name: str
    attribute: str
    class_name: str = Field(alias="class", description="the class whose evidence is shown")
    index: int
    probability: float
    predicted: str
    method: str
    layers: list[str]
    size: int = Field(description="side of the letterboxed photo, in pixels")
    peak: list[int] = Field(description="(row, column) of the map's highest point")
    overlay: str = Field(description="the heatmap over the letterboxed photo, as a PNG data URL")
    elapsed_ms: float

    model_config = ConfigDict(populate_by_name=True)


# --- health -------------------------------------------------------------------------------------------------------


class PartHealth(BaseModel):
    status: Literal["ok", "down", "absent"] = Field(description="absent: not configured on this server")
    detail: str | None = None


class BatchingStats(BaseModel):
    batches: int
    images: int
    largest_batch: int
    multi_image_batches: int
    mean_batch: float
    busy_seconds: float


class HealthResponse(BaseModel):
    """`ok`: everything works; `degraded`: predicting works but the catalogue does not; `down`: the model does not
    (answered with 503)."""

    status: Literal["ok", "degraded", "down"]
    version: str
    uptime_s: float
    parts: dict[str, PartHealth] = Field(description="model and catalog")
    attributes: int
    batching: BatchingStats
    catalog_items: int | None


# --- the catalogue ------------------------------------------------------------------------------------------------


class TagAnswer(BaseModel):
    """One attribute's stored answer for an item."""

    value: str | None = Field(description="null where the attribute does not apply to the photo")
    confidence: float
    applies: bool = True
    applicability: float | None = None
    probabilities: dict[str, float] | None = Field(default=None, description="on the item view only")


class Item(BaseModel):
    id: int
    path: str = Field(description="relative to the indexed folder")
    sha256: str
    size: int
    tags: dict[str, TagAnswer]
    image_url: str
    thumbnail_url: str


class SimilarItem(Item):
    similarity: float = Field(description="cosine similarity of the embeddings, 1 for the same image")


class CatalogInfo(BaseModel):
    items: int
    root_name: str
    model: str
    attributes: dict[str, list[str]]
    errors: int = Field(description="files found unreadable while indexing")
    similar_uploads: bool


class FacetsResponse(BaseModel):
    filters: dict[str, str]
    total: int
    facets: dict[str, dict[str, int]] = Field(description="attribute -> value -> items that would match; only "
                                              "tags that apply are counted")  # fmt: skip
    no_value: dict[str, int] | None = Field(
        default=None,
        description="attribute -> items (under the other filters) with no value for it: the attribute does not apply "
        "to the photo",
    )


class SearchResponse(BaseModel):
    filters: dict[str, str]
    total: int
    offset: int
    items: list[Item]


class SimilarResponse(BaseModel):
    query: Item
    results: list[SimilarItem]


class SimilarUploadResponse(BaseModel):
    query: PredictionEntry
    results: list[SimilarItem]


# --- label review -------------------------------------------------------------------------------------------------


class ReviewCandidate(BaseModel):
    """A label the review found worth checking, with what was decided about it so far."""

    path: str
    attribute: str
    given: str
    suggested: str
    score: float = Field(description="how strongly the model's probabilities disagree with the label")
    label: str = Field(description="the label string as label.csv holds it (y/n/m per class)")
    classes: list[str]
    image_url: str
    decision: str | None = Field(default=None, description="accept, relabel, maybe or keep; null while undecided")
    decided_label: str | None = Field(default=None, description="the label string the decision gives")


class ReviewQueue(BaseModel):
    total: int
    decided: int
    candidates: list[ReviewCandidate]


class ReviewDecision(BaseModel):
    """A person's decision on one candidate."""

    path: str
    attribute: str
    decision: Literal["accept", "relabel", "maybe", "keep"] = Field(
        description="accept the suggestion, relabel as `class_name`, mark `class_name` as 'm' (an acceptable "
        "alternative), or keep the label as it is"
    )
    class_name: str | None = Field(default=None, alias="class", description="the class for relabel and maybe")

    model_config = ConfigDict(populate_by_name=True)


class ReviewDecisionResponse(BaseModel):
    path: str
    attribute: str
    decision: str
    label: str = Field(description="the label string recorded in the corrections file")
    decided: int
