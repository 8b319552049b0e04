"""The attribute schema: which attributes exist, their classes in order, and how they group.

Every other module reads attribute names, class names and class counts from a :class:`Schema`;
none of them keeps its own list. FashionAI's schema is built in; a user's dataset can bring its own
as a JSON or YAML file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionattr.io import FileReadError
from fashionattr.names import collision_key, name_problem
from fashionattr.parsing import DocumentError, read_document

SCHEMA_FILE_NAMES = ("schema.json", "schema.yaml", "schema.yml")


class SchemaError(ValueError):
    """A schema file or definition is invalid; the message says where and what."""


@dataclass(frozen=True)
class Attribute:
    """One attribute dimension: a name and its mutually exclusive classes, in label-string order."""

    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def short_name(self) -> str:
        """`coat_length_labels` -> `coat_length`, the name used in tables."""
        return self.name.removesuffix("_labels")

    @property
    def label(self) -> str:
        """`coat_length_labels` -> `Coat length`, the name shown to people on pages and pictures."""
        return self.short_name.replace("_", " ").capitalize()

    def class_index(self, class_name: str) -> int:
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise KeyError(f"{self.name} has no class {class_name!r}; classes are: {', '.join(self.classes)}") from None


Grouping = tuple[tuple[str, tuple[str, ...]], ...]
"""An ordered partition (or subset) of attribute names into named groups."""


@dataclass(frozen=True)
class Schema:
    """An ordered set of attributes plus named groupings of them."""

    name: str
    attributes: tuple[Attribute, ...]
    groupings: Mapping[str, Grouping] = field(default_factory=dict)
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Product category -> the attributes a photo of it can show (a skirt: its length; trousers: theirs), for
    catalogues whose photos come filed under categories (`catalog index --categories`)."""

    def __post_init__(self) -> None:
        _validate(self, source="schema")

    def __iter__(self) -> Iterator[Attribute]:
        return iter(self.attributes)

    def __len__(self) -> int:
        return len(self.attributes)

    def __contains__(self, name: object) -> bool:
        return any(a.name == name for a in self.attributes)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def num_classes(self) -> list[int]:
        return [a.num_classes for a in self.attributes]

    @property
    def total_classes(self) -> int:
        return sum(self.num_classes)

    def attribute(self, name: str) -> Attribute:
        for attr in self.attributes:
            if attr.name == name or attr.short_name == name:
                return attr
        raise KeyError(f"unknown attribute {name!r}; known attributes are: {', '.join(self.names)}")

    def index(self, name: str) -> int:
        return self.attributes.index(self.attribute(name))

    def resolve_names(self, names: str | list[str] | None) -> list[str]:
        """Turn a user's attribute selection (`all`, comma list, short names) into full names in schema order."""
        if names is None or names == "all" or names == ["all"]:
            return self.names
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        wanted = {self.attribute(n.strip()).name for n in names}
        return [n for n in self.names if n in wanted]

    def subset(self, names: list[str]) -> Schema:
        """A schema with only the named attributes (in schema order); groupings are trimmed to match."""
        keep = set(self.resolve_names(names))
        attrs = tuple(a for a in self.attributes if a.name in keep)
        groupings: dict[str, Grouping] = {}
        for gname, groups in self.groupings.items():
            trimmed = tuple((g, tuple(a for a in members if a in keep)) for g, members in groups)
            groupings[gname] = tuple((g, members) for g, members in trimmed if members)
        categories = {c: tuple(a for a in members if a in keep) for c, members in self.categories.items()}
        return Schema(name=self.name, attributes=attrs, groupings=groupings, categories=categories)

    def grouping(self, name: str) -> Grouping:
        if name not in self.groupings:
            known = ", ".join(self.groupings) or "none"
            raise KeyError(f"schema {self.name!r} has no grouping {name!r}; known groupings: {known}")
        return self.groupings[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attributes": [{"name": a.name, "classes": list(a.classes)} for a in self.attributes],
            "groupings": {g: {name: list(members) for name, members in groups} for g, groups in self.groupings.items()},
            "categories": {category: list(members) for category, members in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "schema") -> Schema:
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: expected a mapping with 'attributes', got {type(data).__name__}")
        raw_attrs = data.get("attributes")
        if not isinstance(raw_attrs, list) or not raw_attrs:
            raise SchemaError(f"{source}: 'attributes' must be a non-empty list of {{name, classes}} entries")
        attrs = []
        for i, entry in enumerate(raw_attrs):
            if not isinstance(entry, dict) or "name" not in entry or "classes" not in entry:
                raise SchemaError(f"{source}: attributes[{i}] must have 'name' and 'classes'")
            classes = entry["classes"]
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise SchemaError(f"{source}: attributes[{i}] ({entry['name']!r}): 'classes' must be a list of strings")
            attrs.append(Attribute(name=str(entry["name"]), classes=tuple(classes)))
        raw_groupings = data.get("groupings") or {}
        if not isinstance(raw_groupings, dict):
            raise SchemaError(f"{source}: 'groupings' must map a grouping name to {{group: [attributes]}}")
        groupings: dict[str, Grouping] = {}
        for gname, groups in raw_groupings.items():
            if not isinstance(groups, dict) or not all(isinstance(m, list) for m in groups.values()):
                raise SchemaError(f"{source}: grouping {gname!r} must map group names to lists of attribute names")
            groupings[str(gname)] = tuple((str(g), tuple(str(m) for m in members)) for g, members in groups.items())
        raw_categories = data.get("categories") or {}
        if not isinstance(raw_categories, dict) or not all(
            isinstance(members, list) and all(isinstance(m, str) for m in members)
            for members in raw_categories.values()
        ):
            raise SchemaError(f"{source}: 'categories' must map a product category to a list of attribute names")
        categories = {str(c): tuple(members) for c, members in raw_categories.items()}
        schema = object.__new__(cls)
        object.__setattr__(schema, "name", str(data.get("name", Path(source).stem)))
        object.__setattr__(schema, "attributes", tuple(attrs))
        object.__setattr__(schema, "groupings", groupings)
        object.__setattr__(schema, "categories", categories)
        _validate(schema, source=source)
        return schema

    def save(self, path: str | Path) -> None:
        from fashionattr.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


def _validate(schema: Schema, source: str) -> None:
    seen: set[str] = set()
    short_names: dict[str, str] = {}
    for attr in schema.attributes:
        if not attr.name or not attr.name.strip():
            raise SchemaError(f"{source}: an attribute has an empty name")
        if "," in attr.name:
            raise SchemaError(f"{source}: attribute name {attr.name!r} contains a comma, which label files cannot hold")
        if attr.name in seen:
            raise SchemaError(f"{source}: attribute {attr.name!r} is defined twice; names must be unique")
        seen.add(attr.name)
        _check_file_name(attr, short_names, source)
        if attr.num_classes < 2:
            raise SchemaError(
                f"{source}: attribute {attr.name!r} has {attr.num_classes} class(es); it needs at least 2"
            )
        if len(set(attr.classes)) != attr.num_classes:
            dupes = sorted({c for c in attr.classes if attr.classes.count(c) > 1})
            raise SchemaError(f"{source}: attribute {attr.name!r} repeats class name(s) {dupes}")
    for gname, groups in schema.groupings.items():
        placed: set[str] = set()
        for group, members in groups:
            for member in members:
                if member not in seen:
                    raise SchemaError(
                        f"{source}: grouping {gname!r}, group {group!r} names unknown attribute {member!r}; "
                        f"known attributes are: {', '.join(schema.names)}"
                    )
                if member in placed:
                    raise SchemaError(f"{source}: grouping {gname!r} puts attribute {member!r} in two groups")
                placed.add(member)
    for category, members in schema.categories.items():
        unknown = [m for m in members if m not in seen]
        if not category.strip() or unknown:
            raise SchemaError(f"{source}: category {category!r} names unknown attribute(s) {', '.join(unknown)}; "
                              f"known attributes are: {', '.join(schema.names)}")  # fmt: skip


def _check_file_name(attr: Attribute, short_names: dict[str, str], source: str) -> None:
    """Refuse a name that cannot become a file name, or whose short name another attribute's would share.

    The short name names the attribute's per-attribute run folder, grid cell and confusion plot, so `/x/RUN` would
    write outside the output folder and `coat_length` beside `coat_length_labels` would train into one folder.
    Names that differ only in case or Unicode normalisation collide too: on macOS and Windows they are one file.
    """
    for name in dict.fromkeys((attr.name, attr.short_name)):
        problem = name_problem(name)
        if problem:
            which = "attribute" if name == attr.name else f"attribute {attr.name!r}: its short name"
            raise SchemaError(f"{source}: {which} {name!r} cannot name a file or folder: {problem}; attribute "
                              "names become run folders and plot files")  # fmt: skip
    if "." in attr.name:
        raise SchemaError(f"{source}: attribute {attr.name!r} holds '.', which cannot name a model's head")
    key = collision_key(attr.short_name)
    if key in short_names:
        other = short_names[key]
        other_short = other.removesuffix("_labels")
        clash = (f"both go by the short name {attr.short_name!r}" if other_short == attr.short_name else
                 f"go by the short names {other_short!r} and {attr.short_name!r}, one file name where letter case "
                 "or Unicode form does not count (macOS, Windows)")  # fmt: skip
        raise SchemaError(f"{source}: attributes {other!r} and {attr.name!r} {clash}; the short name names tables, "
                          "run folders and plot files, so rename one")  # fmt: skip
    short_names[key] = attr.name


def schema_mismatch(model: Schema, data: Schema, names: Iterable[str], data_source: str = "the data") -> str | None:
    """Why a model's answers for `names` would not mean what `data` means by those attributes, or None if they do.

    A model's output for an attribute is a probability per class in its own schema's order; scored against, or
    written for, a dataset whose schema gives that attribute other classes (or another order), every number would
    land on the wrong class. Every command that puts a model and data together asks here: `evaluate`, `submit`,
    and loading several models as one (a per-attribute folder).
    """
    for name in names:
        if name not in data:
            return f"{data_source} ({data.name!r} schema) has no attribute {name!r}"
        ours, theirs = model.attribute(name).classes, data.attribute(name).classes
        if ours != theirs:
            return (f"attribute {name!r} has {len(ours)} classes ({_shown(ours)}) in the model but {len(theirs)} "
                    f"({_shown(theirs)}) in {data_source} ({data.name!r} schema)")  # fmt: skip
    return None


def _shown(classes: tuple[str, ...], limit: int = 4) -> str:
    return ", ".join(classes[:limit]) + (", ..." if len(classes) > limit else "")


def load_schema(path: str | Path) -> Schema:
    """Read a schema from a JSON or YAML file, strictly (no repeated keys, no aliases), with errors naming the file."""
    path = Path(path)
    try:
        data = read_document(path)
    except FileReadError as exc:
        raise SchemaError(f"{path}: cannot read schema file: {exc.reason}") from None
    except DocumentError as exc:
        raise SchemaError(str(exc)) from None
    return Schema.from_dict(data, source=str(path))


def schema_for_dataset(root: str | Path) -> Schema:
    """The schema a dataset root brings (`schema.json`/`schema.yaml` beside `Annotations/`), else FashionAI's."""
    for name in SCHEMA_FILE_NAMES:
        candidate = Path(root) / name
        if candidate.exists() or candidate.is_symlink():  # a FIFO or a dangling link is refused, not passed over
            return load_schema(candidate)
    return FASHIONAI


_FASHIONAI_ATTRIBUTES: dict[str, list[str]] = {
    "skirt_length_labels": [
        "Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length", "Floor Length",
    ],
    "coat_length_labels": [
        "Invisible", "High Waist Length", "Regular Length", "Long Length", "Micro Length", "Knee Length",
        "Midi Length", "Ankle&Floor Length",
    ],
    "collar_design_labels": ["Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"],
    "lapel_design_labels": ["Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"],
    "neck_design_labels": ["Invisible", "Turtle Neck", "Ruffle Semi-High Collar", "Low Turtle Neck", "Draped Collar"],
    "neckline_design_labels": [
        "Invisible", "Strapless Neck", "Deep V Neckline", "Straight Neck", "V Neckline", "Square Neckline",
        "Off Shoulder", "Round Neckline", "Sweat Heart Neck", "One Shoulder Neckline",
    ],
    "pant_length_labels": ["Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length"],
    "sleeve_length_labels": [
        "Invisible", "Sleeveless", "Cup Sleeves", "Short Sleeves", "Elbow Sleeves", "3/4 Sleeves", "Wrist Length",
        "Long Sleeves", "Extra Long Sleeves",
    ],
}  # fmt: skip

FASHIONAI = Schema.from_dict(
    {
        "name": "fashionai",
        "attributes": [{"name": n, "classes": c} for n, c in _FASHIONAI_ATTRIBUTES.items()],
        "groupings": {
            "upper-lower": {
                "upper": [
                    "coat_length_labels", "sleeve_length_labels", "collar_design_labels", "lapel_design_labels",
                    "neck_design_labels", "neckline_design_labels",
                ],
                "lower": ["skirt_length_labels", "pant_length_labels"],
            },
            "design-length": {
                "design": [
                    "collar_design_labels", "lapel_design_labels", "neck_design_labels", "neckline_design_labels",
                ],
                "length": [
                    "coat_length_labels", "pant_length_labels", "skirt_length_labels", "sleeve_length_labels",
                ],
            },
        },
        "categories": {
            "skirt": ["skirt_length_labels"],
            "trousers": ["pant_length_labels"],
            "dress": ["skirt_length_labels", "sleeve_length_labels", "neckline_design_labels", "collar_design_labels",
                      "neck_design_labels"],
            "top": ["sleeve_length_labels", "neckline_design_labels", "collar_design_labels", "neck_design_labels"],
            "shirt": ["sleeve_length_labels", "collar_design_labels", "neckline_design_labels"],
            "jacket": ["coat_length_labels", "sleeve_length_labels", "lapel_design_labels", "collar_design_labels"],
            "coat": ["coat_length_labels", "sleeve_length_labels", "lapel_design_labels", "collar_design_labels"],
        },
    },
    source="built-in FashionAI schema",
)  # fmt: skip
