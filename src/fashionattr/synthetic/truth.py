"""The whole truth of a synthetic drawing: for every attribute, what the picture shows of it.

FashionAI labels each image for one attribute. A catalogue asks every attribute of every photo, so scoring it needs
the rest too: a skirt photo also shows sleeves, a neckline close-up shows no hem at all. The scenes record each
part they draw (`Drawn`: the attribute, the class it was drawn as, where it lies) and each shape drawn over others
(covers: an occluder, a coat over trousers, a cape over the arms); `complete_truth` then decides per attribute:

- the class, where the part is drawn at a class's landmark, lies inside the picture and is not covered;
- `Invisible`, where the part is not worn (trousers have no skirt length; a plain top has no collar), lies outside
  the picture (a close-up shows no hem) or is covered;
- `UNDECIDED`, where it is drawn but cannot be told: between two classes (the `m` samples), cut by the picture's edge
  or half covered, or too small at the sizes the project trains at (a neckline on a full figure).

A part drawn later wins over one drawn earlier (a coat's sleeves over the shirt's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fashionattr.synthetic.draw import Point, Poly

INVISIBLE = "Invisible"
UNDECIDED = "?"
"""The complete-label value of a part that is drawn but cannot be told; scores leave it out."""

LANDMARK_TOLERANCE = 0.2
"""A hem within this share of the gap to the nearest other landmark is drawn at that landmark's class."""
SHOWN, HIDDEN = 0.9, 0.1
"""A part is shown when this share of its box is in the picture and uncovered, hidden when at most this share is."""


def class_at(table: Mapping[str, float], value: float) -> str | None:
    """The class whose landmark `value` is drawn at, or None when it lies between two classes."""
    name = min(table, key=lambda c: abs(table[c] - value))
    gap = min(abs(table[other] - table[name]) for other in table if other != name)
    return name if abs(value - table[name]) <= LANDMARK_TOLERANCE * gap else None


@dataclass(frozen=True)
class Drawn:
    """One drawn part: its attribute, the class it shows (None: cannot be told) and where it lies (body units).

    A part without `boxes` is judged as recorded (a design part of a close-up, or a decision the scene makes);
    one with boxes (both sleeve ends, a hem band) is shown where at least one box is in the picture and uncovered.
    """

    attribute: str
    value: str | None
    boxes: tuple[Poly, ...] = ()
    covers_before: int = 0
    """How many covers were drawn before this part: only later covers can hide it."""


def _grid(box: Poly, steps: int = 5) -> list[Point]:
    xs, ys = [x for x, _ in box], [y for _, y in box]
    return [
        (float(x), float(y)) for x in np.linspace(min(xs), max(xs), steps) for y in np.linspace(min(ys), max(ys), steps)
    ]


def inside(point: Point, polygon: Poly) -> bool:
    """Whether a point lies inside a polygon (even-odd rule)."""
    x, y = point
    result = False
    for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            result = not result
    return result


def shown_share(box: Poly, in_picture: Callable[[Point], bool], covers: Sequence[Poly]) -> float:
    """The share of a box's points that are in the picture and under none of `covers`."""
    points = _grid(box)
    seen = [p for p in points if in_picture(p) and not any(inside(p, cover) for cover in covers)]
    return len(seen) / len(points)


def complete_truth(
    attributes: Sequence[str], drawn: Sequence[Drawn], covers: Sequence[Poly], in_picture: Callable[[Point], bool]
) -> dict[str, str]:
    """attribute -> the class the picture shows, `INVISIBLE`, or `UNDECIDED` (see the module's rules)."""
    truth: dict[str, str] = {}
    for attribute in attributes:
        value = INVISIBLE
        for part in (p for p in drawn if p.attribute == attribute):
            later = covers[part.covers_before :]
            share = max((shown_share(box, in_picture, later) for box in part.boxes), default=1.0)
            if share >= SHOWN:
                value = part.value if part.value is not None else UNDECIDED
            elif share > HIDDEN:
                value = UNDECIDED
            # a hidden part leaves what an earlier part showed
        truth[attribute] = value
    return truth
