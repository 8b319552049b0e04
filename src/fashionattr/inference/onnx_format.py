"""What an exported `.onnx` file holds beyond the graph: the metadata keys export writes and the ONNX backend reads."""

from __future__ import annotations

from fashionattr.data.preprocessing import Preprocessing

FORMAT = "fashionattr-onnx"
FORMAT_VERSION = 2
EMBEDDING_OUTPUT = "embedding"

META_FORMAT = "fashionattr.format"
META_SCHEMA = "fashionattr.schema"
META_PREPROCESSING = "fashionattr.preprocessing"
META_SPEC = "fashionattr.spec"
METADATA_KEYS = (META_FORMAT, META_SCHEMA, META_PREPROCESSING, META_SPEC)


def input_name(preprocessing: Preprocessing, single: bool) -> str:
    """The graph input that takes images letterboxed by `preprocessing` (`images` when there is only one)."""
    return "images" if single else f"images_{preprocessing.pixel_key.removeprefix('letterbox-').replace('-', '_')}"


def applicability_output(attribute: str) -> str:
    """The graph output holding an attribute's applicability scores (N,), beside its probabilities."""
    return f"{attribute}.applicability"
