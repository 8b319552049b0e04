"""A training run from config to run directory: data, model, optimiser, epochs, checkpoints, resume, report.

`train(config)` is what `fashionattr train` calls. For the `per-attribute` layout it trains one model
per attribute, each in a run directory of its own under `config.out`; the other layouts train one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from fashionattr.checkpoint import BEST_NAME, LAST_NAME, load_checkpoint, save_checkpoint
from fashionattr.config import TrainConfig
from fashionattr.data.cache import ImageCache, build_cache, open_cache
from fashionattr.data.datasets import LabelledImages, collate
from fashionattr.data.inspect import scan_headers
from fashionattr.data.labels import LabelRecord
from fashionattr.data.layout import DatasetLayout
from fashionattr.data.split import apply_split, make_split, read_split, write_split
from fashionattr.data.transforms import Augmentation, Preprocessing
from fashionattr.distributed import DistributedContext, barrier, broadcast_object, init_distributed
from fashionattr.engine import StepSettings, TrainingDiverged, evaluate, resolve_amp, train_one_epoch
from fashionattr.errors import UserError
from fashionattr.io import atomic_write_text
from fashionattr.metrics import Scores, score
from fashionattr.schema import Schema

SKIPPED_NAME = "skipped_images.txt"


@dataclass
class RunData:
    """What a run trains and validates on."""

    layout: DatasetLayout
    train: list[LabelRecord]
    val: list[LabelRecord]
    split_source: str


def load_run_data(config: TrainConfig, out: Path, context: DistributedContext) -> RunData:
    """Read labels and split them: an explicit split file, the dataset's own, or a fresh one saved in the run."""
    layout = DatasetLayout.open(config.data)
    records = layout.read_labels()
    if config.split_file:
        assignment, source = read_split(config.split_file), str(config.split_file)
    elif layout.default_split_path.is_file():
        assignment, source = read_split(layout.default_split_path), str(layout.default_split_path)
    else:
        assignment = make_split(records, val_fraction=config.val_fraction, seed=config.split_seed)
        source = str(out / "split.csv")
        if context.is_main:
            write_split(source, assignment)
    train, val = apply_split(records, assignment, source)
    return RunData(layout=layout, train=train, val=val, split_source=source)


def open_or_build_cache(
    config: TrainConfig, root: Path, paths: list[str], preprocessing: Preprocessing, context: DistributedContext
) -> ImageCache | None:
    """`auto` uses a fresh cache if one exists; `build` makes one (rank 0) when missing or stale; `off` never."""
    if config.cache == "off":
        return None
    cache = open_cache(root, paths, preprocessing.img_size, preprocessing.interpolation)
    if cache is None and config.cache == "build":
        if context.is_main:
            build_cache(root, paths, preprocessing.img_size, preprocessing.interpolation, progress=config.progress)
        barrier(context)
        cache = open_cache(root, paths, preprocessing.img_size, preprocessing.interpolation)
    return cache


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Any:
    """LR multiplier: linear warm-up, then cosine decay to `min_ratio` of the base rate."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, opt=config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                               momentum=config.momentum)  # fmt: skip


def selection_score(config: TrainConfig, scores: Scores, val_loss: float) -> float:
    """Higher is better; decides which epoch's weights become the best checkpoint."""
    if config.select_metric == "loss":
        return -val_loss
    if config.select_metric == "map":
        return scores.mean_average_precision
    return scores.mean_accuracy


def history_row(epoch: int, lr: float, stats: dict[str, Any], val_loss: float, scores: Scores) -> dict[str, Any]:
    row: dict[str, Any] = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats["train_loss"],
        "train_images_per_second": stats["train_images_per_second"],
        "val_loss": val_loss,
        "val_mean_accuracy": scores.mean_accuracy,
        "val_map": scores.mean_average_precision,
    }
    for name, attribute_scores in scores.attributes.items():
        if attribute_scores.count:
            row[f"val_accuracy/{name}"] = attribute_scores.accuracy
            row[f"val_ap/{name}"] = attribute_scores.average_precision
    return row


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "metrics.csv", buffer.getvalue())
    atomic_write_text(out / "metrics.json", json.dumps(history, indent=1))


def record_skipped(out: Path, skipped: set[tuple[str, str]]) -> None:
    """One `path<TAB>reason` line per skipped image, however many readers (cache, header scan, loader) found it."""
    reasons: dict[str, str] = {}
    for path, reason in sorted(skipped):
        reasons.setdefault(path, reason)
    lines = [f"{path}\t{reason}" for path, reason in reasons.items()]
    atomic_write_text(out / SKIPPED_NAME, "\n".join(lines) + ("\n" if lines else ""))


def check_bad_fraction(config: TrainConfig, bad: Mapping[str, str], total: int, when: str) -> None:
    """Refuse a dataset with more unusable training images (path -> reason) than --max-bad-fraction allows."""
    if total and len(bad) / total > config.max_bad_fraction:
        examples = "; ".join(f"{path}: {reason}" for path, reason in sorted(bad.items())[:3])
        raise UserError(
            f"{len(bad)} of {total} training images ({len(bad) / total:.1%}) are missing or unreadable {when}, "
            f"over the {config.max_bad_fraction:.1%} limit (e.g. {examples}); run `fashionattr check {config.data}` "
            "to list them all, fix or remove them, or raise --max-bad-fraction"
        )


def screen_headers(root: Path, paths: set[str], context: DistributedContext) -> dict[str, str]:
    """Unusable images by their headers alone, so a bad dataset is refused before training rather than after an epoch.

    Without the cache nothing decodes an image before the first epoch; the header scan costs about 0.15 ms an
    image (seconds for FashionAI's 80k), against about 2 ms to decode one. Truncated files still show only
    when decoded, and are counted at the end of each epoch.
    """
    bad = dict(scan_headers(root, sorted(paths))) if context.is_main else {}
    return broadcast_object(bad, context)


def weights_finite(model: nn.Module) -> bool:
    """Whether every floating-point weight and buffer is finite; a NaN must never reach a checkpoint."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def diverged(out: Path, epoch: int, exc: TrainingDiverged) -> TrainingDiverged:
    """The divergence, with which epoch and what was kept, in words a user can act on."""
    last = out / LAST_NAME
    kept = (f"the last good checkpoint, {last} (epoch {epoch}), is kept" if last.is_file()
            else "no epoch had finished, so there is no checkpoint")  # fmt: skip
    return TrainingDiverged(
        f"{out}: training diverged in epoch {epoch + 1}: {exc}. The run stopped; {kept}. Lower --lr, keep "
        "--clip-grad on, or try --amp bf16 or off, then train again"
    )


def make_loaders(
    config: TrainConfig,
    data: RunData,
    schema: Schema,
    attributes: list[str],
    preprocessing: Preprocessing,
    cache: ImageCache | None,
    context: DistributedContext,
) -> tuple[DataLoader, DataLoader, DistributedSampler]:
    def dataset(records: list[LabelRecord]) -> LabelledImages:
        return LabelledImages(data.layout.root, records, schema, attributes, preprocessing.img_size,
                              preprocessing.interpolation, cache)  # fmt: skip

    train_set, val_set = dataset(data.train), dataset(data.val)
    if len(train_set) == 0 or len(val_set) == 0:
        raise UserError(
            f"{data.layout.labels_path}: no {'training' if len(train_set) == 0 else 'validation'} images "
            f"for {', '.join(attributes)}"
        )
    sampler: DistributedSampler = DistributedSampler(train_set, num_replicas=context.world_size, rank=context.rank,
                                                     shuffle=True, seed=config.seed)  # fmt: skip

    def loader(dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, num_workers=config.workers, collate_fn=collate,
                          pin_memory=context.device.type == "cuda", persistent_workers=config.workers > 0,
                          **kwargs)  # fmt: skip

    train_loader = loader(train_set, config.batch_size, sampler=sampler, drop_last=len(sampler) > config.batch_size)
    # Shard validation without padding: rank r takes items r, r+W, r+2W, ... so each is scored once.
    val_shard = Subset(val_set, list(range(context.rank, len(val_set), context.world_size)))
    val_loader = loader(val_shard, config.batch_size * 2, shuffle=False)
    return train_loader, val_loader, sampler


@dataclass
class FitResult:
    summary: dict[str, Any]
    model: nn.Module
    """The trained weights of this process (identical on every rank under DDP)."""


def fit(config: TrainConfig, attributes: list[str], out: Path, context: DistributedContext,
        resume: bool = False) -> FitResult:  # fmt: skip
    """Train one model on `attributes` into run directory `out`; the summary is also written to summary.json."""
    from fashionattr.models import create_model

    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / LAST_NAME, out / BEST_NAME
    if last_path.exists() and not resume:
        raise UserError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    seed_everything(config.seed, config.deterministic)
    data = load_run_data(config, out, context)
    schema = data.layout.schema

    model = create_model(config.arch, schema, layout=config.layout, attributes=attributes, grouping=config.grouping,
                         pretrained=config.pretrained, weights=config.weights, drop_rate=config.drop_rate)  # fmt: skip
    timm_preprocessing = model.spec["preprocessing"]
    preprocessing = Preprocessing(
        img_size=config.img_size,
        mean=tuple(timm_preprocessing["mean"]),
        std=tuple(timm_preprocessing["std"]),
        interpolation=timm_preprocessing.get("interpolation", "bilinear"),
    )
    device = context.device
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    image_paths = sorted({r.path for r in data.train + data.val if r.attribute in attributes})
    cache = open_or_build_cache(config, data.layout.root, image_paths, preprocessing, context)
    train_paths = {r.path for r in data.train if r.attribute in attributes}
    run_paths = set(image_paths)
    if cache is not None:
        known_bad = {path: reason for path, reason in cache.bad.items() if path in run_paths}
        found_by = "(found by the image cache)"
    else:
        known_bad = screen_headers(data.layout.root, run_paths, context)
        found_by = "(found by a scan of the image headers)"
    bad = {path: reason for path, reason in known_bad.items() if path in train_paths}
    check_bad_fraction(config, bad, len(train_paths), found_by)
    train_loader, val_loader, sampler = make_loaders(config, data, schema, attributes, preprocessing, cache, context)

    optimizer = build_optimizer(config, model)
    steps_per_epoch = len(train_loader) if config.max_steps_per_epoch is None else min(
        len(train_loader), config.max_steps_per_epoch)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        warmup_cosine(
            steps_per_epoch * config.epochs, round(steps_per_epoch * config.warmup_epochs), config.min_lr / config.lr
        ),
    )
    amp_dtype = resolve_amp(config.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    ema = None
    if config.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=config.ema_decay)

    history: list[dict[str, Any]] = []
    best_score, epochs_since_best, start_epoch = -math.inf, 0, 0
    skipped: set[tuple[str, str]] = set()
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        model.load_state_dict(state["train_model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema_model") is not None:
            ema.module.load_state_dict(state["ema_model"])
        history = list(state["history"])
        best_score, epochs_since_best = state["best_score"], state["epochs_since_best"]
        start_epoch = state["epoch"] + 1
        skipped = {tuple(item) for item in state.get("skipped", [])}  # type: ignore[misc]
        if context.is_main:
            print(f"resuming {out} from epoch {start_epoch + 1} of {config.epochs}")
    skipped.update(known_bad.items())  # listed even if a short or cut epoch never draws them

    train_model: nn.Module = model
    if context.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    settings = StepSettings(
        attributes=attributes, preprocessing=preprocessing, augmentation=Augmentation(), amp_dtype=amp_dtype,
        channels_last=channels_last, maybe_weight=config.maybe_weight, label_smoothing=config.label_smoothing,
        clip_grad=config.clip_grad, max_steps=config.max_steps_per_epoch,
    )  # fmt: skip
    num_classes = {name: schema.attribute(name).num_classes for name in attributes}
    payload_base = {"spec": model.spec, "schema": schema.to_dict(), "preprocessing": preprocessing.to_dict(),
                    "config": config.to_dict(), "attributes": attributes}  # fmt: skip
    if context.is_main:
        config.save(out / "config.yaml")
        schema.save(out / "schema.json")
    writer = _tensorboard(out) if context.is_main else None

    for epoch in range(start_epoch, config.epochs):
        # Everything random in an epoch derives from (seed, epoch, rank): a resumed run repeats it exactly.
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + context.rank)
        sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7_919 + context.rank)
        total = min(len(sampler), steps_per_epoch * config.batch_size)
        with tqdm(total=total, disable=not (config.progress and context.is_main), unit="img",
                  desc=f"epoch {epoch + 1}/{config.epochs}", leave=False) as bar:  # fmt: skip
            try:
                stats = train_one_epoch(train_model, optimizer, scheduler, train_loader, context, settings, generator,
                                        scaler=scaler, ema=ema, progress=bar)  # fmt: skip
                if not weights_finite(model):  # the last step can break the weights after the last loss was read
                    raise TrainingDiverged("the weights became NaN or infinite")
            except TrainingDiverged as exc:
                raise diverged(out, epoch, exc) from None
        if context.enabled:
            # Each rank updated its own batch-norm statistics; average them so every rank holds the same model.
            from timm.utils import distribute_bn

            distribute_bn(model, context.world_size, reduce=True)
        eval_model = ema.module if ema is not None else model
        predictions, val_loss, val_skipped = evaluate(eval_model, val_loader, context, settings, num_classes,
                                                      tta=config.tta)  # fmt: skip
        skipped.update(stats["skipped"])
        skipped.update(val_skipped)
        scores = score(schema.subset(attributes), predictions)
        row = history_row(epoch + 1, float(scheduler.get_last_lr()[0]), stats, val_loss, scores)
        history.append(row)
        current = selection_score(config, scores, val_loss)
        improved = current > best_score
        if improved:
            best_score, epochs_since_best = current, 0
        else:
            epochs_since_best += 1
        if context.is_main:
            eval_weights = eval_model.state_dict()
            if improved:
                save_checkpoint(best_path, {**payload_base, "model": eval_weights, "epoch": epoch, "metrics": row,
                                            "scores": scores.to_dict()})  # fmt: skip
                atomic_write_text(out / "scores.json", json.dumps(scores.to_dict(), indent=1))
            save_checkpoint(last_path, {
                **payload_base, "model": eval_weights, "train_model": model.state_dict(),
                "ema_model": ema.module.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch, "history": history,
                "best_score": best_score, "epochs_since_best": epochs_since_best, "metrics": row,
                "skipped": sorted(skipped),
            })  # fmt: skip
            write_history(out, history)
            record_skipped(out, skipped)
            _log_epoch(writer, row, config)
        bad = {path: reason for path, reason in skipped if path in train_paths}
        check_bad_fraction(config, bad, len(train_paths), "(found while training)")
        if config.early_stop and epochs_since_best >= config.early_stop:
            if context.is_main:
                print(f"early stop: no improvement for {config.early_stop} epoch(s)")
            break
    if writer is not None:
        writer.close()
    barrier(context)
    summary = finish_run(out, schema, attributes, config, context) if context.is_main else {}
    return FitResult(broadcast_object(summary, context), model)


def finish_run(out: Path, schema: Schema, attributes: list[str], config: TrainConfig,
               context: DistributedContext) -> dict[str, Any]:  # fmt: skip
    """Score the best checkpoint once more, write scores, plots and the run's report."""
    from fashionattr.report import write_run_report

    best = load_checkpoint(out / BEST_NAME)
    history = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    summary = {
        "run_dir": str(out),
        "arch": config.arch,
        "layout": config.layout,
        "attributes": attributes,
        "best_epoch": best["epoch"] + 1,
        "epochs_run": len(history),
        "best_metrics": best["metrics"],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    write_run_report(out, schema.subset(attributes), history, summary, best["scores"])
    return summary


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _log_epoch(writer: Any, row: dict[str, Any], config: TrainConfig) -> None:
    if writer is not None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                writer.add_scalar(key, value, row["epoch"])
        writer.flush()
    if config.progress:
        parts = [f"epoch {row['epoch']}/{config.epochs}", f"loss {row['train_loss']:.3f}",
                 f"val loss {row['val_loss']:.3f}", f"val acc {100 * row['val_mean_accuracy']:.1f}%",
                 f"mAP {100 * row['val_map']:.1f}%", f"{row['train_images_per_second']:.0f} img/s"]  # fmt: skip
        print("  ".join(parts), flush=True)


def train(config: TrainConfig, resume: bool = False) -> list[dict[str, Any]]:
    """Train what the config asks for; per-attribute layout trains one run per attribute under `config.out`."""
    context = init_distributed(config.device)
    try:
        schema = DatasetLayout.open(config.data).schema
        attributes = schema.resolve_names(config.attributes)
        out = Path(config.out)
        if config.layout != "per-attribute":
            return [fit(config, attributes, out, context, resume=resume).summary]
        summaries = []
        for name in attributes:
            run_dir = out / schema.attribute(name).short_name
            if (run_dir / "summary.json").is_file() and resume:
                summaries.append(json.loads((run_dir / "summary.json").read_text(encoding="utf-8")))
                continue
            summaries.append(fit(config, [name], run_dir, context, resume=resume).summary)
        return summaries
    finally:
        from fashionattr.distributed import shutdown

        shutdown(context)
