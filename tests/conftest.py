"""Shared fixtures: a tiny synthetic dataset and models trained on it, the hostile-input corpus written once, and the
service most HTTP tests talk to, each built once per test session.

Training even a tiny model costs seconds on a CPU, so every test that needs "a trained run" shares these.
Treat them as read-only: write outputs under the test's own `tmp_path`. What is shared but not a fixture is in
tests/helpers.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fashionattr.bench.postgres import PostgresServer
    from fashionattr.bench.service_process import ServiceProcess

# OpenMP threads busy-wait between parallel regions by default. On a shared 2-core machine (CI, or several
# test runs at once) that spinning starves the other threads and a tiny forward pass takes 100x longer.
# Set before anything imports torch; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# helpers imports fashionattr (and so torch): after the setting above.
from corpus import Case, special_files, write_image_corpus
from helpers import (
    CATALOG_BACKENDS,
    CORPUS_DIR,
    PER_ATTRIBUTE,
    SERVER_OPTIONS,
    TrainedRun,
    build_catalog,
    make_review_folder,
)


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


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new catalogue goes, once per storage backend: an SQLite file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "catalog.sqlite")
    return request.getfixturevalue("postgres").new_database()


# --- the hostile-input corpus (tests/corpus.py) -----------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    """A folder of every corpus image (a file name that is not UTF-8 included) and what each must do."""
    folder = tmp_path_factory.mktemp("corpus") / "photos"
    return folder, write_image_corpus(folder, non_utf8_name=True)


@pytest.fixture(scope="session")
def corpus_dataset(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    """The shared synthetic dataset plus every corpus file under `CORPUS_DIR`, labelled as coat_length class 1."""
    from fashionattr.data.labels import LABELS_RELPATH

    root = tmp_path_factory.mktemp("corpus-data") / "data"
    shutil.copytree(synthetic_data, root, symlinks=True)
    cases = write_image_corpus(root / CORPUS_DIR)
    rows = "".join(f"{CORPUS_DIR}/{name},coat_length_labels,nynnnnnn\n" for name in cases)
    with (root / LABELS_RELPATH).open("a", encoding="utf-8") as labels:
        labels.write(rows)
    return root, cases


@pytest.fixture(scope="session")
def special(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    """A folder of special files named like images (a FIFO, a socket, a folder, links to devices ...)."""
    folder = tmp_path_factory.mktemp("special") / "photos"
    return folder, special_files(folder)


# --- the service ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One `fashionattr serve` process for the HTTP tests that need no settings of their own (tests/test_serve.py,
    tests/test_api_contract.py): the trained run, a catalogue of `make_photo_folder`'s photos, a review queue over
    a copy of the dataset (decisions are written into the copy), and `helpers.SERVER_OPTIONS`."""
    from fashionattr.bench.service_process import serve_in_child

    workdir = tmp_path_factory.mktemp("serve")
    db = build_catalog(trained_run, workdir / "photos", workdir / "catalog.sqlite")
    data = workdir / "data"
    shutil.copytree(trained_run.data, data)
    review = make_review_folder(data, workdir / "review")
    with serve_in_child(trained_run.run, workdir / "server.log", "--catalog", str(db), "--review", str(review),
                        *SERVER_OPTIONS) as running:  # fmt: skip
        yield running
