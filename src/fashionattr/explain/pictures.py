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

TILE = 192
CAPTION = 30
GAP = 6


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


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def caption(heatmap: Heatmap) -> str:
    predicted = "" if heatmap.class_index == heatmap.predicted_index else " (chosen)"
    return f"{heatmap.attribute.removesuffix('_labels')}: {heatmap.class_name} {heatmap.probability:.0%}{predicted}"


def contact_sheet(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], tile: int = TILE) -> np.ndarray:
    """Rows of captioned tiles, each row titled: `rows` is [(title, [(RGB array, caption), ...]), ...]."""
    columns = max((len(tiles) for _, tiles in rows), default=1)
    title_height = 18
    row_height = title_height + tile + CAPTION
    sheet = Image.new("RGB", (GAP + columns * (tile + GAP), GAP + len(rows) * (row_height + GAP)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    title_font, caption_font = _font(13), _font(11)
    for r, (title, tiles) in enumerate(rows):
        y = GAP + r * (row_height + GAP)
        draw.text((GAP, y), title, fill=(0, 0, 0), font=title_font)
        for c, (array, text) in enumerate(tiles):
            x = GAP + c * (tile + GAP)
            picture = Image.fromarray(array).resize((tile, tile), Image.Resampling.BILINEAR)
            sheet.paste(picture, (x, y + title_height))
            lines = _wrap(text, caption_font, tile, draw)
            for n, line in enumerate(lines[:2]):
                draw.text((x, y + title_height + tile + 2 + 13 * n), line, fill=(40, 40, 90), font=caption_font)
    return np.asarray(sheet)


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _wrap(text: str, font: Font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


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
