"""Drawing primitives for the synthetic garment generator: colours, paints, shapes and a canvas in body units.

Figures are described in body units (top of the head at y=0, the floor at y=1, x=0 on the body's axis) so
garment geometry is written once; the canvas maps units to pixels with one scale, rotation and offset per
image, and draws at twice the size for antialiasing when the output is small.
"""

from __future__ import annotations

import bisect
import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Point = tuple[float, float]
Poly = list[Point]

PATTERNS = ("plain", "stripes", "dots", "checks")
PATTERN_WEIGHTS = (0.7, 0.12, 0.08, 0.1)
SKIN_TONES: tuple[RGB, ...] = (
    (255, 226, 200), (240, 196, 164), (226, 172, 134), (200, 140, 100), (165, 110, 74), (120, 78, 50), (84, 56, 38),
)  # fmt: skip
HAIR_COLOURS: tuple[RGB, ...] = (
    (25, 20, 18),
    (60, 40, 28),
    (105, 70, 40),
    (190, 150, 90),
    (150, 60, 30),
    (170, 170, 170),
)


# ---------------------------------------------------------------------------------------------- colours


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> RGB:
    return tuple(int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)  # type: ignore[return-value]


def palette_colour(rng: np.random.Generator) -> RGB:
    """A garment or prop colour from one wide palette (all hues, neutrals, dark to light), the same for every class."""
    if rng.random() < 0.25:
        v = rng.uniform(0.06, 0.97)
        return _jitter(rng, (v * 255, v * 255, v * 255), 10)
    h, s, v = rng.random(), rng.uniform(0.2, 0.95), rng.uniform(0.2, 0.97)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def skin_colour(rng: np.random.Generator) -> RGB:
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    a, b = np.array(SKIN_TONES[i], float), np.array(SKIN_TONES[i + 1], float)
    return _jitter(rng, a + (b - a) * (t - i), 8)


def hair_colour(rng: np.random.Generator) -> RGB:
    return _jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 12)


def background_colour(rng: np.random.Generator) -> RGB:
    """Studio backdrops are mostly light and plain; a share are coloured, drawn from the garment palette."""
    if rng.random() < 0.5:
        v = rng.uniform(0.75, 1.0)
        return _jitter(rng, (v * 255, v * 250, v * 240), 12)
    return palette_colour(rng)


def colour_distance(a: RGB, b: RGB) -> float:
    return math.dist(a, b)


def distinct_colour(
    rng: np.random.Generator, avoid: Sequence[RGB], sampler: Callable[[np.random.Generator], RGB] = palette_colour
) -> RGB:
    """A colour far enough from `avoid` that the edge between them (a hem on skin, say) stays visible."""
    colour = sampler(rng)
    for _ in range(30):
        if all(colour_distance(colour, other) >= 70 for other in avoid):
            break
        colour = sampler(rng)
    return colour


def shade(colour: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter (factor > 1, towards white) version of a colour."""
    if factor <= 1:
        return tuple(int(c * factor) for c in colour)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * (factor - 1)) for c in colour)  # type: ignore[return-value]


def edge_colour(colour: RGB) -> RGB:
    """Outline colour: darker for light colours, lighter for very dark ones, so seams and hems show."""
    return shade(colour, 0.55) if sum(colour) > 150 else shade(colour, 1.45)


@dataclass(frozen=True)
class Paint:
    """How a garment is filled: a colour, optionally a two-colour pattern with a period in body units."""

    colour: RGB
    pattern: str = "plain"
    colour2: RGB = (0, 0, 0)
    period: float = 0.02
    angle: float = 0.0

    @property
    def edge(self) -> RGB:
        return edge_colour(self.colour)


def random_paint(rng: np.random.Generator, avoid: Sequence[RGB] = ()) -> Paint:
    colour = distinct_colour(rng, avoid)
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS)]
    if pattern == "plain":
        return Paint(colour)
    return Paint(
        colour,
        pattern,
        colour2=distinct_colour(rng, [colour]),
        period=float(rng.uniform(0.02, 0.04)),
        angle=float(rng.choice([0.0, 90.0, 45.0, -45.0])),
    )


# ----------------------------------------------------------------------------------------------- shapes


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, start: float = 0.0, end: float = 360.0) -> Poly:
    """Points on an ellipse (or an arc of it, angles in degrees, 0 = +x, 90 = +y i.e. downwards)."""
    angles = np.radians(np.linspace(start, end, n, endpoint=end - start < 360))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def strip(centre: Sequence[Point], half_widths: Sequence[float]) -> Poly:
    """A band of varying width around a polyline (limbs, sleeves, bands); ends are cut square."""
    n = len(centre)
    left: Poly = []
    right: Poly = []
    for i, ((x, y), w) in enumerate(zip(centre, half_widths, strict=True)):
        (x0, y0), (x1, y1) = centre[max(i - 1, 0)], centre[min(i + 1, n - 1)]
        dx, dy = x1 - x0, y1 - y0
        norm = math.hypot(dx, dy) or 1e-9
        nx, ny = -dy / norm * w, dx / norm * w
        left.append((x + nx, y + ny))
        right.append((x - nx, y - ny))
    return left + right[::-1]


def interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear interpolation, clamped at the ends (numpy.interp for one float, without its overhead)."""
    if x <= xs[0]:
        return ys[0]
    i = bisect.bisect_right(xs, x)
    if i >= len(xs):
        return ys[-1]
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ys[i - 1] + t * (ys[i] - ys[i - 1])


def clip_below(poly: Poly, y: float) -> Poly:
    """The part of a polygon with body-y <= `y` (Sutherland-Hodgman against one horizontal line): hems."""
    out: Poly = []
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        in1, in2 = y1 <= y, y2 <= y
        if in1:
            out.append((x1, y1))
        if in1 != in2:
            t = (y - y1) / (y2 - y1)
            out.append((x1 + t * (x2 - x1), y))
    return out


def clip_above(poly: Poly, y: float) -> Poly:
    """The part of a polygon with body-y >= `y`."""
    flipped = clip_below([(x, -py) for x, py in poly], -y)
    return [(x, -py) for x, py in flipped]


def mirror(poly: Poly) -> Poly:
    return [(-x, y) for x, y in poly]


# ----------------------------------------------------------------------------------------------- canvas


class Canvas:
    """An RGB image plus the map from body units to pixels (scale, rotation about a pivot, offset)."""

    def __init__(
        self,
        width: int,
        height: int,
        scale: float,
        pivot: Point,
        pivot_px: Point,
        angle_deg: float = 0.0,
        supersample: int = 1,
    ) -> None:
        self.width, self.height, self.ss = width, height, supersample
        self.scale = scale
        self.image = Image.new("RGB", (width * supersample, height * supersample))
        self.draw = ImageDraw.Draw(self.image)
        self._pivot, self._pivot_px = pivot, pivot_px
        self._cos, self._sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))

    def px(self, points: Sequence[Point]) -> list[Point]:
        """Body units -> supersampled pixel coordinates."""
        (px, py), (ox, oy), k, ss = self._pivot, self._pivot_px, self.scale, self.ss
        c, s = self._cos, self._sin
        return [
            ((ox + (c * (x - px) - s * (y - py)) * k) * ss, (oy + (s * (x - px) + c * (y - py)) * k) * ss)
            for x, y in points
        ]

    def pixel_box(self, points: Sequence[Point]) -> tuple[float, float, float, float] | None:
        """The axis-aligned box (x0, y0, x1, y1) around points, in pixels of the output image, clipped to it.

        None when the points lie wholly outside the picture. Rotation is applied, so the box is the bounding box
        of the rotated shape.
        """
        xs, ys = zip(*((x / self.ss, y / self.ss) for x, y in self.px(points)), strict=True)
        x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
        x1, y1 = min(float(self.width), max(xs)), min(float(self.height), max(ys))
        return (float(x0), float(y0), float(x1), float(y1)) if x1 > x0 and y1 > y0 else None

    def line_width(self, units: float) -> int:
        return max(1, round(units * self.scale * self.ss))

    def background(self, top: RGB, bottom: RGB | None = None) -> None:
        w, h = self.image.size
        if bottom is None:
            self.draw.rectangle((0, 0, w, h), fill=top)
            return
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        arr = np.asarray(top, np.float32) * (1 - ramp) + np.asarray(bottom, np.float32) * ramp
        self.image.paste(Image.fromarray(np.repeat(arr, w, axis=1).astype(np.uint8)))

    def fill(self, polys: Sequence[Poly], paint: Paint | RGB, outline: bool = True, edge_units: float = 0.005) -> None:
        """Fill the union of polygons with a colour or a patterned paint, then draw their outlines."""
        polys = [p for p in polys if len(p) >= 3]
        if not polys:
            return
        if isinstance(paint, Paint):
            colour, edge = paint.colour, paint.edge
        else:
            colour, edge, paint = paint, edge_colour(paint), Paint(paint)
        pixel_polys = [self.px(p) for p in polys]
        if paint.pattern == "plain":
            for pp in pixel_polys:
                self.draw.polygon(pp, fill=colour)
        else:
            self._fill_pattern(pixel_polys, paint)
        if outline:
            width = self.line_width(edge_units)
            for pp in pixel_polys:
                self.draw.line([*pp, pp[0]], fill=edge, width=width, joint="curve")

    def _fill_pattern(self, pixel_polys: list[list[Point]], paint: Paint) -> None:
        mask = Image.new("L", self.image.size, 0)
        mdraw = ImageDraw.Draw(mask)
        for pp in pixel_polys:
            mdraw.polygon(pp, fill=255)
        box = mask.getbbox()
        if box is None:
            return
        x0, y0, x1, y1 = box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        period = max(3.0, paint.period * self.scale * self.ss)
        if paint.pattern == "stripes":
            a = math.radians(paint.angle)
            on = ((xx * math.cos(a) + yy * math.sin(a)) / period) % 1.0 < 0.5
        elif paint.pattern == "checks":
            on = ((xx // period + yy // period) % 2) == 0
        else:  # dots
            fx, fy = (xx % period) - period / 2, (yy % period) - period / 2
            on = fx * fx + fy * fy < (period * 0.28) ** 2
        arr = np.where(on[..., None], np.asarray(paint.colour2, np.uint8), np.asarray(paint.colour, np.uint8))
        self.image.paste(Image.fromarray(arr.astype(np.uint8)), (x0, y0), mask.crop(box))

    def lines(self, points: Sequence[Point], colour: RGB, width_units: float) -> None:
        self.draw.line(self.px(points), fill=colour, width=self.line_width(width_units), joint="curve")

    def finish(self, rng: np.random.Generator) -> Image.Image:
        """Downsample to the output size, then add the photo nuisances: exposure, contrast and sensor noise."""
        image = self.image.reduce(self.ss) if self.ss > 1 else self.image
        arr = np.asarray(image, dtype=np.float32)
        gain, contrast = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
        arr = ((arr - 128.0) * contrast + 128.0) * gain
        if rng.random() < 0.6:
            arr += rng.standard_normal(arr.shape, dtype=np.float32) * rng.uniform(1.5, 7.0)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
