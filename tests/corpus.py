"""A corpus of bad and awkward image files, generated on the fly (nothing binary is committed).

`write_image_corpus(folder)` writes every case into `folder` and returns what each must do: decode to upright
RGB of a given size (CMYK, grayscale, alpha, 16-bit, EXIF rotation, a PNG named .jpg, ...) or be refused
with a reason containing given words (empty, truncated, random bytes, a decompression bomb, a symlink loop ...).
Shared by tests/test_bad_inputs.py (files, check, train, predict, catalogue) and tests/test_serve.py (uploads).
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 40, 20
"""Every decodable case is this size (before EXIF rotation), so the expected output size is known."""


@dataclass(frozen=True)
class Case:
    """One corpus file: `size` (width, height) when it must decode, else `reason` words of its refusal."""

    name: str
    size: tuple[int, int] | None = None
    reason: str | None = None
    header_ok: bool = False
    """For a refused file: whether its header alone looks fine (only a full decode finds it bad)."""

    @property
    def good(self) -> bool:
        return self.size is not None


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def noise(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> Image.Image:
    """Random pixels: they do not compress, so a JPEG of them has a long body after its header."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge RGB image, with a few bytes of data: tiny on disk, huge decoded.

    Built by hand (chunks and CRCs) so that making it never allocates the image it declares.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG with a red top-left corner, tagged orientation 6 (display rotated 90 degrees clockwise)."""
    array = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    array[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes())


def rgba_png() -> bytes:
    """Left half opaque blue, right half fully transparent (which must come out white, not black)."""
    array = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    array[:, : WIDTH // 2] = (0, 0, 255, 255)
    return encode(Image.fromarray(array, "RGBA"), "PNG")


def gray16_png() -> bytes:
    """A 16-bit grayscale ramp over the full 0..65535 range."""
    ramp = np.linspace(0, 65535, WIDTH * HEIGHT).reshape(HEIGHT, WIDTH).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def image_corpus() -> dict[str, tuple[bytes | None, Case]]:
    """name -> (file bytes, or None for a case that is not a plain file, and what it must do)."""
    rng = random.Random(6)
    photo = noise()
    truncated = encode(noise(256, 256, seed=1), "JPEG", quality=95)
    cases = [
        (b"", Case("empty.jpg", reason="empty")),
        (truncated[: len(truncated) // 2], Case("truncated.jpg", reason="truncated", header_ok=True)),
        (bytes(rng.getrandbits(8) for _ in range(4096)), Case("random-bytes.jpg", reason="not an image")),
        (encode(photo, "PNG"), Case("png-named.jpg", size=(WIDTH, HEIGHT))),
        (encode(photo, "GIF"), Case("gif-named.jpg", size=(WIDTH, HEIGHT))),
        (encode(photo, "WEBP", quality=90), Case("webp-named.jpg", size=(WIDTH, HEIGHT))),
        (encode(photo, "BMP"), Case("bmp-named.jpg", size=(WIDTH, HEIGHT))),
        (encode(photo.convert("CMYK"), "JPEG"), Case("cmyk.jpg", size=(WIDTH, HEIGHT))),
        (encode(photo.convert("L"), "JPEG"), Case("grayscale.jpg", size=(WIDTH, HEIGHT))),
        (rgba_png(), Case("rgba.png", size=(WIDTH, HEIGHT))),
        (gray16_png(), Case("gray16.png", size=(WIDTH, HEIGHT))),
        (exif_rotated_jpeg(), Case("exif-rotated.jpg", size=(HEIGHT, WIDTH))),
        (png_declaring(40_000, 40_000), Case("bomb.png", reason="decompression bomb")),
        (encode(Image.new("RGB", (1, 1), (9, 9, 9)), "JPEG"), Case("one-pixel.jpg", size=(1, 1))),
        (encode(Image.new("RGB", (2000, 10)), "JPEG"), Case("elongated.jpg", reason="too elongated")),
        (None, Case("symlink-loop.jpg", reason="symbolic links")),
    ]
    return {case.name: (data, case) for data, case in cases}


NON_UTF8_NAME = b"caf\xe9-latin1.jpg"
"""A file name in Latin-1, not valid UTF-8: Python sees it as 'caf\\udce9-latin1.jpg' (PEP 383)."""


def write_image_corpus(folder: Path, non_utf8_name: bool = False) -> dict[str, Case]:
    """Write every case into `folder` (and, if asked, a good JPEG under a non-UTF-8 name); name -> Case."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Case] = {}
    for name, (data, case) in image_corpus().items():
        if data is None:  # a symlink loop: two links pointing at each other
            os.symlink(f"{name}.other", folder / name)
            os.symlink(name, folder / f"{name}.other")
        else:
            (folder / name).write_bytes(data)
        written[name] = case
    if non_utf8_name:
        name = os.fsdecode(NON_UTF8_NAME)
        with open(os.path.join(os.fsencode(folder), NON_UTF8_NAME), "wb") as handle:
            handle.write(encode(noise(), "JPEG"))
        written[name] = Case(name, size=(WIDTH, HEIGHT))
    return written
