"""Symbolic links in a dataset or an image-folder tree: the one rule for which are followed.

A tree's root may itself be a link, and so may a dataset's `Images/` folder (images kept on another disk is a
common layout): each is resolved once and the place it leads to is part of the tree. Inside, a link is followed
while it stays in the tree; one that leads out of it, one that loops, and one that leads nowhere are refused, with
the reason. `check` and training read datasets by this rule and `import-folders` writes them by it, so an import
holds only what `check` accepts.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

IMAGES_FOLDER = "Images"


@dataclass(frozen=True)
class Tree:
    """A folder whose links are checked: where it is named, and the real places that count as inside it."""

    path: Path
    inside: tuple[str, ...]
    name: str
    """How messages call it: `the dataset root`, or the folder as given."""

    @classmethod
    def of(cls, root: str | Path, linked_folders: tuple[str, ...] = (), name: str | None = None) -> Tree:
        """The tree at `root`, with `linked_folders` (relative to it) that may be links to elsewhere, resolved once."""
        real_root = os.path.realpath(root)
        inside = [real_root]
        for folder in linked_folders:
            real = os.path.realpath(os.path.join(real_root, folder))
            if real not in inside:
                inside.append(real)
        return cls(Path(root), tuple(inside), name or str(root))

    @classmethod
    def dataset(cls, root: str | Path) -> Tree:
        """A dataset root: its `Images/` may lead to another disk."""
        return cls.of(root, (IMAGES_FOLDER,), "the dataset root")

    def contains(self, real: str) -> bool:
        return any(os.path.commonpath([place, real]) == place for place in self.inside)

    def outside(self, real: str) -> str | None:
        """Why the real path `real` is not in the tree (None if it is)."""
        if self.contains(real):
            return None
        return f"leads out of {self.name} through a symbolic link (to {real})"


class LinkProblem(ValueError):
    """A path that the link rule refuses; `reason` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_file(tree: Tree, path: str | Path) -> str:
    """The real path of a file in the tree, or :class:`LinkProblem` for a link that loops, dangles or leaves it."""
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkProblem("a symbolic link loop (the link leads back to itself)") from None
        if os.path.islink(path):
            raise LinkProblem(f"a symbolic link to nothing (to {os.readlink(path)})") from None
        raise LinkProblem(exc.strerror or "cannot be read") from None
    problem = tree.outside(real)
    if problem is not None:
        raise LinkProblem(problem)
    return real


def walk_files(tree: Tree, folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every file under `folder` (sorted), following folder links that stay in the tree; and (path, reason) for each
    folder link that leaves it or loops back, which is not entered."""
    files: list[Path] = []
    refused: list[tuple[Path, str]] = []
    seen: set[str] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:
            refused.append((current, "a symbolic link loop (this folder is reached again through a link)"))
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(current), key=lambda entry: entry.name)
        except OSError as exc:
            refused.append((current, exc.strerror or "cannot be listed"))
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir(follow_symlinks=True)
            except OSError:  # a link loop: a file to the rule below, which names it
                is_folder = False
            if is_folder:
                problem = tree.outside(os.path.realpath(path)) if entry.is_symlink() else None
                if problem is None:
                    pending.append(path)
                else:
                    refused.append((path, f"a folder link that {problem}"))
            elif entry.is_symlink() or entry.is_file(follow_symlinks=False):
                files.append(path)
    return sorted(files), refused
