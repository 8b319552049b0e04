"""The attribute schema: which attributes exist, their classes in order, and how they group.

Every other module reads attribute names, class names and class counts from a :class:`Schema`;
none of them keeps its own list. FashionAI's schema is built in; a user's dataset can bring its own
as a JSON or YAML file.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionattr.io import FileReadError
from fashionattr.names import MAX_NAME_BYTES, collision_key, name_problem
from fashionattr.parsing import DocumentError, read_document

SCHEMA_FILE_NAMES = ("schema.json", "schema.yaml", "schema.yml")
MAX_ATTRIBUTES = 1000
"""More attributes than a model can hold a head for each of; a schema from a file is refused beyond it."""
MAX_CLASSES = 1000
"""More classes in one attribute than a label string (one character per class) or a head can reasonably hold."""


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
        """A schema from plain data (a schema file, a checkpoint, ONNX metadata), every field of its exact type.

        Nothing is converted: `"name": null` or a number where a name goes is refused rather than read as "None".
        Counts are bounded before anything is built from them.
        """
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: expected a mapping with 'attributes', got {type(data).__name__}")
        raw_attrs = data.get("attributes")
        if not isinstance(raw_attrs, list) or not raw_attrs:
            raise SchemaError(f"{source}: 'attributes' must be a non-empty list of {{name, classes}} entries")
        if len(raw_attrs) > MAX_ATTRIBUTES:
            raise SchemaError(f"{source}: {len(raw_attrs)} attributes; at most {MAX_ATTRIBUTES} are supported")
        attrs = []
        for i, entry in enumerate(raw_attrs):
            if not isinstance(entry, dict) or "name" not in entry or "classes" not in entry:
                raise SchemaError(f"{source}: attributes[{i}] must have 'name' and 'classes'")
            if not isinstance(entry["name"], str):
                raise SchemaError(f"{source}: attributes[{i}]: 'name' must be a string, got {_type_of(entry['name'])}")
            classes = entry["classes"]
            if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
                raise SchemaError(f"{source}: attributes[{i}] ({entry['name']!r}): 'classes' must be a list of strings")
            if len(classes) > MAX_CLASSES:
                raise SchemaError(f"{source}: attribute {entry['name']!r} has {len(classes)} classes; at most "
                                  f"{MAX_CLASSES} are supported")  # fmt: skip
            attrs.append(Attribute(name=entry["name"], classes=tuple(classes)))
        raw_groupings = data.get("groupings", {})
        if raw_groupings is None:
            raw_groupings = {}
        if not isinstance(raw_groupings, dict):
            raise SchemaError(f"{source}: 'groupings' must map a grouping name to {{group: [attributes]}}")
        groupings: dict[str, Grouping] = {}
        for gname, groups in raw_groupings.items():
            if (not isinstance(gname, str) or not isinstance(groups, dict)
                    or not all(isinstance(g, str) and isinstance(m, list) and all(isinstance(a, str) for a in m)
                               for g, m in groups.items())):  # fmt: skip
                raise SchemaError(f"{source}: grouping {gname!r} must map group names to lists of attribute names")
            groupings[gname] = tuple((g, tuple(members)) for g, members in groups.items())
        raw_categories = data.get("categories") or {}
        if not isinstance(raw_categories, dict) or not all(
            isinstance(members, list) and all(isinstance(m, str) for m in members)
            for members in raw_categories.values()
        ):
            raise SchemaError(f"{source}: 'categories' must map a product category to a list of attribute names")
        categories = {str(c): tuple(members) for c, members in raw_categories.items()}
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise SchemaError(f"{source}: the schema's 'name' must be a string, got {_type_of(name)}")
        schema = object.__new__(cls)
        object.__setattr__(schema, "name", name)
        object.__setattr__(schema, "attributes", tuple(attrs))
        object.__setattr__(schema, "groupings", groupings)
        object.__setattr__(schema, "categories", categories)
        _validate(schema, source=source)
        return schema

    def save(self, path: str | Path) -> None:
        from fashionattr.io import atomic_write_text, json_text

        atomic_write_text(path, json_text(self.to_dict(), indent=2, ensure_ascii=False) + "\n")


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
        _check_class_names(attr, source)
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


def _type_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_class_names(attr: Attribute, source: str) -> None:
    """Class names under the rules attribute names keep where they apply: not blank, one line, and distinct when
    letter case and Unicode form do not count, so a `--where` filter or a facet names exactly one class.

    Class names need not be file names (FashionAI's `3/4 Length`), so the file-name whitelist does not apply.
    """
    seen: dict[str, str] = {}
    for class_name in attr.classes:
        problem = class_name_problem(class_name)
        if problem:
            raise SchemaError(f"{source}: attribute {attr.name!r}: class name {class_name!r} {problem}")
        key = collision_key(class_name)
        if key in seen:
            earlier = seen[key]
            if earlier == class_name:
                raise SchemaError(f"{source}: attribute {attr.name!r} repeats class name {class_name!r}")
            raise SchemaError(f"{source}: attribute {attr.name!r} has classes {earlier!r} and {class_name!r}, one "
                              "name when letter case and Unicode form do not count; class names must be distinct "
                              "(filters and facets name one class)")  # fmt: skip
        seen[key] = class_name


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name, or None."""
    if not name.strip():
        return "is empty"
    if name.strip() != name:
        return "starts or ends with white space"
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in name):
        return "holds a control character or a line separator"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


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
