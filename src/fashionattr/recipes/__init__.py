"""Named recipes: complete, documented training settings shipped with the package, chosen with `--recipe NAME`.

A recipe is a YAML file in this folder: a one-line `description`, the expected `cost`, the training `settings`
(any `TrainConfig` field), and optionally what `grid` compares (`archs`, `layouts`) and the synthetic data the
`demo` generates. Precedence: defaults < recipe < config file < options on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fashionattr.errors import UserError
from fashionattr.parsing import read_document

SECTIONS = {"description", "cost", "settings", "grid", "synthetic"}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    cost: str
    settings: dict[str, Any]
    grid: dict[str, Any] = field(default_factory=dict)
    synthetic: dict[str, Any] = field(default_factory=dict)


def recipe_names() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in resources.files(__name__).iterdir()
                  if entry.name.endswith(".yaml"))  # fmt: skip


def load_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name is a user error listing the known ones."""
    if name not in recipe_names():
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(recipe_names())} (`fashionattr recipes`)")
    with resources.as_file(resources.files(__name__) / f"{name}.yaml") as path:
        data = read_document(path)
    if not isinstance(data, dict) or set(data) - SECTIONS or not isinstance(data.get("settings"), dict):
        raise UserError(f"recipe {name!r} is damaged: expected the sections {', '.join(sorted(SECTIONS))}")
    return Recipe(name=name, description=str(data.get("description", "")), cost=str(data.get("cost", "")),
                  settings=dict(data["settings"]), grid=dict(data.get("grid") or {}),
                  synthetic=dict(data.get("synthetic") or {}))  # fmt: skip
