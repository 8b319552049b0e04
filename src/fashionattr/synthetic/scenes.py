"""Scenes of the synthetic generator: one drawing per attribute, in which the labelled class is visible.

Length attributes show the full figure with the hem or sleeve end on the body landmark the class names;
design attributes show the upper body close up. Everything else (colours, patterns, pose, framing, the other
garments, props) is drawn from the same distributions for every class, so only the labelled part tells them apart.
Class names come from the schema; the tables below map each name to its geometry and are checked against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fashionattr.schema import Attribute
from fashionattr.synthetic import figure as fig
from fashionattr.synthetic.draw import (
    RGB,
    Canvas,
    Paint,
    Poly,
    background_colour,
    clip_above,
    clip_below,
    distinct_colour,
    ellipse,
    hair_colour,
    mirror,
    random_paint,
    shade,
    skin_colour,
    strip,
)
from fashionattr.synthetic.truth import UNDECIDED, Drawn, class_at, complete_truth

AMBIGUOUS_RATE = 0.04
"""Chance that a sample is drawn between its class and a neighbour, which is then marked `m` (maybe)."""

# Hem heights (body units, floor = 1) and sleeve ends (distance along the arm), keyed by class name.
SKIRT_HEM = {
    "Short Length": 0.615,
    "Knee Length": 0.735,
    "Midi Length": 0.845,
    "Ankle Length": 0.93,
    "Floor Length": 1.01,
}
PANT_HEM = {"Short Pant": 0.585, "Mid Length": 0.69, "3/4 Length": 0.795, "Cropped Pant": 0.885, "Full Length": 0.985}
COAT_HEM = {
    "Micro Length": 0.265,
    "High Waist Length": 0.37,
    "Regular Length": 0.48,
    "Long Length": 0.605,
    "Knee Length": 0.725,
    "Midi Length": 0.84,
    "Ankle&Floor Length": 0.965,
}
SLEEVE_END = {
    "Sleeveless": 0.0,
    "Cup Sleeves": 0.045,
    "Short Sleeves": 0.095,
    "Elbow Sleeves": 0.168,
    "3/4 Sleeves": 0.245,
    "Wrist Length": 0.318,
    "Long Sleeves": 0.372,
    "Extra Long Sleeves": 0.47,
}
# Design classes that a sample may be drawn part-way towards (the partner is then marked `m`).
PARTNERS = {
    "neckline_design_labels": {
        "Deep V Neckline": "V Neckline",
        "V Neckline": "Deep V Neckline",
        "Strapless Neck": "Sweat Heart Neck",
        "Sweat Heart Neck": "Strapless Neck",
        "Straight Neck": "Round Neckline",
        "Round Neckline": "Straight Neck",
    },
    "collar_design_labels": {"Peter Pan": "Puritan Collar", "Puritan Collar": "Peter Pan"},
    "lapel_design_labels": {
        "Notched": "Shawl Collar",
        "Shawl Collar": "Plus Size Shawl",
        "Plus Size Shawl": "Shawl Collar",
        "Collarless": "Shawl Collar",
    },
    "neck_design_labels": {"Turtle Neck": "Low Turtle Neck", "Low Turtle Neck": "Turtle Neck"},
}
INVISIBLE = "Invisible"
NECKLINE_OF_KIND = {"scoop": "Round Neckline", "v": "V Neckline", "square": "Square Neckline", "boat": "Straight Neck"}
"""The neckline class of each everyday top's neckline, for the complete labels of close-ups."""
SKIRT, COAT, PANT, SLEEVE = "skirt_length_labels", "coat_length_labels", "pant_length_labels", "sleeve_length_labels"
COLLAR, LAPEL, NECK, NECKLINE = (
    "collar_design_labels",
    "lapel_design_labels",
    "neck_design_labels",
    "neckline_design_labels",
)
DESIGN_ATTRIBUTES = (COLLAR, LAPEL, NECK, NECKLINE)

# Where the labelled part lies (body units), for the part boxes the generator writes beside the labels.
HEM_MARGIN = 0.05
"""Half the height of a hem's box: about half the step between neighbouring length classes' landmarks."""
SIDE_MARGIN = 0.03
"""How far a hem's box reaches beyond the garment's sides."""
SLEEVE_END_MARGIN = 0.045
"""Half the side of the square around each sleeve end."""
DESIGN_REGIONS: dict[str, tuple[str, float, float, float]] = {
    "neckline_design_labels": ("neckline", 0.14, 0.15, 0.36),
    "collar_design_labels": ("collar", 0.075, 0.15, 0.27),
    "neck_design_labels": ("neck", 0.06, 0.12, 0.22),
    "lapel_design_labels": ("lapel", 0.09, 0.17, 0.37),
}
"""attribute -> (part name, half-width, top, bottom): the region that holds every class's drawing of the part."""


@dataclass
class Scene:
    """One image being drawn: canvas, figure, colours, and the colours already used (kept apart for contrast)."""

    canvas: Canvas
    body: fig.Body
    look: fig.Look
    rng: np.random.Generator
    closeup: bool
    hair_style: int
    used: list[RGB] = field(default_factory=list)
    parts: list[tuple[str, Poly]] = field(default_factory=list)
    """The labelled part's region(s), by name, as outlines in body units; the pointing game scores heatmaps on them."""
    drawn: list[Drawn] = field(default_factory=list)
    """Every part drawn, for every attribute: what the complete labels are decided from."""
    covers: list[Poly] = field(default_factory=list)
    """Shapes drawn over others (occluders, a coat, a cape), in drawing order."""
    category: str = ""
    """The product the photo shows (skirt, dress, trousers, coat, jacket, top, shirt), as a retailer files it."""

    def mark(self, name: str, outline: Poly) -> None:
        self.parts.append((name, outline))

    def mark_hem(self, polys: list[Poly], hem: float) -> None:
        """The band around a garment's hem at body-y `hem`, as wide as the garment there."""
        self.mark("hem", hem_box(polys, hem))

    def sleeve_boxes(self, end: float) -> tuple[Poly, Poly]:
        """A square around the end of each sleeve (for a sleeveless top, the armhole)."""
        m = SLEEVE_END_MARGIN
        points = [self.body.arm_point(side, end) for side in (-1, 1)]
        left, right = ([(x - m, y - m), (x + m, y - m), (x + m, y + m), (x - m, y + m)] for x, y in points)
        return left, right

    def mark_sleeve_ends(self, end: float) -> None:
        for box in self.sleeve_boxes(end):
            self.mark("sleeve_end", box)

    def record(self, attribute: str, value: str | None, boxes: tuple[Poly, ...] = ()) -> None:
        """A part drawn for `attribute` showing class `value` (None: drawn, but no class can be told)."""
        self.drawn.append(Drawn(attribute, value, boxes, covers_before=len(self.covers)))

    def record_sleeves(self, end: float | None) -> None:
        """Sleeves ending `end` along the arm (0: sleeveless; None: drawn so that no class can be told)."""
        if end is None:
            self.record(SLEEVE, None)
        else:
            self.record(SLEEVE, class_at(SLEEVE_END, end), self.sleeve_boxes(max(end, 0.0)))

    def cover(self, shape: Poly) -> None:
        self.covers.append(shape)

    def in_picture(self, point: tuple[float, float]) -> bool:
        [(x, y)] = self.canvas.px([point])
        return 0 <= x < self.canvas.width * self.canvas.ss and 0 <= y < self.canvas.height * self.canvas.ss

    def truth(self, attributes: list[str]) -> dict[str, str]:
        return complete_truth(attributes, self.drawn, self.covers, self.in_picture)

    def mark_design(self, attribute: str) -> None:
        name, half, top, bottom = DESIGN_REGIONS[attribute]
        self.mark(name, [(-half, top), (half, top), (half, bottom), (-half, bottom)])

    def paint(self) -> Paint:
        p = random_paint(self.rng, self.used)
        self.used.append(p.colour)
        return p

    def colour(self) -> RGB:
        c = distinct_colour(self.rng, self.used)
        self.used.append(c)
        return c


def hem_box(polys: list[Poly], hem: float) -> Poly:
    """The band around a garment's hem at body-y `hem`, as wide as the garment there."""
    xs = [x for poly in polys for x, y in poly if y >= hem - HEM_MARGIN] or [x for poly in polys for x, _ in poly]
    x0, x1 = min(xs) - SIDE_MARGIN, max(xs) + SIDE_MARGIN
    y0, y1 = hem - HEM_MARGIN, hem + HEM_MARGIN
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def new_scene(rng: np.random.Generator, size: int, framing: str) -> Scene:
    """Frame, background and figure; about one image in ten is 4:3 portrait, as in FashionAI.

    `framing` is `full` (head to feet), `three-quarter` (head to below the knees: sleeves, big enough to read at
    low resolution) or `closeup` (head and shoulders: the design attributes).
    """
    width = size
    height = round(size * 4 / 3) if rng.random() < 0.1 else size
    angle = float(rng.uniform(-5, 5))
    if framing == "closeup":
        scale = width / rng.uniform(0.35, 0.4)
        top = rng.uniform(-0.02, 0.01)
        pivot, pivot_px = (0.0, 0.2), (width * (0.5 + rng.uniform(-0.03, 0.03)), (0.2 - top) * scale)
    else:
        shown = 1.0 if framing == "full" else 0.8
        scale = min(height * rng.uniform(0.86, 0.94), width * 1.35 * shown) / shown
        top_px = (height - scale * shown) * rng.uniform(0.4, 0.6)
        pivot, pivot_px = (0.0, 0.5), (width * (0.5 + rng.uniform(-0.05, 0.05)), top_px + 0.5 * scale)
    canvas = Canvas(width, height, scale, pivot, pivot_px, angle, supersample=2 if size <= 256 else 1)
    look = fig.Look(skin=skin_colour(rng), hair=hair_colour(rng), background=background_colour(rng))
    gradient = shade(look.background, rng.uniform(0.7, 1.2)) if rng.random() < 0.4 else None
    canvas.background(look.background, gradient)
    if framing == "full" and rng.random() < 0.4:
        canvas.fill([[(-3.0, 0.995), (3.0, 0.995), (3.0, 3.0), (-3.0, 3.0)]], shade(look.background, 0.85), False)
    sc = Scene(canvas, fig.Body.random(rng), look, rng, framing == "closeup", int(rng.integers(3)))
    sc.used += [look.skin, look.background]
    return sc


def draw_figure(sc: Scene, arms: bool = True, back_view: bool = False) -> None:
    fig.draw_hair_back(sc.canvas, sc.look, 2 if back_view else sc.hair_style)
    fig.draw_body(sc.canvas, sc.body, sc.look, arms=arms, legs=not sc.closeup)
    fig.draw_head(sc.canvas, sc.look, sc.hair_style, back_view=back_view)


# ------------------------------------------------------------------------------------ class -> geometry


def pick_length(
    rng: np.random.Generator, attr: Attribute, target: int, table: Mapping[str, float]
) -> tuple[float, tuple[int, ...]]:
    """The hem (or sleeve end) for a class: near its landmark, or part-way to a neighbour that is then `m`."""
    name = attr.classes[target]
    order = sorted(table, key=table.__getitem__)
    i = order.index(name)
    neighbours = [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)]
    value = table[name]
    if rng.random() < AMBIGUOUS_RATE:
        other = neighbours[int(rng.integers(len(neighbours)))]
        return value + (table[other] - value) * rng.uniform(0.3, 0.45), (attr.class_index(other),)
    gap = min(abs(table[n] - value) for n in neighbours)
    return value + gap * rng.uniform(-0.12, 0.12), ()


def pick_design(rng: np.random.Generator, attr: Attribute, target: int) -> tuple[float, tuple[int, ...]]:
    """How far (0 = typical) a design is drawn towards its confusable partner, and the partner's index if so."""
    partner = PARTNERS.get(attr.name, {}).get(attr.classes[target])
    if partner is not None and rng.random() < AMBIGUOUS_RATE * 1.5:
        return float(rng.uniform(0.35, 0.5)), (attr.class_index(partner),)
    return float(rng.uniform(0.0, 0.12)), ()


def lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


# ----------------------------------------------------------------------------------- outfit pieces


def random_sleeve_end(rng: np.random.Generator) -> float:
    return list(SLEEVE_END.values())[int(rng.integers(len(SLEEVE_END)))]


def draw_top(sc: Scene, paint: Paint, sleeve_end: float, hem: float, kind: str | None = None) -> None:
    """A shirt or tee with one of the everyday necklines; sleeveless tops leave the shoulder tips bare."""
    kind = kind or ("scoop", "v", "square", "boat")[int(sc.rng.integers(4))]
    sleeveless = sleeve_end < 0.012
    edge = fig.neckline_edge(sc.body, kind, shoulder=0.085 if sleeveless else 0.118)
    polys = [fig.top_polygon(sc.body, edge, hem)]
    if not sleeveless:
        polys += fig.sleeves(sc.body, sleeve_end)
    sc.canvas.fill(polys, paint)
    sc.record(NECKLINE, NECKLINE_OF_KIND[kind] if sc.closeup else None)  # too small to tell on a whole figure
    sc.record_sleeves(0.0 if sleeveless else sleeve_end)


def draw_lower(sc: Scene, kind: str, hem: float, paint: Paint) -> list[Poly]:
    """A skirt or trousers with the hem at body-y `hem`; trousers vary from skinny to wide. Returns its outlines."""
    if kind == "skirt":
        polys = [fig.skirt_polygon(sc.body, hem, flare=float(sc.rng.uniform(0.0, 0.25)))]
    else:
        ease, flare = float(sc.rng.uniform(0.004, 0.012)), float(sc.rng.choice([0.0, 0.0, 0.05, 0.1]))
        polys = fig.pants_polygons(sc.body, hem, ease, flare)
    sc.canvas.fill(polys, paint)
    attribute, table = (SKIRT, SKIRT_HEM) if kind == "skirt" else (PANT, PANT_HEM)
    sc.record(attribute, class_at(table, hem), (hem_box(polys, hem),))
    return polys


def draw_legwear(sc: Scene) -> None:
    """Shoes always; tights sometimes, so bare leg skin is not tied to how short the skirt is."""
    if sc.rng.random() < 0.3:
        sc.canvas.fill([sc.body.leg(-1, 0.5), sc.body.leg(1, 0.5)], sc.colour(), outline=True)
    fig.draw_shoes(sc.canvas, sc.body, distinct_colour(sc.rng, [sc.look.background]))


def random_lower(sc: Scene) -> tuple[str, float]:
    if sc.rng.random() < 0.5:
        return "skirt", list(SKIRT_HEM.values())[int(sc.rng.integers(len(SKIRT_HEM)))]
    return "pants", list(PANT_HEM.values())[int(sc.rng.integers(len(PANT_HEM)))]


def draw_outfit(sc: Scene, sleeve_end: float, lower: tuple[str, float], dress: bool = False) -> list[Poly]:
    """Top and bottom on a full figure; the top is tucked in or worn over, and a dress shares one paint.

    Returns the outlines of the skirt or trousers.
    """
    top_paint = sc.paint()
    lower_paint = top_paint if dress else sc.paint()
    top_hem = float(sc.rng.uniform(0.43, 0.5))
    draw_legwear(sc)
    if sc.rng.random() < 0.5 or dress:
        draw_top(sc, top_paint, sleeve_end, top_hem)
        return draw_lower(sc, *lower, lower_paint)
    polys = draw_lower(sc, *lower, lower_paint)
    draw_top(sc, top_paint, sleeve_end, top_hem)
    return polys


# ---------------------------------------------------------------------------------------------- props


def bag(x: float, y: float, w: float, h: float) -> tuple[Poly, Poly]:
    """A handbag (body, handle) with its bottom centre at (x, y)."""
    body = [(x - w / 2, y - h), (x + w / 2, y - h), (x + w / 2 * 1.1, y), (x - w / 2 * 1.1, y)]
    handle = strip(ellipse(x, y - h, w * 0.3, h * 0.6, start=180, end=360, n=10), [0.006] * 10)
    return body, handle


def draw_prop(sc: Scene) -> None:
    """A bag or box beside the figure (or at the bottom corner of a close-up), away from the labelled part."""
    if sc.rng.random() > 0.35:
        return
    side = 1 if sc.rng.random() < 0.5 else -1
    w, h = float(sc.rng.uniform(0.08, 0.14)), float(sc.rng.uniform(0.06, 0.12))
    if sc.closeup:
        x, y = side * sc.rng.uniform(0.07 + w / 2, 0.2), float(sc.rng.uniform(0.43, 0.5))
    else:
        x, y = side * sc.rng.uniform(0.23 + w / 2, 0.42), 1.0
    colour = sc.colour()
    if sc.rng.random() < 0.5:
        body, handle = bag(x, y, w, h)
        sc.canvas.fill([handle, body], colour)
    else:
        sc.canvas.fill([[(x - w / 2, y - h), (x + w / 2, y - h), (x + w / 2, y), (x - w / 2, y)]], colour)
        lid = [
            (x - w / 2, y - h),
            (x + w / 2, y - h),
            (x + w / 2 - 0.01, y - h - 0.015),
            (x - w / 2 + 0.01, y - h - 0.015),
        ]
        sc.canvas.fill([lid], shade(colour, 0.8))


def draw_cover(sc: Scene, poly: Poly) -> None:
    """A big occluder (a counter, a sign, a cape) that hides the labelled part: the Invisible class."""
    sc.canvas.fill([poly], sc.paint())
    sc.cover(poly)


# ------------------------------------------------------------------------------------ length scenes


def skirt_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    if attr.classes[target] == INVISIBLE:
        draw_figure(sc)
        lower = random_lower(sc)
        sc.category = "skirt" if lower[0] == "skirt" else "trousers"
        draw_outfit(sc, random_sleeve_end(sc.rng), lower)
        y0 = sc.rng.uniform(0.42, 0.47)
        hw = sc.rng.uniform(0.2, 0.3)
        draw_cover(sc, [(-hw, y0), (hw, y0), (hw, 1.05), (-hw, 1.05)])
        return ()
    hem, maybe = pick_length(sc.rng, attr, target, SKIRT_HEM)
    draw_figure(sc)
    dress = sc.rng.random() < 0.4
    sc.category = "dress" if dress else "skirt"
    skirt = draw_outfit(sc, random_sleeve_end(sc.rng), ("skirt", hem), dress=dress)
    maybe_coat_over(sc, hem)
    sc.mark_hem(skirt, hem)
    draw_prop(sc)
    return maybe


def pant_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "trousers"
    if attr.classes[target] == INVISIBLE:
        draw_figure(sc)
        draw_outfit(sc, random_sleeve_end(sc.rng), random_lower(sc))
        y0 = sc.rng.uniform(0.42, 0.47)
        hw = sc.rng.uniform(0.2, 0.3)
        draw_cover(sc, [(-hw, y0), (hw, y0), (hw, 1.05), (-hw, 1.05)])
        return ()
    hem, maybe = pick_length(sc.rng, attr, target, PANT_HEM)
    draw_figure(sc)
    pants = draw_outfit(sc, random_sleeve_end(sc.rng), ("pants", hem))
    maybe_coat_over(sc, hem)
    sc.mark_hem(pants, hem)
    draw_prop(sc)
    return maybe


def sleeve_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "top"
    if attr.classes[target] == INVISIBLE:
        cape = sc.rng.random() < 0.6
        draw_figure(sc, arms=cape)
        draw_outfit(sc, SLEEVE_END["Wrist Length"] if cape else 0.0, random_lower(sc))
        if not cape:  # a figure cut without arms: no sleeve to see
            sc.record(SLEEVE, INVISIBLE)
        if cape:
            y1 = sc.rng.uniform(0.56, 0.64)
            draw_cover(sc, [(-0.03, 0.185), (0.03, 0.185), (0.13, 0.2), (0.38, y1), (0.0, y1 + 0.04), (-0.38, y1),
                            (-0.13, 0.2)])  # fmt: skip
        return ()
    end, maybe = pick_length(sc.rng, attr, target, SLEEVE_END)
    draw_figure(sc)
    dress = sc.rng.random() < 0.3
    sc.category = "dress" if dress else "top"
    if end >= SLEEVE_END["Elbow Sleeves"] - 0.02 and sc.rng.random() < COAT_OVER_RATE / (1 - COAT_OVER_RATE):
        # the labelled sleeves are a coat's, over a shirt whose own sleeves it covers
        draw_outfit(sc, min(max(end, 0.0), SLEEVE_END["Short Sleeves"]), random_lower(sc), dress=dress)
        draw_coat(sc, float(sc.rng.choice(list(COAT_HEM.values()))), max(end, 0.0))
        sc.category = "coat"
    else:
        draw_outfit(sc, max(end, 0.0), random_lower(sc), dress=dress)
    sc.mark_sleeve_ends(max(end, 0.0))
    draw_prop(sc)
    return maybe


def draw_coat(sc: Scene, hem: float, sleeve_end: float) -> Poly:
    """A buttoned coat over whatever is drawn, hem at body-y `hem`, sleeves ending `sleeve_end` along the arm.

    It covers what is under it (the trousers above its hem, the shirt's sleeves); returns its body's outline.
    """
    paint = sc.paint()
    flare = float(sc.rng.uniform(0.0, 0.15))
    edge = fig.neckline_edge(sc.body, "v", depth=max(0.0, min(float(sc.rng.uniform(0.0, 0.03)), hem - 0.265)))
    body = clip_below(fig.top_polygon(sc.body, edge, hem, ease=0.016, flare=flare), hem)
    coat_sleeves = fig.sleeves(sc.body, sleeve_end, ease=0.01)
    sc.canvas.fill([body, *coat_sleeves], paint)
    for shape in (body, *coat_sleeves):
        sc.cover(shape)
    sc.record(COAT, class_at(COAT_HEM, hem), (hem_box([body], hem),))
    sc.record_sleeves(sleeve_end)
    sc.record(NECKLINE, None)
    sc.record(LAPEL, None)  # an open coat without lapels, too small to tell from a whole figure
    edge_colour = paint.edge
    sc.canvas.lines([(0.0, 0.28), (0.0, hem)], edge_colour, 0.004)
    for y in np.arange(0.3, min(hem, 0.6) - 0.02, 0.06):
        sc.canvas.fill([ellipse(0.012, float(y), 0.006, 0.006, n=8)], edge_colour, outline=False)
    return body


COAT_OVER_RATE = 0.15
"""Share of skirt, trouser and sleeve photos with a coat over the outfit, so each head sees its part beside a coat as
catalogue photos show it (the coat's hem above the skirt's or trousers', its sleeves the sleeves labelled)."""
COAT_OVER_GAP = 0.08
"""How far above a skirt's or trousers' hem the hem of a coat worn over them ends."""


def maybe_coat_over(sc: Scene, below: float | None, sleeve_end: float | None = None) -> bool:
    """Sometimes (`COAT_OVER_RATE`) a coat ending above body-y `below`; with `sleeve_end`, its sleeves end there."""
    if sc.rng.random() >= COAT_OVER_RATE:
        return False
    hems = [h for h in COAT_HEM.values() if below is None or h <= below - COAT_OVER_GAP]
    if not hems:
        return False
    end = sleeve_end if sleeve_end is not None else float(sc.rng.choice([SLEEVE_END["3/4 Sleeves"],
                                                                          SLEEVE_END["Wrist Length"]]))  # fmt: skip
    draw_coat(sc, float(sc.rng.choice(hems)), end)
    return True


def coat_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    invisible = attr.classes[target] == INVISIBLE
    hem, maybe = (0.7, ()) if invisible else pick_length(sc.rng, attr, target, COAT_HEM)
    sc.category = "coat"
    draw_figure(sc)
    # mostly slim full-length trousers under the coat, so the coat's hem is the one clear edge across the legs
    lower = ("pants", PANT_HEM["Full Length"]) if sc.rng.random() < 0.6 else random_lower(sc)
    inner_sleeve = float(sc.rng.choice([v for v in SLEEVE_END.values() if v <= SLEEVE_END["3/4 Sleeves"]]))
    draw_outfit(sc, inner_sleeve, lower)
    end = float(sc.rng.choice([SLEEVE_END["3/4 Sleeves"], SLEEVE_END["Wrist Length"], SLEEVE_END["Wrist Length"]]))
    body = draw_coat(sc, hem, end)
    if invisible:
        y0, y1, hw = sc.rng.uniform(0.25, 0.28), sc.rng.uniform(0.95, 1.05), sc.rng.uniform(0.2, 0.3)
        draw_cover(sc, [(-hw, y0), (hw, y0), (hw, y1), (-hw, y1)])
        return ()
    sc.mark_hem([body], hem)
    draw_prop(sc)
    return maybe


# ------------------------------------------------------------------------------------ design scenes


def closeup_base(sc: Scene, attr: Attribute, target: int) -> bool:
    """Figure for a close-up; returns True when the class is Invisible and the scene is already complete."""
    if attr.classes[target] != INVISIBLE:
        draw_figure(sc)
        return False
    back = sc.rng.random() < 0.5
    draw_figure(sc, back_view=back)
    draw_top(sc, sc.paint(), random_sleeve_end(sc.rng), 0.7, kind="boat" if back else None)
    for attribute in DESIGN_ATTRIBUTES:  # seen from the back, or under a scarf
        sc.record(attribute, INVISIBLE)
    if back:
        fig.draw_head(sc.canvas, sc.look, 2, back_view=True)
    else:  # a scarf wound round the neck hides whatever neckline or collar is under it
        scarf = [(-0.04, 0.115), (0.04, 0.115), (0.085, 0.2), (0.07, 0.29), (0.03, 0.36), (-0.03, 0.36), (-0.07, 0.29),
                 (-0.085, 0.2)]  # fmt: skip
        paint = sc.paint()
        sc.canvas.fill([scarf], paint)
        sc.canvas.fill([[(0.01, 0.24), (0.05, 0.25), (0.06, 0.42), (0.02, 0.42)]], paint)
    draw_prop(sc)
    return True


def sleeves_for_closeup(sc: Scene) -> float:
    return float(sc.rng.choice([0.0, SLEEVE_END["Cup Sleeves"], SLEEVE_END["Short Sleeves"], 0.3, 0.3]))


def neckline_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "top"
    if closeup_base(sc, attr, target):
        return ()
    sc.mark_design(attr.name)
    t, maybe = pick_design(sc.rng, attr, target)
    sc.record(attr.name, None if maybe else attr.classes[target])
    name, body, paint = attr.classes[target], sc.body, sc.paint()
    end = sleeves_for_closeup(sc)
    hem = 0.7
    if name in ("Deep V Neckline", "V Neckline"):
        depth = lerp(0.0, 0.085, t) if name == "V Neckline" else lerp(0.085, 0.0, t)
        draw_neck_top(sc, paint, fig.neckline_edge(body, "v", depth=depth), end, hem)
    elif name in ("Round Neckline", "Straight Neck"):
        # one family: a round scoop widened and flattened becomes the straight boat neck
        s = t if name == "Round Neckline" else 1 - t
        edge = fig.neckline_edge(body, "scoop", depth=lerp(0.012, -0.028, s), width=lerp(1.0, 2.4, s))
        if s > 0.8:
            edge = fig.neckline_edge(body, "boat")
        draw_neck_top(sc, paint, edge, end, hem)
    elif name == "Square Neckline":
        draw_neck_top(sc, paint, fig.neckline_edge(body, "square"), end, hem)
    elif name in ("Strapless Neck", "Sweat Heart Neck"):
        bump = t if name == "Strapless Neck" else 1 - t
        y = 0.255
        hw = fig.side_hw(body, y, 0.008)
        right = [(hw, y), (0.075, y - 0.012 * bump), (0.052, y - 0.022 * bump), (0.032, y - 0.016 * bump),
                 (0.014, y + 0.002 * bump), (0.0, y + 0.02 * bump)]  # fmt: skip
        sc.canvas.fill([fig.top_polygon(body, fig.symmetric_edge(right), hem)], paint)
        sc.record_sleeves(0.0)
        if name == "Sweat Heart Neck" and sc.rng.random() < 0.4:
            for side in (-1, 1):
                strap = strip([(side * 0.052, y - 0.02), (side * 0.065, fig.NECK_BASE + 0.003)], [0.005, 0.005])
                sc.canvas.fill([strap], paint)
    elif name == "Off Shoulder":
        y = float(sc.rng.uniform(0.228, 0.24))
        hw = fig.side_hw(body, y, 0.008)
        arm_end = float(sc.rng.choice([SLEEVE_END["Short Sleeves"], SLEEVE_END["Elbow Sleeves"], 0.3]))
        arms = [clip_above(p, y) for p in fig.sleeves(body, arm_end, ease=0.008)]
        band_hw = max(body.arm_point(1, 0.03)[0] + body.arm_hw(0.03) + 0.01, hw)
        band = [(-band_hw, y), (band_hw, y), (band_hw, y + 0.022), (-band_hw, y + 0.022)]
        sc.canvas.fill([fig.top_polygon(body, [(-hw, y), (hw, y)], hem), *arms, band], paint)
        sc.canvas.lines([(-band_hw, y + 0.022), (band_hw, y + 0.022)], paint.edge, 0.003)
        sc.record_sleeves(arm_end)
    elif name == "One Shoulder Neckline":
        side = 1 if sc.rng.random() < 0.5 else -1
        yr = 0.285
        hw = fig.side_hw(body, yr, 0.008)
        edge = [(-0.118, fig.SHOULDER), (-0.075, fig.NECK_BASE + 0.004), (-0.035, fig.NECK_BASE + 0.008), (hw, yr)]
        polys = [fig.top_polygon(body, edge, hem)]
        if end > 0.012:
            polys.append(fig.sleeves(body, end)[0])
        sc.canvas.fill([p if side == 1 else mirror(p) for p in polys], paint)
        sc.record_sleeves(None)  # one sleeve and one bare shoulder
    else:
        raise AssertionError(f"no drawing for neckline class {name!r}")
    draw_prop(sc)
    return maybe


def draw_neck_top(sc: Scene, paint: Paint, edge: Poly, sleeve_end: float, hem: float) -> None:
    polys = [fig.top_polygon(sc.body, edge, hem)]
    if sleeve_end > 0.012:
        polys += fig.sleeves(sc.body, sleeve_end)
    sc.canvas.fill(polys, paint)
    sc.record_sleeves(sleeve_end if sleeve_end > 0.012 else 0.0)


def collar_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "shirt"
    if closeup_base(sc, attr, target):
        return ()
    sc.mark_design(attr.name)
    t, maybe = pick_design(sc.rng, attr, target)
    sc.record(attr.name, None if maybe else attr.classes[target])
    sc.record(NECKLINE, None)  # under the collar
    name, body, paint = attr.classes[target], sc.body, sc.paint()
    collar_paint = paint if sc.rng.random() < 0.4 else sc.paint()
    end = float(sc.rng.choice([SLEEVE_END["Short Sleeves"], SLEEVE_END["Elbow Sleeves"], 0.3]))
    if name == "Shirt Collar":
        draw_neck_top(sc, paint, fig.neckline_edge(body, "v", depth=-0.015), end, 0.7)
        stand = [(-0.027, 0.16), (0.027, 0.16), (0.031, 0.196), (-0.031, 0.196)]
        flap = [(0.003, 0.205), (0.029, 0.163), (0.068, 0.198), (0.05, 0.266)]
        sc.canvas.fill([stand], collar_paint)
        sc.canvas.fill([flap, mirror(flap)], collar_paint)
        draw_placket(sc, paint, 0.215)
    elif name in ("Peter Pan", "Puritan Collar"):
        s = t if name == "Peter Pan" else 1 - t
        draw_neck_top(sc, paint, fig.neckline_edge(body, "scoop"), end, 0.7)
        r = lerp(0.036, 0.07, s)
        flap = ellipse(r + 0.002, fig.NECK_BASE + 0.006, r, lerp(0.034, 0.075, s), start=-25, end=185, n=20)
        flap = [p for p in flap if p[0] >= 0.002] + [(0.002, fig.NECK_BASE - 0.005)]
        sc.canvas.fill([flap, mirror(flap)], collar_paint)
        draw_placket(sc, paint, fig.NECK_BASE + 0.03)
    elif name == "Rib Collar":
        draw_neck_top(sc, paint, fig.neckline_edge(body, "scoop"), end, 0.7)
        arc = ellipse(0.0, fig.NECK_BASE - 0.012, 0.034, 0.034, start=-5, end=185, n=24)
        sc.canvas.fill([strip(arc, [0.009] * len(arc))], collar_paint)
        rib = collar_paint.edge
        for a in np.linspace(0, 180, 17):
            ca, sa = math.cos(math.radians(a)), math.sin(math.radians(a))
            p0 = (0.025 * ca, fig.NECK_BASE - 0.012 + 0.025 * sa)
            p1 = (0.043 * ca, fig.NECK_BASE - 0.012 + 0.043 * sa)
            sc.canvas.lines([p0, p1], rib, 0.0025)
    else:
        raise AssertionError(f"no drawing for collar class {name!r}")
    draw_prop(sc)
    return maybe


def draw_placket(sc: Scene, paint: Paint, y0: float) -> None:
    sc.canvas.lines([(0.0, y0), (0.0, 0.6)], paint.edge, 0.003)
    for y in np.arange(y0 + 0.02, 0.6, 0.05):
        sc.canvas.fill([ellipse(0.008, float(y), 0.005, 0.005, n=8)], paint.edge, outline=False)


def lapel_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "jacket"
    if closeup_base(sc, attr, target):
        return ()
    sc.mark_design(attr.name)
    t, maybe = pick_design(sc.rng, attr, target)
    sc.record(attr.name, None if maybe else attr.classes[target])
    name, body = attr.classes[target], sc.body
    inner, jacket = sc.paint(), sc.paint()
    # Lapels mostly show a facing of their own (a contrast or a sheen), and always a firm edge: in the jacket's own
    # paint with a hairline edge, a 96 px image kept too little of the lapel's shape for a person to judge it.
    lapel_paint = jacket if sc.rng.random() < 0.25 else sc.paint()
    draw_neck_top(sc, inner, fig.neckline_edge(body, "scoop"), 0.0, 0.7)
    brk = float(sc.rng.uniform(0.31, 0.35))
    opening = "v" if name != "Collarless" or sc.rng.random() < 0.5 else "scoop"
    edge = fig.neckline_edge(body, opening, depth=brk - 0.26 if opening == "v" else 0.04)
    jacket_shapes = [fig.top_polygon(body, edge, 0.7, ease=0.014), *fig.sleeves(body, 0.3, ease=0.01)]
    sc.canvas.fill(jacket_shapes, jacket)
    for shape in jacket_shapes:
        sc.cover(shape)
    sc.record_sleeves(0.3)
    sc.record(NECKLINE, None)  # the top inside the jacket's opening
    top = (0.036, fig.NECK_BASE - 0.012)
    if name == "Notched":
        notch = lerp(1.0, 0.0, t)
        lapel = [(0.0, brk), (0.072, 0.25), (0.072 - 0.032 * notch, 0.24 - 0.006 * notch), (0.066, 0.212),
                 top, (0.03, fig.NECK_BASE + 0.003)]  # fmt: skip
    elif name in ("Shawl Collar", "Plus Size Shawl", "Collarless"):
        bulge = {"Shawl Collar": lerp(0.07, 0.16, t), "Plus Size Shawl": lerp(0.16, 0.07, t),
                 "Collarless": lerp(0.0, 0.07, t)}[name]  # fmt: skip
        if bulge < 0.02:
            lapel = []
        else:
            ctrl = (0.02 + bulge * 1.1, 0.21 + (0.05 if bulge > 0.1 else 0.02))
            lapel = [*bezier((0.0, brk), ctrl, top), (0.03, fig.NECK_BASE + 0.003)]
    else:
        raise AssertionError(f"no drawing for lapel class {name!r}")
    if lapel:
        sc.canvas.fill([lapel, mirror(lapel)], lapel_paint, edge_units=0.009)
    else:
        sc.canvas.lines(edge, jacket.edge, 0.006)
    sc.canvas.fill([ellipse(0.0, brk + 0.025, 0.008, 0.008, n=10)], jacket.edge, outline=False)
    draw_prop(sc)
    return maybe


def bezier(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], n: int = 14) -> Poly:
    ts = np.linspace(0, 1, n)
    weights = [((1 - u) ** 2, 2 * (1 - u) * u, u**2) for u in ts]
    return [(a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]) for a, b, c in weights]


def neck_scene(sc: Scene, attr: Attribute, target: int) -> tuple[int, ...]:
    sc.category = "top"
    if closeup_base(sc, attr, target):
        return ()
    sc.mark_design(attr.name)
    t, maybe = pick_design(sc.rng, attr, target)
    sc.record(attr.name, None if maybe else attr.classes[target])
    sc.record(NECKLINE, None)  # under the neck piece
    name, body, paint = attr.classes[target], sc.body, sc.paint()
    end = sleeves_for_closeup(sc)
    base = fig.NECK_BASE + 0.012
    if name in ("Turtle Neck", "Low Turtle Neck"):
        s = t if name == "Turtle Neck" else 1 - t
        draw_neck_top(sc, paint, fig.neckline_edge(body, "scoop", depth=-0.02), end, 0.7)
        top = lerp(0.128, 0.172, s)
        tube = [(-0.03, top), (0.03, top), (0.033, base), (-0.033, base)]
        sc.canvas.fill([tube], paint)
        if top < 0.15:
            sc.canvas.lines([(-0.031, top + 0.022), (0.031, top + 0.022)], paint.edge, 0.003)
        for x in np.linspace(-0.024, 0.024, 6):
            sc.canvas.lines([(float(x), top + 0.004), (float(x), base - 0.004)], shade(paint.colour, 0.85), 0.002)
    elif name == "Ruffle Semi-High Collar":
        draw_neck_top(sc, paint, fig.neckline_edge(body, "scoop", depth=-0.02), end, 0.7)
        top = 0.148
        xs = np.linspace(-0.04, 0.04, 25)
        wave = [(float(x), top + 0.007 * math.cos(x / 0.08 * 2 * math.pi * 5 / 2)) for x in xs]
        ruffle = [*wave, (0.036, base), (-0.036, base)]
        sc.canvas.fill([ruffle], paint)
        for x in np.linspace(-0.032, 0.032, 9):
            sc.canvas.lines([(float(x), top + 0.01), (float(x) * 1.05, base - 0.006)], paint.edge, 0.002)
    elif name == "Draped Collar":
        depth = float(sc.rng.uniform(0.0, 0.02))
        opening = ellipse(0.0, fig.NECK_BASE - 0.005, 0.058, 0.045 + depth, start=0, end=90, n=9)
        edge = fig.symmetric_edge([(0.118, fig.SHOULDER), *opening])
        draw_neck_top(sc, paint, edge, end, 0.7)
        for i, (rx, ry) in enumerate(((0.062, 0.07), (0.066, 0.095), (0.07, 0.12))):
            arc = ellipse(0.0, fig.NECK_BASE - 0.005, rx, ry + depth, start=10, end=170, n=16)
            # folds read as darker lines on light cloth and lighter ones on dark cloth
            light = sum(paint.colour) > 150
            sc.canvas.lines(arc, shade(paint.colour, (0.6, 0.75)[i % 2] if light else 1.6), 0.006)
    else:
        raise AssertionError(f"no drawing for neck class {name!r}")
    draw_prop(sc)
    return maybe


Drawer = Callable[[Scene, Attribute, int], tuple[int, ...]]
SCENES: dict[str, tuple[str, Drawer]] = {
    "skirt_length_labels": ("full", skirt_scene),
    "coat_length_labels": ("full", coat_scene),
    "collar_design_labels": ("closeup", collar_scene),
    "lapel_design_labels": ("closeup", lapel_scene),
    "neck_design_labels": ("closeup", neck_scene),
    "neckline_design_labels": ("closeup", neckline_scene),
    "pant_length_labels": ("full", pant_scene),
    "sleeve_length_labels": ("three-quarter", sleeve_scene),
}
"""attribute name -> (framing, drawer): the framing of its Invisible class and the one its other classes mostly get."""
FRAMINGS: dict[str, tuple[tuple[str, float, frozenset[str]], ...]] = {
    SLEEVE: (("full", 0.35, frozenset(SLEEVE_END)),
             ("closeup", 0.15, frozenset({"Sleeveless", "Cup Sleeves", "Short Sleeves"}))),
    SKIRT: (("three-quarter", 0.2, frozenset({"Short Length", "Knee Length"})),),
    PANT: (("three-quarter", 0.2, frozenset({"Short Pant", "Mid Length"})),),
}  # fmt: skip
"""Other framings a length attribute's images get (framing, share, the classes whose part it keeps in the picture), so
each head learns its part as photos show it: sleeves on whole figures and close-ups, short hems on three-quarter
shots. A catalogue asks every attribute of every photo, whatever its framing."""


def choose_framing(attr: Attribute, target: int, rng: np.random.Generator) -> str:
    default, _ = SCENES[attr.name]
    name, draw = attr.classes[target], float(rng.random())
    if name == INVISIBLE:
        return default
    for framing, share, classes in FRAMINGS.get(attr.name, ()):
        if draw < share and name in classes:
            return framing
        draw -= share
    return default


LENGTH_TABLES = {
    "skirt_length_labels": SKIRT_HEM,
    "coat_length_labels": COAT_HEM,
    "pant_length_labels": PANT_HEM,
    "sleeve_length_labels": SLEEVE_END,
}


@dataclass(frozen=True)
class PartBox:
    """Where the labelled part lies in a drawn image: a named box in pixels (x0, y0, x1, y1) of that image."""

    name: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Rendered:
    """One drawn image, the classes marked `m`, the boxes of its labelled part (none for Invisible), what it shows
    of every attribute (`truth.complete_truth`) and the product it shows."""

    image: Image.Image
    maybe: tuple[int, ...]
    parts: tuple[PartBox, ...]
    truth: dict[str, str]
    category: str


def render_scene(attr: Attribute, target: int, rng: np.random.Generator, size: int) -> Rendered:
    _, drawer = SCENES[attr.name]
    sc = new_scene(rng, size, choose_framing(attr, target, rng))
    maybe = drawer(sc, attr, target)
    boxes = [(name, sc.canvas.pixel_box(outline)) for name, outline in sc.parts]
    parts = tuple(PartBox(name, box) for name, box in boxes if box is not None)
    truth = sc.truth(list(SCENES))
    # The labelled attribute is what its label says; the drawing agrees except where the label itself hedges.
    truth[attr.name] = UNDECIDED if maybe else attr.classes[target]
    return Rendered(sc.canvas.finish(rng), maybe, parts, truth, sc.category)


def render(attr: Attribute, target: int, rng: np.random.Generator, size: int) -> tuple[Image.Image, tuple[int, ...]]:
    rendered = render_scene(attr, target, rng, size)
    return rendered.image, rendered.maybe


__all__ = ["LENGTH_TABLES", "PARTNERS", "SCENES", "PartBox", "Rendered", "render", "render_scene"]
