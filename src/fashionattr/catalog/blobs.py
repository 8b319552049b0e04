"""Checked bytes: every blob the catalogue stores for a native library to read again carries a checksum and its format.

A native reader (usearch restoring a saved graph) trusts its input: one flipped region of a saved index, as a
failing disk or a half-restored backup leaves it, crashed the process with a segmentation fault. So a blob is
stored with a description (what it is, its format version, its size) and a SHA-256 over both the description and
the bytes (`seal`); `verify` says what is wrong, if anything, before a single byte reaches the library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CHECKSUM_KEY = "sha256"
FORMAT_KEY = "blob_format"
BLOB_FORMAT = 1
"""Version of the sealing itself (what the checksum covers); a blob sealed otherwise is not trusted."""


def _digest(description: Mapping[str, Any], data: bytes) -> str:
    described = {k: v for k, v in description.items() if k != CHECKSUM_KEY}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode())
    digest.update(data)
    return digest.hexdigest()


def seal(description: Mapping[str, Any], data: bytes) -> dict[str, Any]:
    """`description` with the blob's size, the sealing format and the checksum over description and bytes."""
    sealed = {**description, "bytes": len(data), FORMAT_KEY: BLOB_FORMAT}
    sealed.pop(CHECKSUM_KEY, None)
    return {**sealed, CHECKSUM_KEY: _digest(sealed, data)}


def verify(description: Any, data: bytes) -> str | None:
    """None when `data` is exactly what was sealed with `description`; else what is wrong, as a phrase."""
    if not isinstance(description, dict):
        return "its description is missing or not an object"
    if description.get(FORMAT_KEY) != BLOB_FORMAT or not isinstance(description.get(CHECKSUM_KEY), str):
        return "it was saved without a checksum (by an older version)"
    if description.get("bytes") != len(data):
        return f"it holds {len(data):,} bytes where {description.get('bytes')} were saved"
    if _digest(description, data) != description[CHECKSUM_KEY]:
        return "its bytes do not match their checksum"
    return None
