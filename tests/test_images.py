"""The image decoder (`open_image`, and `probe_image` that reads only the header) against hostile files.

Every file of the corpus (tests/corpus.py) either decodes to upright RGB of the expected size (CMYK, grayscale,
alpha on white, 16-bit and float samples kept in range, CIELab in its colours, EXIF rotation applied, a PNG, GIF,
WebP or BMP named .jpg, 1x1) or is refused with an `ImageError` that names the file and says what is wrong (empty,
truncated, random bytes, a decompression bomb read from its header, a symlink loop); from a path or from bytes
alike. Special files named like images (a FIFO, a socket, a folder, a link to a device) are refused before they are
opened. What the commands make of these files is tested with each command.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from fashionattr.data.images import ImageError, open_image, probe_image
from helpers import bad_cases


def test_every_corpus_file_decodes_upright_or_is_refused_by_name(corpus):
    folder, cases = corpus
    for name, case in cases.items():
        path = folder / name
        if case.good:
            with open_image(path) as image:
                assert image.mode == "RGB" and image.size == case.size, name
        else:
            with pytest.raises(ImageError) as info:
                open_image(path)
            assert str(path) in str(info.value) and case.reason in info.value.reason, (name, info.value.reason)


def test_header_probe_finds_all_but_what_needs_a_full_decode(corpus):
    folder, cases = corpus
    for name, case in bad_cases(cases).items():
        if case.header_ok:
            probe_image(folder / name)  # a truncated body shows only when decoded
        else:
            with pytest.raises(ImageError, match=case.reason):
                probe_image(folder / name)


def test_bytes_decode_like_files(corpus):
    folder, cases = corpus
    for name, case in cases.items():
        if (folder / name).is_symlink():
            continue
        data = (folder / name).read_bytes()
        if case.good:
            assert open_image(data, name).size == case.size
        else:
            with pytest.raises(ImageError, match=case.reason):
                open_image(data, name)


def test_exif_rotation_is_applied(corpus):
    folder, _ = corpus
    with Image.open(folder / "exif-rotated.jpg") as raw:
        assert raw.size == (40, 20)
    image = np.asarray(open_image(folder / "exif-rotated.jpg"))
    assert image.shape == (40, 20, 3)
    # Orientation 6 means "rotate 90 degrees clockwise to display": the red top-left corner goes top-right.
    assert image[2, -3, 0] > 200 and image[2, -3, 1] < 80 and image[2, -3, 2] < 80
    assert abs(int(image[2, 2, 0]) - 200) < 30 and abs(int(image[2, 2, 1]) - 200) < 30


def test_alpha_becomes_white_and_16_bit_keeps_its_range(corpus):
    folder, _ = corpus
    rgba = np.asarray(open_image(folder / "rgba.png"))
    assert tuple(rgba[10, 5]) == (0, 0, 255) and tuple(rgba[10, 35]) == (255, 255, 255)
    with Image.open(folder / "gray16.png") as raw:
        assert raw.mode.startswith("I")  # really 16 bits per pixel
    gray = np.asarray(open_image(folder / "gray16.png"))
    assert gray.min() <= 5 and gray.max() >= 250 and (gray[..., 0] == gray[..., 1]).all()


def test_image_modes_keep_their_colours_and_brightness(corpus):
    folder, _ = corpus
    red = np.asarray(open_image(folder / "cielab-red.tif"))
    assert red[0, 0, 0] > 240 and red[0, 0, 1] < 20 and red[0, 0, 2] < 30  # red, not PIL's old false colours
    for name in ("cielab-grey.tif", "cielab-planar-grey.tif"):  # a dim grey, interleaved or in planes: not blue
        grey = np.asarray(open_image(folder / name)).astype(int)
        assert abs(grey[0, 0] - 94).max() <= 2, (name, grey[0, 0])
    ramp = np.asarray(open_image(folder / "float-0-1.tif"))[0, :, 0]
    assert ramp[0] == 0 and ramp[-1] == 255 and (np.diff(ramp.astype(int)) >= 0).all()  # 0..1 floats, not black
    dark = np.asarray(open_image(folder / "gray16-dark.png"))
    assert dark.max() <= 1  # 200 of 65535 is nearly black, not brightened to white
    assert np.asarray(open_image(folder / "int32-16-bit-range.tif"))[0, -1, 0] == 255


def test_decompression_bomb_is_refused_from_its_header(corpus):
    folder, _ = corpus
    assert (folder / "bomb.png").stat().st_size < 200
    assert struct.unpack(">II", (folder / "bomb.png").read_bytes()[16:24]) == (40_000, 40_000)  # as declared
    with pytest.raises(ImageError, match="decompression bomb"):
        open_image(folder / "bomb.png")


@pytest.mark.timeout(60)
def test_special_files_are_refused_by_the_decoder_and_the_header_probe(special):
    folder, cases = special
    for name, case in cases.items():
        for read in (open_image, probe_image):
            with pytest.raises(ImageError) as info:
                read(folder / name)
            assert case.reason in info.value.reason and str(folder / name) in str(info.value), (name, read)
