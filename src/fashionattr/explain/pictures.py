"""Pictures of heatmaps: a map laid over its letterboxed photo, and contact sheets of many with captions."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image

from fashionattr.explain.cam import Heatmap
from fashionattr.io import atomic_write_bytes

TILE = 256
"""Side of a tile on a contact sheet: a 64 px model input shown four times over, big enough to see the garment."""
MIN_PICTURE_SIDE = 256
"""A single heatmap picture is enlarged (by a whole factor, so each input pixel stays a square) to at least this."""
GAP = 8
TITLE_SIZE, CAPTION_SIZE = 16, 14
CAPTION_LINES = 3
SCALE_HEIGHT = 14


def overlay(heatmap: Heatmap, image_weight: float = 0.55) -> np.ndarray:
    """The map in the usual jet colours over the letterboxed photo the network saw: (S, S, 3) uint8."""
    return show_cam_on_image(heatmap.image.astype(np.float32) / 255.0, heatmap.cam, use_rgb=True,
                             image_weight=image_weight)  # fmt: skip


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(array))


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font: Font) -> int:
    """The height one line of `font` takes, from the font's own box of letters with ascenders and descenders."""
    _, top, _, bottom = font.getbbox("Ag|")
    return int(bottom - min(top, 0)) + 3


def caption(heatmap: Heatmap) -> str:
    label = heatmap.attribute.removesuffix("_labels").replace("_", " ").capitalize()
    predicted = "" if heatmap.class_index == heatmap.predicted_index else " (chosen)"
    return f"{label}: {heatmap.class_name} {heatmap.probability:.0%}{predicted}"


def jet_scale(width: int, height: int = SCALE_HEIGHT) -> np.ndarray:
    """A horizontal bar of the overlay's colours, from no attention (left) to the map's peak (right)."""
    import cv2

    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    return cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _draw_scale(sheet: Image.Image, x: int, y: int, width: int, font: Font) -> int:
    """The colour scale with its words under it; returns the height used."""
    draw = ImageDraw.Draw(sheet)
    sheet.paste(Image.fromarray(jet_scale(width)), (x, y))
    words_y = y + SCALE_HEIGHT + 2
    draw.text((x, words_y), "low", fill=(60, 60, 60), font=font)
    middle = "where the model looks"
    draw.text((x + (width - draw.textlength(middle, font=font)) / 2, words_y), middle, fill=(60, 60, 60), font=font)
    draw.text((x + width - draw.textlength("high", font=font), words_y), "high", fill=(60, 60, 60), font=font)
    return SCALE_HEIGHT + 2 + _line_height(font)


def heatmap_picture(heatmap: Heatmap, min_side: int = MIN_PICTURE_SIDE) -> np.ndarray:
    """One heatmap for a person: the overlay enlarged to at least `min_side` (whole-pixel steps), its caption above
    and the colour scale below."""
    picture = overlay(heatmap)
    factor = max(1, -(-min_side // picture.shape[0]))
    big = Image.fromarray(picture).resize((picture.shape[1] * factor, picture.shape[0] * factor),
                                          Image.Resampling.NEAREST)  # fmt: skip
    font = _font(CAPTION_SIZE)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(caption(heatmap), font, big.width, probe)
    line = _line_height(font)
    height = GAP + len(lines) * line + big.height + GAP + SCALE_HEIGHT + 2 + line + GAP
    sheet = Image.new("RGB", (big.width + 2 * GAP, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, text in enumerate(lines):
        draw.text((GAP, GAP + n * line), text, fill=(20, 20, 60), font=font)
    top = GAP + len(lines) * line
    sheet.paste(big, (GAP, top))
    _draw_scale(sheet, GAP, top + big.height + GAP, big.width, font)
    return np.asarray(sheet)


def contact_sheet(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], tile: int = TILE) -> np.ndarray:
    """Rows of captioned tiles, each row titled: `rows` is [(title, [(RGB array, caption), ...]), ...].

    Captions wrap to the tile's width on as many lines as the longest needs (at most three, the last shortened
    with an ellipsis), and every row leaves room for its own, so no caption runs into another. The colour scale of
    the heatmaps closes the sheet.
    """
    columns = max((len(tiles) for _, tiles in rows), default=1)
    title_font, caption_font = _font(TITLE_SIZE), _font(CAPTION_SIZE)
    title_height, line = _line_height(title_font) + 2, _line_height(caption_font)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [[_fit(_wrap(text, caption_font, tile, probe), caption_font, tile, probe) for _, text in tiles]
               for _, tiles in rows]  # fmt: skip
    heights = [title_height + tile + 4 + line * max((len(lines) for lines in row), default=0) for row in wrapped]
    width = GAP + columns * (tile + GAP)
    scale_width = min(width - 2 * GAP, 4 * tile)
    scale_height = SCALE_HEIGHT + 2 + line
    sheet = Image.new("RGB", (width, GAP + sum(h + GAP for h in heights) + scale_height + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = GAP
    for (title, tiles), lines_of_row, height in zip(rows, wrapped, heights, strict=True):
        draw.text((GAP, y), _fit([title], title_font, width - 2 * GAP, probe)[0], fill=(0, 0, 0), font=title_font)
        for c, ((array, _), lines) in enumerate(zip(tiles, lines_of_row, strict=True)):
            x = GAP + c * (tile + GAP)
            picture = Image.fromarray(array).resize((tile, tile), Image.Resampling.BILINEAR)
            sheet.paste(picture, (x, y + title_height))
            for n, text in enumerate(lines):
                draw.text((x, y + title_height + tile + 4 + n * line), text, fill=(20, 20, 60), font=caption_font)
        y += height + GAP
    _draw_scale(sheet, GAP, y, scale_width, caption_font)
    return np.asarray(sheet)


def _wrap(text: str, font: Font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _fit(lines: list[str], font: Font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """At most `CAPTION_LINES` lines, none wider than `width`: the rest is cut with an ellipsis."""
    kept = lines[:CAPTION_LINES]
    if len(lines) > CAPTION_LINES:
        kept[-1] += " …"
    fitted = []
    for text in kept:
        while draw.textlength(text, font=font) > width and len(text) > 1:
            text = text[:-2] + "…"
        fitted.append(text)
    return fitted


def mark_boxes(array: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], peak: tuple[int, int],
               hit: bool) -> np.ndarray:  # fmt: skip
    """The part boxes (white) and the heatmap's peak (a green dot on a hit, red on a miss) drawn over a picture."""
    picture = Image.fromarray(array)
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        draw.rectangle(box, outline=(255, 255, 255), width=1)
    x, y = peak
    radius = max(2, array.shape[0] // 40)
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(0, 200, 0) if hit else (230, 0, 0),
                 outline=(0, 0, 0))  # fmt: skip
    return np.asarray(picture)
