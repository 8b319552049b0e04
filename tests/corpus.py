"""A corpus of bad and awkward image files, generated on the fly (nothing binary is committed).

`write_image_corpus(folder)` writes every case into `folder` and returns what each must do: decode to upright
RGB of a given size (CMYK, grayscale, alpha, 16-bit, EXIF rotation, a PNG named .jpg, ...) or be refused
with a reason containing given words (empty, truncated, random bytes, a decompression bomb, a symlink loop ...).
The image corpus is written once per session by conftest.py (`corpus`, `corpus_dataset`) for the tests of the
decoder (tests/test_images.py), `check` (test_dataset.py), `train`, `predict` and `catalog index`, and uploaded
by tests/test_serve.py. The tables after it hold the hostile text files, names, disk failures and tampered models
that the tests of each surface read; the catalogue's own cases (damaged stored bytes, database locations with
passwords) are at the end, for tests/test_catalog_safety.py.
"""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def ramp(peak: float, dtype: type, mode: str | None = None) -> Image.Image:
    """A left-to-right grayscale ramp from 0 to `peak` in the given sample type (16-bit, 32-bit, float)."""
    values = np.tile(np.linspace(0, peak, WIDTH), (HEIGHT, 1)).astype(dtype)
    return Image.fromarray(values, mode) if mode else Image.fromarray(values)


LAB_RED = (136, 208, 195)
"""sRGB red (255, 0, 0) in PIL's 8-bit CIELAB: L* 53.2 -> 136, a* 80 and b* 67 offset by 128."""


LAB_GREY = (102, 0, 0)
"""A dim grey as a CIELab TIFF stores it (TIFF 6.0, photometric 8): L* 40 -> 102, a* and b* 0 as signed bytes."""


def lab_tiff(pixel: tuple[int, int, int], planar: bool, photometric: int = 8) -> bytes:
    """A WIDTH x HEIGHT TIFF of one 8-bit CIELab colour, its channels interleaved or each in a plane of its own.

    Written byte by byte (PIL writes only interleaved CIELab): planar files are what other tools write, and
    photometric 9 and 10 are the ICC and ITU variants of CIELab.
    """
    count = WIDTH * HEIGHT
    planes = [bytes([value]) * count for value in pixel] if planar else [bytes(pixel) * count]
    entries = 11
    data_at = 8 + 2 + 12 * entries + 4
    bits_at, data_at = data_at, data_at + 6
    one = len(planes) == 1
    offsets_at, counts_at = data_at, data_at + 4 * len(planes)
    data_at += 0 if one else 8 * len(planes)
    offsets = [data_at + i * len(planes[0]) for i in range(len(planes))]

    def entry(tag: int, kind: int, number: int, value: int) -> bytes:
        packed = struct.pack("<HH", value, 0) if kind == 3 and number == 1 else struct.pack("<I", value)
        return struct.pack("<HHI", tag, kind, number) + packed

    directory = b"".join([
        entry(256, 3, 1, WIDTH), entry(257, 3, 1, HEIGHT), entry(258, 3, 3, bits_at), entry(259, 3, 1, 1),
        entry(262, 3, 1, photometric), entry(273, 4, len(planes), offsets[0] if one else offsets_at),
        entry(277, 3, 1, 3), entry(278, 3, 1, HEIGHT), entry(279, 4, len(planes), count * 3 if one else counts_at),
        entry(284, 3, 1, 1 if one else 2), entry(296, 3, 1, 1),
    ])  # fmt: skip
    tables = struct.pack("<HHH", 8, 8, 8)
    if not one:
        tables += struct.pack(f"<{len(planes)}I", *offsets) + struct.pack(f"<{len(planes)}I", *[count] * len(planes))
    return b"II*\x00" + struct.pack("<IH", 8, entries) + directory + struct.pack("<I", 0) + tables + b"".join(planes)


def mode_cases() -> list[tuple[bytes, Case]]:
    """Pixel modes PIL's own conversion gets wrong (floats turn black, CIELAB false colours, 16-bit white)."""
    return [
        (encode(ramp(1.0, np.float32, "F"), "TIFF"), Case("float-0-1.tif", size=(WIDTH, HEIGHT))),
        (encode(ramp(255.0, np.float32, "F"), "TIFF"), Case("float-0-255.tif", reason="float pixels", header_ok=True)),
        (encode(Image.fromarray(np.full((HEIGHT, WIDTH), np.nan, np.float32), "F"), "TIFF"),
         Case("float-nan.tif", reason="float pixels", header_ok=True)),
        (encode(ramp(65535, np.int32, "I"), "TIFF"), Case("int32-16-bit-range.tif", size=(WIDTH, HEIGHT))),
        (encode(ramp(1_000_000, np.int32, "I"), "TIFF"),
         Case("int32-full-range.tif", reason="32-bit integer pixels", header_ok=True)),
        (encode(Image.new("LAB", (WIDTH, HEIGHT), LAB_RED), "TIFF"), Case("cielab-red.tif", size=(WIDTH, HEIGHT))),
        (lab_tiff(LAB_GREY, planar=False), Case("cielab-grey.tif", size=(WIDTH, HEIGHT))),
        (lab_tiff(LAB_GREY, planar=True), Case("cielab-planar-grey.tif", size=(WIDTH, HEIGHT))),
        (lab_tiff(LAB_GREY, planar=False, photometric=9), Case("icclab.tif", reason="ICCLab colour space")),
        (lab_tiff(LAB_GREY, planar=False, photometric=10), Case("itulab.tif", reason="ITULab colour space")),
        (encode(ramp(200, np.uint16), "PNG"), Case("gray16-dark.png", size=(WIDTH, HEIGHT))),
        (encode(Image.new("1", (WIDTH, HEIGHT), 1), "TIFF"), Case("bilevel.tif", size=(WIDTH, HEIGHT))),
        (encode(noise().convert("CMYK"), "TIFF"), Case("cmyk.tif", size=(WIDTH, HEIGHT))),
        (encode(noise().convert("YCbCr"), "TIFF"), Case("ycbcr.tif", size=(WIDTH, HEIGHT))),
    ]  # fmt: skip


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
        *mode_cases(),
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


# --- special files: only regular files may be read ------------------------------------------------------------


def special_files(folder: Path) -> dict[str, Case]:
    """Write a FIFO, links to devices, a socket, a folder, a dangling link and an empty /proc file named as images.

    Opening a FIFO blocks until a writer comes and a device never ends, so each must be refused before it is opened.
    `size` is never set: none of them is an image.
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.jpg")
    for device in ("zero", "urandom", "null"):
        os.symlink(f"/dev/{device}", folder / f"dev-{device}.jpg")
    with socket.socket(socket.AF_UNIX) as server:  # the socket file stays after the socket closes
        server.bind(str(folder / "socket.jpg"))
    (folder / "folder.jpg").mkdir()
    os.symlink("no-such-target.jpg", folder / "dangling.jpg")
    os.symlink("/proc/self/status", folder / "proc-status.jpg")  # a regular file of size 0 that has content
    return {
        "fifo.jpg": Case("fifo.jpg", reason="is a named pipe (FIFO), not a regular file"),
        "dev-zero.jpg": Case("dev-zero.jpg", reason="is a character device, not a regular file"),
        "dev-urandom.jpg": Case("dev-urandom.jpg", reason="is a character device, not a regular file"),
        "dev-null.jpg": Case("dev-null.jpg", reason="is a character device, not a regular file"),
        "socket.jpg": Case("socket.jpg", reason="is a socket, not a regular file"),
        "folder.jpg": Case("folder.jpg", reason="is a directory, not a regular file"),
        "dangling.jpg": Case("dangling.jpg", reason="file not found"),
        "proc-status.jpg": Case("proc-status.jpg", reason="file is empty"),
    }


def special_file(path: Path, kind: str) -> None:
    """Make `path` a special file of `kind`: fifo, zero, urandom or null (links to those devices)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(f"/dev/{kind}", path)


# --- label, question, answer, schema and config files ------------------------------------------------------------


@dataclass(frozen=True)
class TextCase:
    """A hand-written file and what reading it must give: accepted when `words` is None, else refused at `line`
    (0: the file as a whole) with a message containing `words`."""

    id: str
    text: str
    line: int = 0
    words: str | None = None


ROW = "Images/coat_length_labels/{name},coat_length_labels,nynnnnnn\n"
A, B = ROW.format(name="a.jpg"), ROW.format(name="b.jpg")


def row(path: str, attribute: str = "coat_length_labels", label: str = "nynnnnnn") -> str:
    return f"{path},{attribute},{label}\n"


SPELLING_CASES = [
    TextCase("dot-slash", A + row("./Images/coat_length_labels/a.jpg"), 2, "duplicate row"),
    TextCase("double-slash", A + row("Images//coat_length_labels/a.jpg"), 2, "duplicate row"),
    TextCase("inner-dot", A + row("Images/./coat_length_labels/a.jpg"), 2, "duplicate row"),
    TextCase("every-spelling", A + row(".//Images/.//coat_length_labels//./a.jpg"), 2, "duplicate row"),
    TextCase("dot-slash-first", row("./Images/coat_length_labels/a.jpg") + A, 2, "there as './Images"),
    TextCase("dot-slash-other-label", A + row("./Images/coat_length_labels/a.jpg", label="nnynnnnn"), 2,
             "duplicate row"),
    TextCase("trailing-slash", A + row("Images/coat_length_labels/b.jpg/"), 2, "names a folder"),
    TextCase("only-dots", A + row("./."), 2, "names no file"),
    TextCase("dot-dot-inside", A + row("Images/coat_length_labels/x/../b.jpg"), 2, "leaves the dataset root"),
    TextCase("backslash-dot-dot", A + row("Images\\..\\..\\b.jpg"), 2, "leaves the dataset root"),
    TextCase("dot-slash-alone", row("./Images/coat_length_labels/a.jpg") + B),
    TextCase("double-slash-alone", A + row("Images//coat_length_labels//b.jpg")),
    TextCase("same-file-two-attributes", A + row("./Images/coat_length_labels/a.jpg", "sleeve_length_labels",
                                                 "nynnnnnnn")),
]  # fmt: skip
"""One file spelled several ways is one image: a second spelling is a duplicate row, never a second image."""

LINE_SEPARATORS = {"u2028": "\u2028", "u2029": "\u2029", "nel": "\x85", "vt": "\x0b", "ff": "\x0c", "fs": "\x1c",
                   "gs": "\x1d", "rs": "\x1e"}  # fmt: skip
"""What `str.splitlines` takes for a line end besides \\n and \\r."""

PARSE_CASES = [
    *(TextCase(f"{name}-in-a-path-then-an-error", row(f"Images/coat_length_labels/a{char}b.jpg") + A
               + row("Images/coat_length_labels/c.jpg", label="nyn"), 1, "line separators")
      for name, char in LINE_SEPARATORS.items()),
    *(TextCase(f"{name}-error-line-after-it", A + row(f"Images/coat_length_labels/a{char}b.jpg") + B
               + row("Images/coat_length_labels/c.jpg", label="nyn"), 4, "has 3 characters")
      for name, char in list(LINE_SEPARATORS.items())[:3]),
    TextCase("cr-only-line-ends", (A + B + row("Images/coat_length_labels/c.jpg", label="nyn")).replace("\n", "\r"),
             3, "has 3 characters"),
    TextCase("lone-cr-inside-a-line", A + "Images/coat_length_labels/c\r.jpg,coat_length_labels,nynnnnnn\n", 2,
             "carriage return"),
    TextCase("tab-separated", A + B.replace(",", "\t"), 2, "separated by tabs"),
    TextCase("semicolon-separated", A + B.replace(",", ";"), 2, "separated by semicolons"),
    TextCase("bar-separated", A + B.replace(",", "|"), 2, "separated by vertical bars"),
    TextCase("tab-separated-first-line", B.replace(",", "\t") + A, 1, "but columns must be separated by commas"),
]  # fmt: skip
"""True line numbers whatever characters a path holds, and a row in another separator says which."""

ANSWER_ROW = "Images/coat_length_labels/a.jpg,coat_length_labels,{}\n"
ANSWER_LABELS = A
TIE = "0.125;0.125;0.125;0.125;0.125;0.125;0.125;0.125"

ANSWER_NUMBER_CASES = [
    TextCase("underscore", ANSWER_ROW.format("0.1_0;0.9;0;0;0;0;0;0"), 1, "'0.1_0') is not a number"),
    TextCase("nan", ANSWER_ROW.format("nan;0.9;0;0;0;0;0;0"), 1, "'nan') is not a number"),
    TextCase("inf", ANSWER_ROW.format("inf;0.9;0;0;0;0;0;0"), 1, "'inf') is not a number"),
    TextCase("infinity", ANSWER_ROW.format("0;Infinity;0;0;0;0;0;0"), 1, "'Infinity') is not a number"),
    TextCase("hexadecimal", ANSWER_ROW.format("0x0;1;0;0;0;0;0;0"), 1, "'0x0') is not a number"),
    TextCase("arabic-indic-digits", ANSWER_ROW.format("\u0660.\u0661;0.9;0;0;0;0;0;0"), 1, "is not a number"),
    TextCase("fullwidth-digits", ANSWER_ROW.format("\uff10.\uff11;0.9;0;0;0;0;0;0"), 1, "is not a number"),
    TextCase("inner-space", ANSWER_ROW.format("0. 1;0.9;0;0;0;0;0;0"), 1, "is not a number"),
    TextCase("comma-decimal", 'Images/coat_length_labels/a.jpg,coat_length_labels,"0,1;0,9;0;0;0;0;0;0"\n', 1,
             "is not a number"),
    TextCase("dangling-exponent", ANSWER_ROW.format("1e;0;0;0;0;0;0;0"), 1, "is not a number"),
    TextCase("negative", ANSWER_ROW.format("-0.1;1.1;0;0;0;0;0;0"), 1, "not a finite number in [0, 1]"),
    TextCase("semicolon-separated", ANSWER_ROW.format("0.1;0.9;0;0;0;0;0;0").replace(",", ";"), 1,
             "separated by semicolons"),
    TextCase("scientific", ANSWER_ROW.format("1e-1;9E-1;0;0;0;0;0;0")),
    TextCase("leading-dot-and-plus", ANSWER_ROW.format(".1;+0.9;0.;0;0;0;0;0")),
    TextCase("dot-slash-path", "./" + ANSWER_ROW.format("0.1;0.9;0;0;0;0;0;0")),
    TextCase("two-spellings", ANSWER_ROW.format(TIE) + "./" + ANSWER_ROW.format(TIE), 2, "duplicate answer"),
    TextCase("six-decimals-as-earlier-versions-wrote", ANSWER_ROW.format("0.000000;1.000000;0.000000;0.000000;"
             "0.000000;0.000000;0.000000;0.000000")),
    TextCase("shortest-round-trip", ANSWER_ROW.format("1e-05;0.99999;0.0;0.0;0.0;0.0;0.0;0.0")),
    TextCase("seventeen-digits", ANSWER_ROW.format("0.10000000149011612;0.8999999985098839;0;0;0;0;0;0")),
    TextCase("subnormal", ANSWER_ROW.format("5e-324;1.0;0.0;0.0;0.0;0.0;0.0;0.0")),
    TextCase("exponent-with-plus", ANSWER_ROW.format("1E+0;0e+0;0;0;0;0;0;0")),
    TextCase("float32-sum-off-by-1e-7", ANSWER_ROW.format(";".join(["0.125000014901161"] * 8))),
    TextCase("exponent-overflow", ANSWER_ROW.format("1e400;0;0;0;0;0;0;0"), 1, "not a finite number in [0, 1]"),
    TextCase("hex-float", ANSWER_ROW.format("0x1p-1;0.5;0;0;0;0;0;0"), 1, "'0x1p-1') is not a number"),
]  # fmt: skip
"""Answer-file numbers are plain decimals: Python's float() syntax (`_`, nan, other digits) is refused."""

FASHIONAI_LIKE = "name: mine\nattributes:\n  - name: coat_length_labels\n    classes: [A, B, C, D, E, F, G, H]\n"
BILLION_LAUGHS = "".join(
    [
        "a: &a [x, x, x, x, x, x, x, x, x]\n",
        *(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)),
        "name: *i\nattributes: [{name: coat_length_labels, classes: [A, B]}]\n",
    ]
)
"""Nine levels of nine aliases: 387 million strings if expanded."""

SCHEMA_CASES = [
    TextCase("json-two-attributes-keys", '{"name": "x", "attributes": [{"name": "a_labels", "classes": ["P", "Q"]}], '
             '"attributes": [{"name": "coat_length_labels", "classes": ["A", "B"]}]}', 0, "'attributes' appears twice"),
    TextCase("json-two-name-keys", '{"attributes": [{"name": "a", "name": "coat_length_labels", "classes": ["A", "B"]'
             "}]}", 0, "'name' appears twice"),
    TextCase("json-nan", '{"name": NaN, "attributes": []}', 0, "NaN is not a number"),
    TextCase("json-nested-100000", '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", 0, "nest 100001 deep"),
    TextCase("json-broken", '{"name": "x",\n "attributes": [}', 2, "not valid JSON"),
    TextCase("yaml-two-attributes-keys", FASHIONAI_LIKE + "attributes: []\n", 5, "'attributes' appears twice"),
    TextCase("yaml-alias-bomb", BILLION_LAUGHS, 2, "aliases"),
    TextCase("yaml-simple-alias", "shared: &c [A, B]\nattributes:\n  - {name: coat_length_labels, classes: *c}\n", 3,
             "aliases"),
    TextCase("yaml-merge-key", "base: &b {classes: [A, B]}\nattributes:\n  - {<<: *b, name: coat_length_labels}\n",
             3, "aliases"),
    TextCase("yaml-nested-deep", "name: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nest deeper than"),
    TextCase("yaml-python-tag", "name: !!python/object/apply:os.system [touch PWNED]\n", 1, "constructor"),
    TextCase("yaml-not-utf8", "name: caf\udce9\n", 1, "not valid UTF-8"),
    TextCase("yaml-1.2-words-stay-text", "name: mine\nattributes:\n  - name: coat_length_labels\n"
             "    classes: [No, Yes, On, Off, Y, N, '~x', 1:20]\n"),
]  # fmt: skip
"""Schema files: repeated keys, aliases, deep nesting and Python tags are refused; YAML 1.1's `No` is text."""

CONFIG_CASES = [
    TextCase("yaml-repeated-key", "epochs: 1\nlr: 0.1\nepochs: 50\n", 3, "'epochs' appears twice"),
    TextCase("json-repeated-key", '{"epochs": 1, "epochs": 50}', 0, "'epochs' appears twice"),
    TextCase("yaml-alias", "lr: &r 0.1\nmin_lr: *r\n", 2, "aliases"),
    TextCase("yaml-scientific-is-a-number", "lr: 1e-3\nmin_lr: 2.5E-7\n"),
]  # fmt: skip
"""Config files go through the same strict reader: `lr: 1e-3` is a number (PyYAML made it a string)."""


# --- names from data that become paths -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NameCase:
    """Attribute names a schema adds beside `coat_length_labels`, and the words of their refusal (None: accepted).

    `{tmp}` in a name is replaced by the test's own folder, so an escape would land where the test can look.
    """

    id: str
    names: tuple[str, ...]
    words: str | None = None


NAME_CASES = [
    NameCase("absolute-path", ("{tmp}/ESCAPED_RUN_labels",), "holds '/' (SOLIDUS)"),
    NameCase("absolute-path-short-name", ("{tmp}/ESCAPED_RUN",), "holds '/' (SOLIDUS)"),
    NameCase("dot-dot-slash", ("../escaped_labels",), "starts with '.'"),
    NameCase("dot-dot", ("..",), "starts with '.'"),
    NameCase("dot", (".",), "starts with '.'"),
    NameCase("hidden", (".hidden_labels",), "starts with '.'"),
    NameCase("slash-inside", ("coat/length_labels",), "holds '/' (SOLIDUS)"),
    NameCase("backslash", ("coat\\length_labels",), "REVERSE SOLIDUS"),
    NameCase("windows-drive", ("C:coat_labels",), "COLON"),
    NameCase("nul", ("coat\0length_labels",), "U+0000"),
    NameCase("newline", ("coat\nlength_labels",), "U+000A"),
    NameCase("tab", ("coat\tlength_labels",), "U+0009"),
    NameCase("empty", ("",), "an attribute has an empty name"),
    NameCase("spaces-only", ("   ",), "an attribute has an empty name"),
    NameCase("leading-space", (" coat_labels",), "white space"),
    NameCase("trailing-dot", ("coat.",), "ends with '.'"),
    NameCase("dot-inside", ("coat.length_labels",), "cannot name a model's head"),
    NameCase("leading-dash", ("-rf_labels",), "starts with '-'"),
    NameCase("only-the-ending", ("_labels",), "its short name '' cannot name a file or folder: it is empty"),
    NameCase("very-long", ("a" * 200 + "_labels",), "longer than 128 bytes"),
    NameCase("long-in-bytes-not-characters", ("长" * 50,), "longer than 128 bytes"),
    NameCase("division-slash", ("coat\u2215length_labels",), "DIVISION SLASH"),
    NameCase("fullwidth-solidus", ("coat\uff0flength_labels",), "FULLWIDTH SOLIDUS"),
    NameCase("fraction-slash", ("\u2044etc\u2044passwd",), "FRACTION SLASH"),
    NameCase("fullwidth-dots", ("\uff0e\uff0e",), "FULLWIDTH FULL STOP"),
    NameCase("one-dot-leaders", ("\u2024\u2024",), "ONE DOT LEADER"),
    NameCase("right-to-left-override", ("coat\u202egnp.labels",), "RIGHT-TO-LEFT OVERRIDE"),
    NameCase("zero-width-space", ("coat\u200b_labels",), "ZERO WIDTH SPACE"),
    NameCase("short-name-collision", ("coat_length",), "both go by the short name 'coat_length'"),
    NameCase("short-name-collision-reversed", ("sleeve_length", "sleeve_length_labels"),
             "both go by the short name 'sleeve_length'"),
    NameCase("case-only", ("Coat_Length_labels",), "one file name where letter case"),
    NameCase("case-only-upper", ("COAT_LENGTH",), "one file name where letter case"),
    NameCase("composed-and-decomposed", ("caf\u00e9_labels", "cafe\u0301_labels"), "one file name where letter case"),
    NameCase("fullwidth-letters", ("\uff43\uff4f\uff41\uff54_length_labels",), "one file name where letter case"),
    NameCase("ligature", ("fit_labels", "\ufb01t_labels"), "one file name where letter case"),
    NameCase("sharp-s", ("mass_labels", "ma\u00df_labels"), "one file name where letter case"),
    NameCase("chinese", ("裙长", "衣长_labels")),
    NameCase("spaces-and-brackets", ("coat length (cm)", "fit & cut+size")),
    NameCase("cyrillic-look-alike-is-another-file", ("\u0441oat_length_labels",)),
    NameCase("accents", ("ärmel_länge_labels", "caf\u00e9_labels")),
    NameCase("at-the-byte-limit", ("b" * 128,)),
]  # fmt: skip
"""Names that would become paths outside the chosen folder, or two attributes' shared path, are refused by the schema.

The file-system cases (case, Unicode form, ligatures) collide on macOS and Windows, where `Coat` and `coat` are
one folder; a Cyrillic `с` is another letter everywhere, so that name is a different file and is accepted.
"""


# --- a full disk ---------------------------------------------------------------------------------------------------

ATOMIC_WRITE_STEPS = ("mkdir", "mkstemp", "write", "fsync", "replace")
"""Every step of an atomic write that a full disk can fail (the folder, the temporary file, the data, the flush,
the rename)."""

DISK_FULL_ERRNOS = {"ENOSPC": "No space left on device", "EDQUOT": "Disk quota exceeded"}

DISK_FULL_COMMANDS = [
    ("split", ["split", "{data}", "--out", "{tmp}/split.csv", "--force"], "split.csv"),
    ("submit", ["submit", "{run}", "{data}/Tests/question.csv", "--out", "{tmp}/answers.csv", "--workers", "0"],
     "answers.csv"),
    ("predict-output", ["predict", "{run}", "{data}/Images/coat_length_labels", "-o", "{tmp}/tags.csv", "--workers",
                        "0"], "tags.csv"),
    ("evaluate-folder", ["evaluate", "{run}", "--out", "{tmp}/eval", "--workers", "0"], "eval/scores.json"),
    ("evaluate-predictions", ["evaluate", "{run}", "--out", "{tmp}/eval", "--save-predictions", "{tmp}/val.csv",
                              "--workers", "0"], "val.csv"),
]  # fmt: skip
"""Commands and the file of theirs the disk fills up on: each ends with exit 1 and one line naming the file, which
keeps its old content."""


# --- answer files keep every digit -----------------------------------------------------------------------------------

EIGHT = 8


def _vector(*head: float) -> list[float]:
    """Eight probabilities: `head`, then the rest of 1 on the last class."""
    return [*head, *[0.0] * (EIGHT - 1 - len(head)), 1.0 - sum(head)]


ANSWER_PRECISION_CASES = [
    ("float32-softmax", [0.0071324, 0.0016, 0.91, 0.05, 0.0112676, 0.01, 0.005, 0.005]),
    ("one-in-a-hundred-thousand", _vector(1e-05)),
    ("one-in-a-billion", _vector(1e-09)),
    ("smallest-subnormal", [5e-324, *[0.0] * 6, 1.0]),
    ("largest-below-one", _vector(2.0**-53)),
    ("one-ulp-below-nine-tenths", _vector(float(np.nextafter(0.9, 0.0)))),
    ("nine-tenths", _vector(0.9)),
    ("thirds", [1 / 3, 1 / 3, *[0.0] * 5, 1 / 3]),
    ("all-on-one-class", [1.0, *[0.0] * 7]),
    ("negative-zero", [-0.0, *[0.0] * 6, 1.0]),
    ("uniform", [0.125] * EIGHT),
]
"""Probability vectors of coat length that an answer file must give back bit for bit (-0.0 comes back as 0.0)."""


# --- an attribute whose every answer lands on an `m` class ----------------------------------------------------------

SLEEVE_ROW = "Images/sleeve_length_labels/{name},sleeve_length_labels,{label}\n"
SLEEVE_ANSWER = "Images/sleeve_length_labels/{name},sleeve_length_labels,{probabilities}\n"
ON_CLASS_2 = "0.05;0.05;0.6;0.05;0.05;0.05;0.05;0.05;0.05"
ON_CLASS_1 = "0.05;0.6;0.05;0.05;0.05;0.05;0.05;0.05;0.05"


@dataclass(frozen=True)
class MaybeCase:
    """Sleeve-length labels and answers scored beside one plainly right coat-length answer (AP 1).

    `sleeve_ap` is the sleeve row's AP cell ("n/a" when no answer counts) and `map_cell` the mAP cell.
    """

    id: str
    labels: tuple[str, ...]
    answers: tuple[str, ...]
    sleeve_ap: str
    map_cell: str


MAYBE_CASES = [
    MaybeCase("every-answer-on-m", ("nymnnnnnn", "nymnnnnnn"), (ON_CLASS_2, ON_CLASS_2), "n/a", "100.0"),
    MaybeCase("one-image-on-m", ("nymnnnnnn",), (ON_CLASS_2,), "n/a", "100.0"),
    MaybeCase("m-on-different-classes", ("nymnnnnnn", "mnnynnnnn"), (ON_CLASS_2, "0.6;0.05;0.05;0.05;0.05;0.05;0.05;"
              "0.05;0.05"), "n/a", "100.0"),
    MaybeCase("one-on-m-one-right", ("nymnnnnnn", "nynnnnnnn"), (ON_CLASS_2, ON_CLASS_1), "100.0", "100.0"),
    MaybeCase("one-on-m-one-wrong", ("nymnnnnnn", "nnnynnnnn"), (ON_CLASS_2, ON_CLASS_1), "0.0", "50.0"),
    MaybeCase("m-label-but-answer-on-y", ("nymnnnnnn",), (ON_CLASS_1,), "100.0", "100.0"),
]  # fmt: skip
"""AP is undefined when no answer counts; the attribute shows n/a with a note and mAP is the mean of the others."""


# --- a model and data of different schemas ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaEdit:
    """A change to FashionAI's schema for a dataset's schema.json (the model was trained on FashionAI's).

    `attribute` gets `classes` (None: the attribute is removed); `submit` and `evaluate` are the words of each
    command's refusal, None where the command must go on (the questions ask for coat length only).
    """

    id: str
    attribute: str
    classes: tuple[str, ...] | None
    submit: str | None
    evaluate: str | None


FASHIONAI_COAT = ("Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length", "Knee Length",
                  "Midi Length", "Ankle&Floor Length")  # fmt: skip
COAT_IN_MODEL = "attribute 'coat_length_labels' has 8 classes (Invisible, High Waist Length, Regular Length, Long"

SCHEMA_EDITS = [
    SchemaEdit("coat-classes-renamed", "coat_length_labels", tuple("ABCDEFGH"), f"{COAT_IN_MODEL}", COAT_IN_MODEL),
    SchemaEdit("coat-classes-reordered", "coat_length_labels", FASHIONAI_COAT[::-1], "but 8 (Ankle&Floor Length, Midi",
               "but 8 (Ankle&Floor Length, Midi"),
    SchemaEdit("coat-one-class-renamed", "coat_length_labels", (*FASHIONAI_COAT[:7], "Ankle Length"), COAT_IN_MODEL,
               COAT_IN_MODEL),
    SchemaEdit("coat-fewer-classes", "coat_length_labels", ("Short", "Long", "Invisible"), "but 3 (Short, Long, "
               "Invisible)", "but 3 (Short, Long, Invisible)"),
    SchemaEdit("coat-more-classes", "coat_length_labels", (*FASHIONAI_COAT, "Cape"), "but 9 (", "but 9 ("),
    SchemaEdit("coat-missing", "coat_length_labels", None, "has no attribute 'coat_length_labels'",
               "has no attribute 'coat_length_labels'"),
    SchemaEdit("sleeve-differs-only", "sleeve_length_labels", ("Short", "Long"), None,
               "attribute 'sleeve_length_labels' has 9 classes"),
    SchemaEdit("same-as-the-model", "coat_length_labels", FASHIONAI_COAT, None, None),
]  # fmt: skip
"""A dataset whose schema gives an attribute other classes than the model's: its answers would be for the wrong
classes, so `submit` and `evaluate` refuse (by `schema.schema_mismatch`) rather than write or score them."""


# --- numbers a model file carries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TamperCase:
    """An edit of a model file's stored description, and words of the one-line refusal every reader gives."""

    id: str
    edit: Callable[[dict[str, Any]], None]
    words: str


def _set(*path: str | int, value: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets one nested entry of a checkpoint payload or of the ONNX metadata."""

    def edit(data: dict[str, Any]) -> None:
        for key in path[:-1]:
            data = data[key]  # type: ignore[index]
        data[path[-1]] = value  # type: ignore[index]

    return edit


def _every_temperature(value: object) -> Callable[[dict[str, Any]], None]:
    def edit(payload: dict[str, Any]) -> None:
        payload["temperatures"] = {name: value for name in payload["attributes"]}

    return edit


def _nan_weight(payload: dict[str, Any]) -> None:
    name = next(key for key, tensor in payload["model"].items() if tensor.is_floating_point())
    payload["model"][name] = payload["model"][name].clone().fill_(float("nan"))


def _many_classes(payload: dict[str, Any]) -> None:
    payload["schema"]["attributes"][0]["classes"] = [f"class {i}" for i in range(100_000)]


TAMPERED_CHECKPOINTS = [
    TamperCase("img-size-100000", _set("preprocessing", "img_size", value=100_000), "image size"),
    TamperCase("img-size-as-text", _set("preprocessing", "img_size", value="224"), "image size"),
    TamperCase("std-zero", _set("preprocessing", "std", value=[0.0, 0.0, 0.0]), "normalisation std"),
    TamperCase("std-nan", _set("preprocessing", "std", value=[float("nan"), 0.2, 0.2]), "normalisation std"),
    TamperCase("mean-infinite", _set("preprocessing", "mean", value=[float("inf"), 0.4, 0.4]), "normalisation mean"),
    TamperCase("temperature-tiny", _every_temperature(1e-30), "calibration temperature"),
    TamperCase("temperature-subnormal", _every_temperature(5e-324), "calibration temperature"),
    TamperCase("temperature-nan", _every_temperature(float("nan")), "calibration temperature"),
    TamperCase("temperature-as-text", _every_temperature("1.0"), "calibration temperature"),
    TamperCase("weight-nan", _nan_weight, "NaN or infinite"),
    TamperCase("100000-classes", _many_classes, "at most 1000"),
]  # fmt: skip
"""Checkpoints whose stored numbers no model can use: refused when read, before anything is sized by them."""

_INPUT = ("fashionattr.preprocessing", "inputs", 0)


def _extra_output(metadata: dict[str, Any]) -> None:
    metadata["fashionattr.schema"]["attributes"].append({"name": "hat_labels", "classes": ["none", "cap"]})
    metadata["fashionattr.spec"]["attributes"].append("hat_labels")


def _onnx_temperatures(value: object) -> Callable[[dict[str, Any]], None]:
    def edit(metadata: dict[str, Any]) -> None:
        model = metadata["fashionattr.spec"]["models"][0]
        model["temperatures"] = {name: value for name in model["attributes"]}

    return edit


TAMPERED_ONNX = [
    TamperCase("img-size-100000", _set(*_INPUT, "preprocessing", "img_size", value=100_000), "image size"),
    TamperCase("input-size-the-graph-does-not-take", _set(*_INPUT, "preprocessing", "img_size", value=48),
               "takes images of shape"),
    TamperCase("input-the-graph-lacks", _set(*_INPUT, "name", value="pixels"), "names an input 'pixels' the graph"),
    TamperCase("output-the-graph-lacks", _extra_output, "names an output 'hat_labels' the graph lacks"),
    TamperCase("embedding-size-other", _set("fashionattr.spec", "embedding_size", value=7), "embedding of 7"),
    TamperCase("std-zero", _set(*_INPUT, "preprocessing", "std", value=[0.0, 0.0, 0.0]), "normalisation std"),
    TamperCase("temperature-subnormal", _onnx_temperatures(5e-324), "calibration temperature"),
]  # fmt: skip
"""ONNX files whose fashionattr metadata is absurd or promises what the graph does not do (the graph untouched)."""


# --- outputs written over inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverwriteCase:
    """A command whose output names one of its inputs (or a dataset's file): it must refuse, naming both.

    `argv` and `victim` are formatted with {data} (a copy of the dataset), {run} (a trained run), {photo} (a copy
    of one image) and {tmp}; `prepare` names what the case sets up first: a hard link or a symbolic link to the
    photo at {tmp}/alias.jpg, a split file or a PNG image in the dataset, an input named like explain's sheet.
    """

    id: str
    argv: list[str]
    victim: str
    words: str
    prepare: str | None = None


OVERWRITE_CASES = [
    OverwriteCase("submit-out-is-the-question-file",
                  ["submit", "{run}", "{data}/Tests/question.csv", "--out", "{data}/Tests/question.csv"],
                  "{data}/Tests/question.csv", "is the question file"),
    OverwriteCase("evaluate-predictions-over-the-labels",
                  ["evaluate", "{run}", "--data", "{data}", "--out", "{tmp}/eval", "--save-predictions",
                   "{data}/Annotations/label.csv"], "{data}/Annotations/label.csv", "Annotations/label.csv"),
    OverwriteCase("predict-output-is-the-photo", ["predict", "{run}", "{photo}", "--out", "{photo}"], "{photo}",
                  "is an input image"),
    OverwriteCase("predict-output-is-a-hard-link-to-the-photo", ["predict", "{run}", "{photo}", "--out",
                  "{tmp}/alias.jpg"], "{photo}", "is an input image", prepare="hard link"),
    OverwriteCase("predict-output-is-a-link-to-the-photo", ["predict", "{run}", "{photo}", "--out",
                  "{tmp}/alias.jpg"], "{photo}", "is an input image", prepare="symbolic link"),
    OverwriteCase("predict-output-is-the-model", ["predict", "{run}", "{photo}", "--out", "{run}/best.pt"],
                  "{run}/best.pt", "is a file of the model"),
    OverwriteCase("predict-output-over-a-dataset-it-does-not-read", ["predict", "{run}", "{photo}", "--out",
                  "{data}/Annotations/label.csv"], "{data}/Annotations/label.csv", "is a file of the dataset"),
    OverwriteCase("review-corrected-over-the-labels", ["review", "{run}", "--data", "{data}", "--out", "{tmp}/review",
                  "--write-corrected", "{data}/Annotations/label.csv"], "{data}/Annotations/label.csv",
                  "is the dataset's label file"),
    OverwriteCase("split-out-is-the-labels", ["split", "{data}", "--out", "{data}/Annotations/label.csv"],
                  "{data}/Annotations/label.csv", "is the dataset's label file"),
    OverwriteCase("train-into-the-annotations-folder", ["train", "{data}", "--out", "{data}/Annotations", "--arch",
                  "test_resnet", "--epochs", "1"], "{data}/Annotations/split.csv", "Annotations/split.csv",
                  prepare="split"),
    OverwriteCase("synth-preview-over-a-dataset-image", ["synth", "--preview", "{data}/Images/extra.png"],
                  "{data}/Images/extra.png", "is a file of the dataset", prepare="png in the dataset"),
    OverwriteCase("explain-sheet-over-its-input", ["explain", "{run}", "{tmp}/contact_sheet.png", "--out", "{tmp}"],
                  "{tmp}/contact_sheet.png", "is an input image", prepare="sheet"),
]  # fmt: skip
"""Each of these once replaced its input and exited 0 (the question file with answers, the labels with
predictions, a photo with JSON)."""


# --- links in an image-folder tree (import-folders) -------------------------------------------------------------------


def _loop_file(source: Path, outside: Path) -> str:
    (source / "b" / "self.jpg").symlink_to("self.jpg")
    return "a symbolic link loop"


def _loop_folder(source: Path, outside: Path) -> str:
    (source / "b" / "again").symlink_to("../b")
    return "a symbolic link loop"


def _leaving_file(source: Path, outside: Path) -> str:
    (source / "a" / "leaving.jpg").symlink_to(outside / "photo.jpg")
    return "leads out of"


def _leaving_folder(source: Path, outside: Path) -> str:
    (source / "a" / "more").symlink_to(outside)
    return "a folder link that leads out of"


def _dangling(source: Path, outside: Path) -> str:
    (source / "a" / "gone.jpg").symlink_to(outside / "missing.jpg")
    return "a symbolic link to nothing"


def _one_file_two_classes(source: Path, outside: Path) -> str:
    (source / "a" / "relative.jpg").symlink_to("../b/0.jpg")
    return "one file in classes a and b"


IMPORT_LINK_CASES = [_loop_file, _loop_folder, _leaving_file, _leaving_folder, _dangling, _one_file_two_classes]
"""Link trees `import-folders` once imported into datasets `check` then refused; each maker returns words of the
reason the import gives for leaving the path out."""
# --- the catalogue's stored bytes, its vector index and its database location ---------------------------------------


@dataclass(frozen=True)
class BlobDamage:
    """A stored blob of the catalogue as a failing disk or a half-restored backup leaves it.

    `blob`: the saved vector index (`vector_index`), an item's `embedding` or its packed `tag_row`. `damage`
    turns the stored bytes into the damaged ones. `refused`: whether a search *from the damaged item itself* must
    be refused (its own vector is gone); every other reader answers, with a note where something was left out.
    """

    id: str
    blob: str
    damage: Callable[[bytes], bytes]
    refused: bool = False


def _flip(data: bytes, start: float = 0.5, length: int = 512) -> bytes:
    """XOR a region of `length` bytes from `start` (a share of the length) with a pattern."""
    at = int(len(data) * start)
    return data[:at] + bytes(b ^ 0xA5 for b in data[at : at + length]) + data[at + length :]


BLOB_DAMAGES = [
    BlobDamage("index-flipped-region", "vector_index", _flip),
    BlobDamage("index-flipped-header", "vector_index", lambda d: _flip(d, 0.0, 64)),
    BlobDamage("index-cut-in-half", "vector_index", lambda d: d[: len(d) // 2]),
    BlobDamage("index-zeroed", "vector_index", lambda d: bytes(len(d))),
    BlobDamage("index-empty", "vector_index", lambda d: b""),
    BlobDamage("embedding-nan", "embedding", lambda d: b"\xff" * len(d), refused=True),
    BlobDamage("embedding-infinite", "embedding", lambda d: b"\x00\x00\x80\x7f" * (len(d) // 4), refused=True),
    BlobDamage("embedding-zero", "embedding", lambda d: bytes(len(d)), refused=True),
    BlobDamage("embedding-cut", "embedding", lambda d: d[: len(d) // 2 + 1], refused=True),
    BlobDamage("embedding-flipped", "embedding", lambda d: _flip(d, 0.0, 16)),  # finite: a wrong vector, still used
    BlobDamage("tag-row-flipped", "tag_row", lambda d: _flip(d, 0.0, 8)),
    BlobDamage("tag-row-cut", "tag_row", lambda d: d[:-3]),
    BlobDamage("tag-row-empty", "tag_row", lambda d: b""),
]  # fmt: skip
"""Every reader (similar, search, facets, index, the service) answers or refuses in one line; none crashes."""


@dataclass(frozen=True)
class SecretLocation:
    """A database location holding a password, and the password as it must never appear."""

    id: str
    url: str
    secrets: tuple[str, ...]


SECRET_LOCATIONS = [
    SecretLocation("userinfo", "postgresql://tagger:hunter2@db.example/catalog", ("hunter2",)),
    SecretLocation("postgres-scheme", "postgres://tagger:hunter2@db.example:5433/catalog", ("hunter2",)),
    SecretLocation("upper-case-scheme", "POSTGRESQL://tagger:hunter2@db.example/catalog", ("hunter2",)),
    SecretLocation("percent-encoded", "postgresql://tagger:p%40ss%2Fw%3Ard@/catalog?host=/run/postgresql",
                   ("p%40ss%2Fw%3Ard", "p@ss/w:rd")),
    SecretLocation("raw-at-sign", "postgresql://tagger:p@ss@db.example/catalog", ("p@ss",)),
    SecretLocation("raw-slash", "postgresql://tagger:pa/ss@db.example/catalog", ("pa/ss",)),
    SecretLocation("no-user", "postgresql://:hunter2@db.example/catalog", ("hunter2",)),
    SecretLocation("query-password", "postgresql://tagger@db.example/catalog?password=hunter2&sslmode=require",
                   ("hunter2",)),
    SecretLocation("query-password-encoded", "postgresql://tagger@/catalog?host=/tmp&password=s%26cret",
                   ("s%26cret", "s&cret")),
    SecretLocation("both", "postgresql://tagger:first1@db.example/catalog?password=second2", ("first1", "second2")),
]  # fmt: skip
"""`shown_location` hides every password; `without_secrets` scrubs it from a library's error text."""
