"""What a run trains and validates on: labels, the split, the image cache, unusable images and the loaders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from fashionattr.config import TrainConfig
from fashionattr.data.cache import ImageCache, build_cache, describe_cache_miss, open_cache
from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LabelRecord
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.data.scan import scan_headers
from fashionattr.data.split import apply_split, choose_split, record_split_user, write_split
from fashionattr.data.torch_dataset import LabelledImages, collate
from fashionattr.distributed import DistributedContext, barrier, broadcast_object, on_main
from fashionattr.errors import UserError
from fashionattr.run_dir import RunDir


@dataclass
class RunData:
    """The labelled images a run uses, split into training and validation."""

    dataset: DatasetRoot
    attributes: list[str]
    train: list[LabelRecord]
    val: list[LabelRecord]
    split_source: Path

    @property
    def train_paths(self) -> set[str]:
        return {r.path for r in self.train}

    @property
    def all_paths(self) -> list[str]:
        return sorted({r.path for r in self.train + self.val})


def load_run_data(config: TrainConfig, attributes: list[str], run: RunDir, context: DistributedContext) -> RunData:
    """Read the labels of `attributes` and split them by the one split rule; the run folder keeps a copy."""
    dataset = DatasetRoot.open(config.data)
    records = dataset.read_labels()
    choice = choose_split(records, config.split_file, dataset.default_split_path, run.split, config.val_fraction,
                          config.split_seed, dataset.path)  # fmt: skip
    train, val = apply_split(records, choice.assignment, choice.source)
    wanted = set(attributes)
    train, val = [r for r in train if r.attribute in wanted], [r for r in val if r.attribute in wanted]

    def record_split() -> None:
        # The run's own record of its split, so evaluation reads what training used whatever changes later.
        if choice.is_new or choice.source != run.split:
            rows = (("train", train), ("val", val))
            write_split(run.split, {(r.path, r.attribute): subset for subset, records in rows for r in records})
        if choice.source != run.split:
            record_split_user(choice.source, run.path)

    on_main(record_split, context)  # every rank calls it: rank 1 may already see the split rank 0 just wrote
    if not train or not val:
        raise UserError(
            f"{dataset.labels_path}: no {'training' if not train else 'validation'} images for {', '.join(attributes)}"
        )
    return RunData(dataset, list(attributes), train, val, choice.source)


def open_or_build_cache(config: TrainConfig, data: RunData, preprocessing: Preprocessing,
                        context: DistributedContext) -> ImageCache | None:  # fmt: skip
    """`auto` uses a matching cache, `build` makes one (rank 0) when missing or stale, `off` never uses one.

    When a cache exists but does not match, `auto` says so in one line, with the `prepare` command that would.
    """
    if config.cache == "off":
        return None
    root, paths = data.dataset.path, data.all_paths
    cache = open_cache(root, paths, preprocessing)
    # Rank 0 decides for every rank: another rank may already see the cache rank 0 is building.
    if config.cache == "build" and broadcast_object(cache is None, context):
        on_main(lambda: build_cache(root, paths, preprocessing, progress=config.progress), context)
        barrier(context)
        cache = open_cache(root, paths, preprocessing)
    if cache is None and context.is_main:
        miss = describe_cache_miss(root, paths, preprocessing)
        if miss:
            print(f"note: {miss}", flush=True)
    return cache


def known_bad_images(data: RunData, cache: ImageCache | None,
                     context: DistributedContext) -> tuple[dict[str, str], str]:  # fmt: skip
    """Unusable images (path -> reason) known before the first epoch, and what found them.

    The cache recorded them when it decoded everything. Without it, nothing decodes an image before the first
    epoch, so the headers are scanned (about 0.15 ms an image, against about 2 ms to decode one); truncated files
    still show only when decoded, and are counted at the end of each epoch.
    """
    paths = set(data.all_paths)
    if cache is not None:
        return {p: reason for p, reason in cache.bad.items() if p in paths}, "(found by the image cache)"
    bad = dict(scan_headers(data.dataset.path, sorted(paths))) if context.is_main else {}
    return broadcast_object(bad, context), "(found by a scan of the image headers)"


def check_bad_fraction(config: TrainConfig, bad: Mapping[str, str], total: int, when: str) -> None:
    """Refuse a dataset with more unusable training images (path -> reason) than --max-bad-fraction allows."""
    if total and len(bad) / total > config.max_bad_fraction:
        examples = "; ".join(f"{path}: {reason}" for path, reason in sorted(bad.items())[:3])
        raise UserError(
            f"{len(bad)} of {total} training images ({len(bad) / total:.1%}) are missing or unreadable {when}, "
            f"over the {config.max_bad_fraction:.1%} limit (e.g. {examples}); run `fashionattr check {config.data}` "
            "to list them all, fix or remove them, or raise --max-bad-fraction"
        )


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    sampler: DistributedSampler


def make_loaders(config: TrainConfig, data: RunData, preprocessing: Preprocessing, cache: ImageCache | None,
                 context: DistributedContext) -> Loaders:  # fmt: skip
    def dataset(records: list[LabelRecord]) -> LabelledImages:
        return LabelledImages(data.dataset.path, records, data.dataset.schema, data.attributes, preprocessing, cache)

    train_set, val_set = dataset(data.train), dataset(data.val)
    sampler: DistributedSampler = DistributedSampler(train_set, num_replicas=context.world_size, rank=context.rank,
                                                     shuffle=True, seed=config.seed)  # fmt: skip

    def loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, num_workers=config.workers, collate_fn=collate,
                          pin_memory=context.device.type == "cuda", persistent_workers=config.workers > 0,
                          **kwargs)  # fmt: skip

    train_loader = loader(train_set, config.batch_size, sampler=sampler, drop_last=len(sampler) > config.batch_size)
    # Shard validation without padding: rank r takes items r, r+W, r+2W, ... so each is scored once.
    val_shard = Subset(val_set, list(range(context.rank, len(val_set), context.world_size)))
    return Loaders(train_loader, loader(val_shard, config.batch_size * 2, shuffle=False), sampler)
