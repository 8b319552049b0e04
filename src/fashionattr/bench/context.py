"""What every benchmark figure shares: the settings, the dataset of 512 px JPEGs, the device, a scratch folder."""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LabelRecord, format_rows, read_labels
from fashionattr.schema import SCHEMA_FILE_NAMES, Schema

FIGURES = ("a", "b", "c", "d", "e", "g", "mem", "gpu", "int8", "similar", "facets", "page", "reindex", "service")
"""Every figure `--only` can name, in the order they run."""
CATALOG_FIGURES = ("similar", "facets", "page", "reindex", "service")
"""What `--only catalog` names: similar search, facets and tag search, the page in Chromium, re-indexing an
unchanged folder, service throughput."""
NO_IMAGE_FIGURES = ("similar", "facets", "page", "reindex")
"""Figures on synthetic embeddings, tags and files only: a run of just these makes no JPEGs."""


@dataclass(frozen=True)
class BenchSettings:
    """How big each measurement is. The defaults fit a 2-core CPU in about ten minutes; `quick()` in about two."""

    only: tuple[str, ...] = FIGURES
    data: str | None = None
    arch: str = "resnet18"
    img_size: int = 224
    """Input side of the model figures (b-e); the loader figure always reads at `loader_size`."""
    loader_size: int = 224
    batch_size: int = 32
    per_class: int = 10
    """Synthetic images per class (54 classes), or the most images sampled per class from `--data`."""
    rounds: int = 3
    workers: int = 2
    device: str = "auto"
    compile_budget_s: float = 200.0
    """Longest torch.compile may take to compile and measure; 0 skips the compile figures."""
    memory_images: int = 1000
    """N of the memory figure: predict runs over N and 4N images."""
    catalog_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    """Catalogue sizes of the similar and facets figures."""
    embedding_dim: int = 512
    """Embedding size of the similar figure: resnet18's pooled features (resnet50 would give 2048)."""
    similar_queries: int = 300
    postgres: str | None = None
    """PostgreSQL database of the facets figure (it gets the catalogue's tables); None starts a throwaway server."""
    int8_run: str | None = None
    """A trained run whose int8 and fp32 exports the int8 figure scores (BP, mAP); without one, speed only."""
    reindex_files: int = 100_000
    """Files of the reindex figure: a folder whose every file is unchanged since the last `catalog index`."""
    service_requests: int = 96
    """Requests per 8-client round of the service figure (a 1-client round sends a quarter of them)."""
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> BenchSettings:
        # A smaller batch rather than a smaller image: fixed per-image costs (decoding, augmentation) keep the
        # same weight against the network as in the full run, so the ratios stay comparable.
        return cls(batch_size=8, per_class=3, rounds=2, compile_budget_s=0.0, memory_images=200,
                   catalog_sizes=(10_000,), similar_queries=100, service_requests=48, reindex_files=5_000,
                   quick=True)  # fmt: skip

    def with_overrides(self, **overrides: Any) -> BenchSettings:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if v is not None and k in known})

    def describe(self) -> dict[str, Any]:
        described = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.postgres:
            from fashionattr.catalog.backends import shown_location

            described["postgres"] = shown_location(self.postgres)
        return described


@dataclass
class BenchData:
    """A FashionAI-layout dataset in the scratch folder, never the user's own folder (the bench writes caches)."""

    root: Path
    schema: Schema
    records: list[LabelRecord]
    origin: str
    seconds: float

    @property
    def images(self) -> list[Path]:
        return [self.root / path for path in sorted({r.path for r in self.records})]


@dataclass
class BenchContext:
    settings: BenchSettings
    data: BenchData
    device: torch.device
    workdir: Path
    shared: dict[str, Any] = field(default_factory=dict)
    """Objects several figures reuse (the multitask model), built by the first that needs them."""


def no_images(workdir: Path) -> BenchData:
    """For runs of figures that need no photos (similar, facets): nothing is generated."""
    from fashionattr.schema import FASHIONAI

    return BenchData(workdir, FASHIONAI, [], "none needed by the chosen figures", 0.0)


def make_synthetic(workdir: Path, per_class: int) -> BenchData:
    from fashionattr.synthetic.generate import generate_dataset

    root = workdir / "data"
    start = time.perf_counter()
    generate_dataset(root, per_class=per_class, size=512, test_fraction=0.0, progress=False)
    data_root = DatasetRoot.open(root)
    records = data_root.read_labels()
    return BenchData(root, data_root.schema, records, f"synthetic, {len(records)} JPEGs of 512 px",
                     time.perf_counter() - start)  # fmt: skip


def copy_sample(source: str | Path, workdir: Path, per_class: int, seed: int = 0) -> BenchData:
    """Up to `per_class` labelled images of every class of `source`, copied with their labels and schema.

    A copy, so that the caches the bench builds and times never replace the user's own (a full-dataset cache
    built by `prepare` would otherwise be overwritten by one covering only the sample).
    """
    start = time.perf_counter()
    data_root = DatasetRoot.open(source)
    by_class: dict[tuple[str, int], list[LabelRecord]] = {}
    for record in data_root.read_labels():
        by_class.setdefault((record.attribute, record.target), []).append(record)
    rng = random.Random(seed)
    chosen = [r for group in by_class.values() for r in rng.sample(group, min(per_class, len(group)))]
    root = workdir / "data"
    for record in chosen:
        target = root / record.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_root.path / record.path, target)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "label.csv").write_text(format_rows(chosen, data_root.schema), encoding="utf-8")
    for name in SCHEMA_FILE_NAMES:
        if (data_root.path / name).is_file():
            shutil.copyfile(data_root.path / name, root / name)
    copied = DatasetRoot.open(root)
    records = read_labels(copied.labels_path, copied.schema)
    return BenchData(root, copied.schema, records, f"{len(records)} images sampled from {source}",
                     time.perf_counter() - start)  # fmt: skip
