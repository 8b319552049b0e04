"""Strict readers for what people write by hand: JSON and YAML documents (schemas, configs) and decimal numbers.

The standard loaders are lenient where leniency hides mistakes or invites abuse: JSON and YAML keep the last of
two equal keys, YAML expands aliases (a few lines can ask for billions of nodes), PyYAML's YAML 1.1 reads
`no` as false, `1:20` as 80 and `1_000` as 1000 but `1e-3` as a string, and Python's `float()` takes `0.5_0`,
`nan` or Arabic-Indic digits. Every reader of such files goes through here instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fashionattr.errors import UserError
from fashionattr.io import MAX_SETTINGS_BYTES, read_regular_file

MAX_NESTING = 32
"""Deepest nesting of lists and mappings accepted; a schema or config needs 4."""

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class DocumentError(UserError):
    """A JSON or YAML document that is malformed or uses what these readers refuse; the message names the file."""


def parse_decimal(text: str) -> float | None:
    """A plain decimal or scientific number (`0.25`, `1`, `.5`, `2.5e-3`), else None.

    No `_` separators, no `nan` or `inf`, no hexadecimal, no digits other than 0-9, no inner spaces: only what
    every other program writing numbers produces.
    """
    return float(text) if _DECIMAL.fullmatch(text) else None


def json_nesting_depth(data: str | bytes) -> int:
    """How deeply the lists and objects of a JSON text nest, counted without parsing it (so without recursion).

    Brackets inside strings are ignored; for invalid JSON the count may be off, and the parser then refuses it.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    structure = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = np.isin(structure, (ord("["), ord("{"))).astype(np.int32) - np.isin(structure, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def load_json(text: str | bytes, source: str, max_nesting: int = MAX_NESTING) -> Any:
    """Parse JSON refusing duplicate keys, NaN/Infinity and nesting deeper than `max_nesting`."""
    depth = json_nesting_depth(text)
    if depth > max_nesting:
        raise DocumentError(f"{source}: lists and objects nest {depth} deep; at most {max_nesting} are accepted")

    def refuse_constant(name: str) -> Any:
        raise DocumentError(f"{source}: {name} is not a number JSON allows; write a decimal number")

    try:
        return json.loads(text, object_pairs_hook=_unique_json_keys(source), parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{source}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{source}: not valid UTF-8 text") from None
    except RecursionError:  # the depth check above should make this unreachable
        raise DocumentError(f"{source}: lists and objects nest too deep") from None


def _unique_json_keys(source: str) -> Any:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise DocumentError(f"{source}: key {key!r} appears twice in one object; give each key once")
            result[key] = value
        return result

    return build


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that these readers refuse (an alias, a repeated key, deep nesting, a number in another syntax)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _StrictResolver(yaml.resolver.BaseResolver):
    """YAML 1.2's core schema for plain scalars: true/false, null, decimal integers and floats; all else is text."""


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
):
    _StrictResolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


class _StrictLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.constructor.SafeConstructor,
    _StrictResolver,
):
    """PyYAML's safe loader without aliases or duplicate keys, with a nesting limit and the strict resolver."""

    max_nesting = MAX_NESTING

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _StrictResolver.__init__(self)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"alias *{event.anchor}: aliases (anchors with `*` references) are not accepted; "
                           "write the value out", event.start_mark)  # fmt: skip
        self.depth += 1
        try:
            if self.depth > self.max_nesting:
                raise _Refused(f"lists and mappings nest deeper than {self.max_nesting}", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):  # as in JSON: a key is a name (YAML would allow null, 1 or a list)
                    raise _Refused(f"mapping key {key!r} is not text; keys are names", key_node.start_mark)
                if key in seen:
                    raise _Refused(f"key {key!r} appears twice in one mapping (first on line {seen[key]}); give each "
                                   "key once", key_node.start_mark)  # fmt: skip
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _construct_number(loader: _StrictLoader, node: Any) -> int | float:
    """A decimal integer or float scalar; PyYAML's own would read `0123` as octal and `09` as an error."""
    text = loader.construct_scalar(node)
    if node.tag.endswith(":int") and re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    value = parse_decimal(text) if node.tag.endswith(":float") else None
    if value is None:
        raise _Refused(f"{text!r} is not a plain decimal number", node.start_mark)
    return value


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_number)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_number)


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document refusing aliases, duplicate keys and deep nesting; booleans and numbers as YAML 1.2."""
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise DocumentError(f"{source}:{line}: not valid YAML: character {exc.character:#06x} is not allowed") from None
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = exc.problem or exc.context
        raise DocumentError(
            f"{where}: {problem}" if isinstance(exc, _Refused) else f"{where}: not valid YAML: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_document(path: str | Path, max_bytes: int = MAX_SETTINGS_BYTES) -> Any:
    """A JSON (`.json`) or YAML (anything else) file, read safely (regular files, bounded) and parsed strictly."""
    path = Path(path)
    raw = read_regular_file(path, max_bytes)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DocumentError(f"{path}:{line}: not valid UTF-8 text") from None
    if path.suffix.lower() == ".json":
        return load_json(text, str(path))
    return load_yaml(text, str(path))
