"""The install is what the project declares: every imported package is a declared dependency, and the lock file
that `make demo` and `make test` install from matches pyproject.toml (refresh it with `make lock`)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-lock.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(text) for text in PROJECT["dependencies"]]
DEV = [Requirement(text) for text in PROJECT["optional-dependencies"]["dev"]]
OPTIONAL = [Requirement(text) for name, texts in PROJECT["optional-dependencies"].items() if name != "dev"
            for text in texts]  # fmt: skip
"""Extras a user installs for one feature (`pip install fashionattr[bench]`); the library imports them lazily."""
DIRECT_MARK = "fashionattr (pyproject.toml)"
"""How pip-compile annotates a pin that pyproject.toml asks for itself (rather than another package)."""


def locked() -> dict[str, tuple[Version, int, bool]]:
    """name -> (pinned version, number of hashes, pinned for pyproject.toml itself) from the lock file."""
    pins: dict[str, tuple[Version, int, bool]] = {}
    name = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==([^ \\]+)", line):
            name = canonicalize_name(match.group(1))
            pins[name] = (Version(match.group(2)), 0, False)
        elif name is not None and line.strip().startswith("--hash=sha256:"):
            version, hashes, direct = pins[name]
            pins[name] = (version, hashes + 1, direct)
        elif name is not None and DIRECT_MARK in line:
            version, hashes, _ = pins[name]
            pins[name] = (version, hashes, True)
    return pins


def test_the_lock_pins_exactly_what_pyproject_asks_for_with_hashes():
    pins = locked()
    wanted = {canonicalize_name(r.name): r for r in RUNTIME + DEV}
    direct = {name for name, (_, _, is_direct) in pins.items() if is_direct}
    stale = "; run `make lock` to refresh requirements-lock.txt"
    assert set(wanted) - set(pins) == set(), f"declared but not locked{stale}"
    assert direct == set(wanted), f"the lock was made from other dependencies than pyproject.toml's{stale}"
    for name, requirement in wanted.items():
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{name} is locked at {pins[name][0]}, outside pyproject.toml's {requirement}{stale}"
        )
    assert all(hashes for _, hashes, _ in pins.values()), "every pin needs its hashes (pip-compile --generate-hashes)"
    assert {"pip", "setuptools"} <= set(pins), "pip and setuptools are locked too (--allow-unsafe): torch needs them"
    assert "file://" not in LOCK.read_text(encoding="utf-8"), "the lock must not name this machine's local indexes"


def imported_top_level_names(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("folder", "declared"), [("src", RUNTIME + OPTIONAL), ("tests", RUNTIME + DEV),
                                                  ("benchmarks", RUNTIME + DEV)])  # fmt: skip
def test_every_imported_package_is_declared(folder: str, declared: list[Requirement]):
    """A package the code imports but pyproject.toml does not name works only while something else pulls it in."""
    local = {path.stem for path in (ROOT / folder).glob("*.py")} | {"fashionattr"}
    names = imported_top_level_names(ROOT / folder) - set(sys.stdlib_module_names) - local
    distributions = importlib.metadata.packages_distributions()
    wanted = {canonicalize_name(r.name) for r in declared}
    missing = {}
    for name in sorted(names):
        provided_by = {canonicalize_name(d) for d in distributions.get(name, [name])}
        if not provided_by & wanted:
            missing[name] = sorted(provided_by)
    assert not missing, f"imported in {folder}/ but not declared in pyproject.toml: {missing}"
