"""Small JPEG thumbnails of catalogue images, made on the server and kept by content hash.

A product photo is hundreds of kilobytes and a catalogue page shows 48 of them; a 256 px JPEG of the same photo is
a few kilobytes. Thumbnails are keyed by the file's SHA-256 (which the catalogue stores), so an unchanged photo is
decoded once however many pages show it, a changed one gets a new thumbnail, and the browser may cache it for good
(the URL carries the hash). The cache keeps the most recently used thumbnails up to a byte budget.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from fashionattr.data.images import open_image

THUMBNAIL_SIDES = (128, 256, 512)
"""The sizes offered: the longer side in pixels (a card, a wide card, the item view on a phone)."""
DEFAULT_SIDE = 256
CACHE_BYTES = 64 * 1024 * 1024
"""About 8,000 thumbnails of 256 px: the pages a few people browse, without a disk cache to clean up."""
JPEG_QUALITY = 82


def make_thumbnail(path: Path, side: int) -> bytes:
    """The photo at `path` as a JPEG whose longer side is at most `side`, decoded by the one safe decoder."""
    image = open_image(path, target_size=side)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


class Thumbnails:
    """A thread-safe cache of thumbnails by (content hash, side), least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0

    def get(self, sha256: str, path: Path, side: int) -> bytes:
        key = (sha256, side)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = make_thumbnail(path, side)
        with self._lock:
            self.made += 1
            if key not in self._cache:
                self._cache[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._bytes -= len(dropped)
        return data
