"""Shared fixtures: a tiny synthetic dataset and models trained on it, built once per test session.

Training even a tiny model costs seconds on a CPU, so every test that needs "a trained run" shares these.
Treat them as read-only: write outputs under the test's own `tmp_path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fashionattr.bench.postgres import PostgresServer

# OpenMP threads busy-wait between parallel regions by default. On a shared 2-core machine (CI, or several
# test runs at once) that spinning starves the other threads and a tiny forward pass takes 100x longer.
# Set before anything imports torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PER_ATTRIBUTE = ["coat_length_labels", "sleeve_length_labels"]
"""The attributes of the `trained_per_attribute_run` folder (one run directory each)."""


@dataclass(frozen=True)
class TrainedRun:
    """A dataset root and a run directory trained on it (for per-attribute: the folder of run directories)."""

    data: Path
    run: Path

    @property
    def checkpoint(self) -> Path:
        return self.run / "best.pt"

    @property
    def questions(self) -> Path:
        return self.data / "Tests" / "question.csv"

    @property
    def answers(self) -> Path:
        return self.data / "Tests" / "answers.csv"


def _train(data: Path, out: Path, **overrides: object) -> None:
    from fashionattr.config import resolve_config
    from fashionattr.training import train

    settings = dict(data=str(data), out=str(out), arch="test_resnet", layout="multitask", img_size=32, epochs=1,
                    batch_size=8, workers=0, max_steps_per_epoch=2, progress=False)  # fmt: skip
    settings.update(overrides)
    train(resolve_config(None, settings))


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FashionAI-layout dataset, 4 images per class of 64 px, one per class held out in Tests/."""
    from fashionattr.synthetic.generate import generate_dataset

    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(root, per_class=4, size=64, test_fraction=0.25, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A multitask `test_resnet` run (all eight attributes, 32 px) with best.pt, trained for two steps."""
    out = tmp_path_factory.mktemp("trained") / "run"
    _train(synthetic_data, out)
    return TrainedRun(data=synthetic_data, run=out)


@pytest.fixture(scope="session")
def trained_per_attribute_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A per-attribute folder: `run/coat_length` and `run/sleeve_length`, one run directory per attribute."""
    out = tmp_path_factory.mktemp("trained") / "per-attribute"
    _train(synthetic_data, out, layout="per-attribute", attributes=PER_ATTRIBUTE)
    return TrainedRun(data=synthetic_data, run=out)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (started on first use; tests/postgres.py)."""
    from postgres import postgres_server  # imports torch: only after OMP_WAIT_POLICY is set above

    with postgres_server() as server:
        yield server


CATALOG_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new catalogue goes, once per storage backend: an SQLite file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return request.getfixturevalue("postgres").new_database()
