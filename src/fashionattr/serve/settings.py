"""The service's settings: limits and batching knobs, one frozen object built by the `serve` command."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching knobs of the service (the `serve` command's options)."""

    max_upload_mb: float = 10.0
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_images: int = 64
    decode_threads: int = field(default_factory=lambda: min(8, os.cpu_count() or 2))
    """Uploads decoded at once, server-wide: each may briefly hold up to 64 megapixels at full size."""
    retry_after_s: int = 5
    """What a 503 tells a client to wait before trying again (the `Retry-After` header)."""

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
