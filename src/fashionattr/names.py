"""Names from data that become file names: an attribute's short name names its per-attribute run folder, its grid
cell and its confusion-matrix plot; a network name names a grid column's folder.

A schema is data, so its names are checked here before any of them reaches a path: `/elsewhere/RUN` as a name
once made training write a whole run folder outside `--out`. The rule is a whitelist rather than a list of
dangers, so look-alikes of `/` and `.` (U+2215, U+FF0F, U+FF0E) and control characters are out without being
named one by one. `collision_key` says when two names would share one file on a case-insensitive or normalising
file system (macOS, Windows), where `Coat` and `coat`, or a composed and a decomposed `é`, are one name.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from fashionattr.errors import UserError

MAX_NAME_BYTES = 128
"""Longest name in UTF-8 bytes: file systems allow 255, and a plot or a temporary file adds ~30 around it."""

_PUNCTUATION = frozenset("_-. ()+&")
"""Besides letters, digits and combining marks (any script), the characters a name may hold."""


class UnsafeNameError(UserError):
    """A name from data that cannot become a file or folder name; the message says which name and why."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot be one file or folder name, or None if it can.

    Allowed: letters, digits and combining marks of any script, and `_ - . ( ) + &` and inner spaces; not empty,
    at most 128 UTF-8 bytes, not starting with `.` or `-` (a hidden file, an option) and not ending in `.` or a
    space (which Windows drops).
    """
    if not name:
        return "it is empty"
    if name.strip() != name:
        return "it starts or ends with white space"
    if name.startswith("."):
        return "it starts with '.' (a hidden file, or the folder itself or its parent)"
    if name.startswith("-"):
        return "it starts with '-', which commands would read as an option"
    if name.endswith("."):
        return "it ends with '.', which some file systems drop"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    bad = sorted({char for char in name if not _allowed(char)})
    if bad:
        shown = ", ".join(_describe(char) for char in bad[:5])
        return f"it holds {shown}; names may hold letters, digits, spaces and _ - . ( ) + & only"
    return None


def _allowed(char: str) -> bool:
    return char in _PUNCTUATION or char == " " or unicodedata.category(char)[0] in "LMN"


def _describe(char: str) -> str:
    name = unicodedata.name(char, "") or f"U+{ord(char):04X}"
    return f"{char!r} ({name})" if char.isprintable() else f"U+{ord(char):04X} ({name or 'a control character'})"


def collision_key(name: str) -> str:
    """What decides whether two names are one file on a case-insensitive, Unicode-normalising file system."""
    return unicodedata.normalize("NFKC", name).casefold()


def path_component(name: str, what: str = "name") -> str:
    """`name` itself if it is a safe file or folder name, else :class:`UnsafeNameError` naming it and why.

    Every name from data goes through here on its way into a path, even when a schema already checked it.
    """
    problem = name_problem(name)
    if problem:
        raise UnsafeNameError(f"{what} {name!r} cannot name a file or folder: {problem}")
    return name


def child(folder: Path, name: str, what: str = "name", prefix: str = "", suffix: str = "") -> Path:
    """`folder / (prefix + name + suffix)`, after `path_component(name)`: always directly inside `folder`."""
    return folder / f"{prefix}{path_component(name, what)}{suffix}"
