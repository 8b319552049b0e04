"""The drawn human figure and the garments cut to it, in body units (head top y=0, floor y=1).

The body defines the landmarks that length classes refer to (elbow, wrist, waist, hip, knee, ankle ...), so
a hem or sleeve end is placed on a named landmark instead of at a free-floating coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fashionattr.synthetic.draw import RGB, Canvas, Point, Poly, ellipse, interp, strip

# Vertical landmarks (body units from the top of the head; the floor is 1.0).
CHIN, NECK_BASE, SHOULDER = 0.125, 0.19, 0.205
BUST, UNDER_BUST, WAIST, HIP, CROTCH = 0.27, 0.30, 0.385, 0.47, 0.525
MID_THIGH, KNEE, MID_CALF, ANKLE, FLOOR = 0.62, 0.735, 0.845, 0.95, 1.0
# Distances along the arm from the shoulder joint.
ELBOW_S, WRIST_S, FINGERTIP_S = 0.165, 0.32, 0.405

_TORSO_Y = (0.185, 0.205, 0.235, BUST, 0.33, WAIST, 0.43, HIP, CROTCH)
_TORSO_W = (0.022, 0.108, 0.098, 0.088, 0.076, 0.066, 0.078, 0.09, 0.093)
_LEG_Y = (0.46, 0.52, MID_THIGH, KNEE, 0.79, 0.87, ANKLE)
_LEG_W = (0.047, 0.046, 0.038, 0.027, 0.03, 0.022, 0.016)
_ARM_S = (-0.03, 0.0, ELBOW_S, WRIST_S)
_ARM_W = (0.028, 0.027, 0.019, 0.0135)
_HAND_S = (WRIST_S - 0.003, 0.345, 0.38, FINGERTIP_S)
_HAND_W = (0.0135, 0.019, 0.017, 0.007)


@dataclass(frozen=True)
class Body:
    """One figure's proportions and pose; every coordinate method takes `side` -1 (image left) or +1."""

    width: float = 1.0
    arm_angle: tuple[float, float] = (0.35, 0.35)
    forearm_bend: tuple[float, float] = (0.05, 0.05)
    ankle_x: float = 0.058

    @classmethod
    def random(cls, rng: np.random.Generator) -> Body:
        a = rng.uniform(0.3, 0.48)
        return cls(
            width=float(rng.uniform(0.92, 1.08)),
            arm_angle=(float(a + rng.uniform(-0.04, 0.04)), float(a + rng.uniform(-0.04, 0.04))),
            forearm_bend=(float(rng.uniform(-0.02, 0.1)), float(rng.uniform(-0.02, 0.1))),
            ankle_x=float(rng.uniform(0.05, 0.075)),
        )

    def torso_hw(self, y: float) -> float:
        return float(interp(y, _TORSO_Y, _TORSO_W)) * self.width

    def leg_cx(self, side: int, y: float) -> float:
        t = (y - HIP) / (ANKLE - HIP)
        return side * (0.048 * self.width + t * (self.ankle_x - 0.048 * self.width))

    def leg_hw(self, y: float) -> float:
        return float(interp(y, _LEG_Y, _LEG_W)) * self.width

    def leg_outer(self, y: float) -> float:
        """How far from the axis the legs reach at height y (for skirts and coats that must cover them)."""
        return self.leg_cx(1, y) + self.leg_hw(y)

    def _arm_dirs(self, side: int) -> tuple[Point, Point, Point]:
        a = self.arm_angle[(side + 1) // 2]
        b = a - self.forearm_bend[(side + 1) // 2]
        joint = (side * 0.093 * self.width, 0.215)
        return joint, (side * math.sin(a), math.cos(a)), (side * math.sin(b), math.cos(b))

    def arm_point(self, side: int, s: float) -> Point:
        joint, d1, d2 = self._arm_dirs(side)
        if s <= ELBOW_S:
            return joint[0] + s * d1[0], joint[1] + s * d1[1]
        ex, ey = joint[0] + ELBOW_S * d1[0], joint[1] + ELBOW_S * d1[1]
        return ex + (s - ELBOW_S) * d2[0], ey + (s - ELBOW_S) * d2[1]

    def arm_hw(self, s: float) -> float:
        return float(interp(s, _ARM_S, _ARM_W)) * self.width

    def arm_strip(self, side: int, s0: float, s1: float, ease: float = 0.0, flare: float = 0.0) -> Poly:
        """The arm (or a sleeve, with `ease` added to its half-width) between two distances from the shoulder."""
        ss = sorted({*(s0 + (s1 - s0) * i / 7 for i in range(8)), *[b for b in (0.0, ELBOW_S) if s0 < b < s1]})
        centre = [self.arm_point(side, s) for s in ss]
        widths = [self.arm_hw(min(s, WRIST_S)) + ease + flare * max(0.0, s - WRIST_S) for s in ss]
        return strip(centre, widths)

    def hand(self, side: int) -> Poly:
        ss = np.linspace(_HAND_S[0], _HAND_S[-1], 7)
        return strip([self.arm_point(side, s) for s in ss], [float(interp(s, _HAND_S, _HAND_W)) for s in ss])

    def leg(self, side: int, y0: float = 0.46, y1: float = ANKLE + 0.005, ease: float = 0.0) -> Poly:
        ys = np.linspace(y0, y1, 9)
        outer = [(self.leg_cx(side, y) + side * (self.leg_hw(y) + ease), y) for y in ys]
        inner = [(self.leg_cx(side, y) - side * (self.leg_hw(y) + ease), y) for y in ys]
        return outer + inner[::-1]

    def torso(self, y1: float = CROTCH + 0.01) -> Poly:
        ys = [y for y in _TORSO_Y[1:] if y < y1] + [y1]
        right = [(self.torso_hw(y), y) for y in ys]
        top = [(0.022 * self.width, NECK_BASE - 0.005), (0.06 * self.width, NECK_BASE + 0.003)]
        half = top + right
        return half + [(-x, y) for x, y in reversed(half)]

    def foot(self, side: int) -> Poly:
        return ellipse(self.leg_cx(side, ANKLE) + side * 0.012, 0.977, 0.03, 0.024, n=16)


@dataclass(frozen=True)
class Look:
    """The colours of one image: skin, hair, background, and the paints of the garments."""

    skin: RGB
    hair: RGB
    background: RGB


def draw_hair_back(canvas: Canvas, look: Look, style: int) -> None:
    """Long hair hangs behind the shoulders (drawn before the body), so it never hides a neckline."""
    if style == 2:
        canvas.fill([[(-0.062, 0.03), (0.062, 0.03), (0.075, 0.25), (-0.075, 0.25)]], look.hair, outline=False)


def draw_head(canvas: Canvas, look: Look, style: int, back_view: bool = False) -> None:
    """Neck, head, face and hair; seen from the back the hair covers the head and the nape."""
    canvas.fill(
        [[(-0.021, 0.1), (0.021, 0.1), (0.022, NECK_BASE + 0.01), (-0.022, NECK_BASE + 0.01)]], look.skin, False
    )
    if back_view:
        canvas.fill([ellipse(0.0, 0.06, 0.052, 0.068)], look.hair, outline=False)
        canvas.fill([[(-0.05, 0.06), (0.05, 0.06), (0.058, 0.27), (0.0, 0.29), (-0.058, 0.27)]], look.hair, False)
        return
    canvas.fill([ellipse(0.0, 0.063, 0.047, 0.063)], look.skin, outline=False)
    eye = (30, 25, 25)
    canvas.fill([ellipse(-0.017, 0.062, 0.0055, 0.004, n=10), ellipse(0.017, 0.062, 0.0055, 0.004, n=10)], eye, False)
    canvas.lines([(-0.011, 0.099), (0.0, 0.102), (0.011, 0.099)], (150, 60, 60), 0.003)
    if style == 0:
        canvas.fill([ellipse(0.0, 0.045, 0.051, 0.048, start=180, end=360, n=16)], look.hair, outline=False)
    else:
        canvas.fill([ellipse(0.0, 0.05, 0.054, 0.053, start=170, end=370, n=18)], look.hair, outline=False)


def draw_body(canvas: Canvas, body: Body, look: Look, arms: bool = True, legs: bool = True) -> None:
    """Skin-coloured limbs and torso, drawn under the garments."""
    parts: list[Poly] = []
    if arms:
        for side in (-1, 1):
            parts += [body.arm_strip(side, -0.03, WRIST_S), body.hand(side)]
    if legs:
        parts += [body.leg(-1), body.leg(1)]
    parts.append(body.torso())
    canvas.fill(parts, look.skin, outline=False)
    if legs:
        for side in (-1, 1):
            canvas.fill([body.leg(side)], look.skin, outline=True, edge_units=0.002)


def draw_shoes(canvas: Canvas, body: Body, colour: RGB) -> None:
    canvas.fill([body.foot(-1), body.foot(1)], colour)


# ---------------------------------------------------------------------------------------------- garments


def symmetric_edge(right_half: Poly) -> Poly:
    """Mirror a right half, given from the outside in, into a full edge from left to right."""
    left = [(-x, y) for x, y in right_half]
    if abs(right_half[-1][0]) < 1e-9:
        return left + right_half[::-1][1:]
    return left + right_half[::-1]


def neckline_edge(body: Body, kind: str, depth: float = 0.0, width: float = 1.0, shoulder: float = 0.118) -> Poly:
    """Top edge of a garment that covers the shoulders, from the left shoulder tip to the right one.

    `kind` is scoop (round; `width` widens it towards a straight boat neck), v, square or boat; `depth` moves the
    bottom of the opening down. A smaller `shoulder` leaves the shoulder tips bare (sleeveless tops).
    """
    w = body.width
    tip = (shoulder * w, SHOULDER)
    if kind == "boat":
        half = [(0.08 * w, NECK_BASE + 0.012 + depth), (0.0, NECK_BASE + 0.012 + depth)]
    elif kind == "v":
        half = [(0.034 * w, NECK_BASE - 0.002), (0.0, 0.26 + depth)]
    elif kind == "square":
        half = [(0.052 * w, NECK_BASE), (0.052 * w, 0.25 + depth), (0.0, 0.25 + depth)]
    else:  # scoop: a round crew neck just under the neck base
        rx, ry = 0.036 * width * w, 0.04 + depth
        half = ellipse(0.0, NECK_BASE - 0.01, rx, ry, start=0, end=90, n=9)
    return symmetric_edge([tip, *half])


def top_polygon(body: Body, edge: Poly, hem: float, ease: float = 0.008, flare: float = 0.0) -> Poly:
    """A torso garment: the given top edge (left to right), down the sides to a hem at body-y `hem`."""
    y_start = max(edge[-1][1], 0.235)
    ys = [y for y in np.linspace(y_start, hem, 10)]
    right = [(side_hw(body, y, ease, flare), y) for y in ys]
    left = [(-x, y) for x, y in reversed(right)]
    return [*edge, *right, *left]


def side_hw(body: Body, y: float, ease: float, flare: float = 0.0) -> float:
    """Half-width of a garment at height y that covers the torso and, below the hips, both legs."""
    hw = body.torso_hw(min(y, CROTCH))
    if y > HIP:
        hw = max(hw, body.leg_outer(y) + 0.006) + flare * (y - HIP)
    return hw + ease


def sleeves(body: Body, end: float | None, ease: float = 0.006, start: float = -0.03) -> list[Poly]:
    """Both sleeves ending `end` along the arm; past the wrist they widen so the hand disappears inside."""
    if end is None:
        return []
    flare = 0.22 if end > WRIST_S else 0.0
    return [body.arm_strip(side, start, end, ease + (0.006 if end < 0.06 else 0.0), flare) for side in (-1, 1)]


def skirt_polygon(body: Body, hem: float, flare: float, top: float = WAIST) -> Poly:
    ys = np.linspace(top, hem, 12)
    right = [(side_hw(body, y, 0.01, flare), y) for y in ys]
    bottom = [(right[-1][0] * 0.5, hem + 0.008), (-right[-1][0] * 0.5, hem + 0.008)]
    return right + bottom + [(-x, y) for x, y in reversed(right)]


def pants_polygons(body: Body, hem: float, ease: float, flare: float) -> list[Poly]:
    """Two trouser legs plus the seat, so the hem of each leg sits at body-y `hem`."""
    polys = []
    for side in (-1, 1):
        ys = np.linspace(CROTCH, hem, 8)
        outer = [(body.leg_cx(side, y) + side * (body.leg_hw(y) + ease + flare * (y - CROTCH)), y) for y in ys]
        inner = [(body.leg_cx(side, y) - side * (body.leg_hw(y) + ease + flare * (y - CROTCH)), y) for y in ys]
        seat = [
            (0.0, WAIST),
            (side * (body.torso_hw(WAIST) + 0.008), WAIST),
            (side * (body.torso_hw(HIP) + 0.008), HIP),
        ]
        polys.append(seat + outer + inner[::-1] + [(0.0, CROTCH)])
    return polys
