"""What an item's packed tag row holds: per attribute (in schema order) the class index of its tag, or -1 where the
tag does not apply, then every tag's confidence as a float32 number, then a CRC-32 of both.

The indexer writes one beside the item's tag rows in the same transaction, so the two never disagree; the facet
index (`facets.FacetIndex`) reads them as columns. Confidences are stored as float32 numbers in both places, so a
threshold compares alike in SQL and in the columns.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fashionattr.errors import UserError

if TYPE_CHECKING:
    from fashionattr.schema import Schema

NO_VALUE = -1
"""The class index of a tag that does not apply (or is missing) in a packed row."""
CODE = np.dtype("<i2")
CONFIDENCE = np.dtype("<f4")
CHECKSUM_BYTES = 4
"""A CRC-32 of the row ends it: a damaged row is found and packed again from the item's tag rows."""


def as_float32(confidence: float) -> float:
    """A confidence as the float32 number both the tag rows and the packed rows store."""
    return float(np.float32(confidence))


@dataclass(frozen=True)
class TagLayout:
    """The attributes (in schema order) and their classes, which fix what a packed row's numbers mean."""

    attributes: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]

    @classmethod
    def from_schema(cls, schema: Schema) -> TagLayout:
        return cls(tuple(schema.names), tuple(tuple(a.classes) for a in schema))

    @property
    def row_bytes(self) -> int:
        return len(self.attributes) * (CODE.itemsize + CONFIDENCE.itemsize) + CHECKSUM_BYTES

    def code(self, attribute: str, value: str) -> tuple[int, int]:
        """(attribute position, class index) of a tag; a `UserError` for names this layout lacks."""
        try:
            position = self.attributes.index(attribute)
            return position, self.classes[position].index(value)
        except ValueError:
            raise UserError(f"the catalogue has no tag {attribute}={value}") from None

    def encode(self, tags: Iterable[tuple[str, str, float, bool]]) -> bytes:
        """A packed row from (attribute, value, confidence, applies) tags; attributes without a tag get -1."""
        codes = np.full(len(self.attributes), NO_VALUE, dtype=CODE)
        confidences = np.zeros(len(self.attributes), dtype=CONFIDENCE)
        for attribute, value, confidence, applies in tags:
            if attribute not in self.attributes:
                continue
            position = self.attributes.index(attribute)
            confidences[position] = confidence
            if applies and value in self.classes[position]:
                codes[position] = self.classes[position].index(value)
        body = codes.tobytes() + confidences.tobytes()
        return body + zlib.crc32(body).to_bytes(CHECKSUM_BYTES, "little")

    def decode(self, rows: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes A x N int16, confidences A x N float32, damaged N bool) of packed rows.

        A row that fails its checksum or has another length (damaged, or written for another schema) is marked
        damaged and decodes as an item without tags; the caller packs it again from the item's tag rows.
        """
        count, width = len(rows), len(self.attributes)
        body = self.row_bytes - CHECKSUM_BYTES
        damaged = np.array([len(row) != self.row_bytes or zlib.crc32(row[:body]) != int.from_bytes(row[body:], "little")
                            for row in rows], dtype=bool)  # fmt: skip
        packed = b"".join(bytes(self.row_bytes) if bad else row for row, bad in zip(rows, damaged, strict=True))
        table = np.frombuffer(packed, dtype=np.uint8).reshape(count, self.row_bytes)
        codes = table[:, : width * CODE.itemsize].copy().view(CODE).reshape(count, width).T.copy()
        confidences = table[:, width * CODE.itemsize : body].copy().view(CONFIDENCE).reshape(count, width).T.copy()
        codes[:, damaged] = NO_VALUE
        return codes, confidences, damaged
