"""`train(config)`, what `fashionattr train` calls, and `fit`, one model trained top to bottom into a run folder.

For the `per-attribute` layout `train` fits one model per attribute, each in a run folder of its own under
`config.out`; the other layouts fit one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashionattr.applicability.modules import invisible_indices
from fashionattr.checkpoint import load_checkpoint, model_from_checkpoint
from fashionattr.config import TrainConfig
from fashionattr.data.dataset import DATASET_KEY, DatasetRoot, dataset_record
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    on_main,
    shutdown,
)
from fashionattr.engine import StepSettings, evaluate, resolve_amp
from fashionattr.errors import DiskFullError, UserError
from fashionattr.io import is_disk_full, write_json
from fashionattr.metrics import Scores, score
from fashionattr.models.backbones import model_preprocessing
from fashionattr.models.layouts import layout_of
from fashionattr.models.networks import create_model
from fashionattr.progress import progress
from fashionattr.run_dir import RunDir
from fashionattr.schema import Schema
from fashionattr.training.applicability import fit_run_applicability
from fashionattr.training.calibrate import calibrate_run
from fashionattr.training.data import (
    Loaders,
    check_bad_fraction,
    known_bad_images,
    load_run_data,
    make_loaders,
    open_or_build_cache,
)
from fashionattr.training.history import history_row, log_epoch, open_tensorboard, record_skipped, write_history
from fashionattr.training.loop import TrainingDiverged, train_one_epoch
from fashionattr.training.optim import build_ema, build_optimizer, build_scheduler
from fashionattr.training.saver import RunCheckpoints, Trainables, TrainState, check_resume

T = TypeVar("T")


@dataclass
class FitResult:
    summary: dict[str, Any]
    model: nn.Module
    """The trained weights of this process (identical on every rank under DDP)."""
    evaluated: nn.Module
    """The weights validated and shipped: the moving average when there is one, else `model` (identical on every
    rank under DDP, batch-norm statistics included)."""


def fit(config: TrainConfig, attributes: list[str], out: str | Path, context: DistributedContext,
        resume: bool = False) -> FitResult:  # fmt: skip
    """Train one model on `attributes` into run folder `out`; the summary is also written to summary.json.

    The run folder is locked for the whole run (rank 0 holds it), so a second writer is refused, not mixed in.
    """
    run = RunDir(out)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"{run}: exists and is not a folder; choose another --out")
    with contextlib.ExitStack() as hold:
        on_main(lambda: hold.enter_context(run.lock()), context)
        return _fit(config, attributes, run, context, resume)


def _fit(config: TrainConfig, attributes: list[str], run: RunDir, context: DistributedContext,
         resume: bool) -> FitResult:  # fmt: skip
    if run.last.exists() and not resume:
        raise UserError(f"{run}: already holds a run; pass --resume to continue it, or choose another --out")
    preprocessing = model_preprocessing(config.arch, config.img_size, config.interpolation)
    if resume and run.last.exists():
        check_resume(run, config, attributes, preprocessing)  # before anything is written into the run
    seed_everything(config.seed, config.deterministic)
    device = context.device

    # Data: labels and split, then pixels (the cache when one matches) and loaders.
    data = load_run_data(config, attributes, run, context)
    schema = data.dataset.schema
    cache = open_or_build_cache(config, data, preprocessing, context)
    known_bad, found_by = known_bad_images(data, cache, context)
    check_bad_fraction(config, {p: r for p, r in known_bad.items() if p in data.train_paths}, len(data.train_paths),
                       found_by)  # fmt: skip
    loaders = make_loaders(config, data, preprocessing, cache, context)

    # Model, optimiser, schedule, precision, weight average.
    model = create_model(config.arch, schema, layout=config.layout, attributes=attributes, grouping=config.grouping,
                         pretrained=config.pretrained, weights=config.weights, drop_rate=config.drop_rate,
                         applicability_head=config.applicability_weight > 0)  # fmt: skip
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    steps_per_epoch = min(len(loaders.train), config.max_steps_per_epoch or len(loaders.train))
    amp_dtype = resolve_amp(config.amp, device)
    trainables = Trainables(model, optimizer, build_scheduler(config, optimizer, steps_per_epoch),
                            torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
                            build_ema(config, model))  # fmt: skip
    augmentation = config.augmentation()
    checkpoints = RunCheckpoints(run, {
        "spec": model.spec, "schema": schema.to_dict(), "preprocessing": preprocessing.to_dict(),
        "augmentation": augmentation.to_dict(), "config": config.to_dict(), "attributes": attributes,
        DATASET_KEY: dataset_record(config.data, run.path),
    })  # fmt: skip
    state = TrainState()
    if resume and run.last.exists():
        state = checkpoints.restore(trainables)
        if context.is_main:
            print(f"resuming {run} from epoch {state.next_epoch + 1} of {config.epochs}")
    state.skipped.update(known_bad.items())  # listed even if a short or cut epoch never draws them

    train_model: nn.Module = model
    if context.enabled:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    settings = step_settings(config, schema, attributes, preprocessing, amp_dtype, channels_last)
    num_classes = {name: schema.attribute(name).num_classes for name in attributes}

    def write_settings() -> Any:
        config.save(run.config)
        schema.save(run.schema)
        return tensorboard_writes(run, lambda: open_tensorboard(run))

    writer = write_on_main(write_settings, checkpoints, context)

    for epoch in range(state.next_epoch, config.epochs):
        # Everything random in an epoch derives from (seed, epoch, rank): a resumed run repeats it exactly.
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + context.rank)
        loaders.sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7_919 + context.rank)
        total = min(len(loaders.sampler), steps_per_epoch * config.batch_size)
        with progress(total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="img",
                      enabled=config.progress and context.is_main, leave=False) as bar:  # fmt: skip
            try:
                stats = train_one_epoch(train_model, optimizer, trainables.scheduler, loaders.train, context,
                                        settings, generator, scaler=trainables.scaler, ema=trainables.ema,
                                        progress=bar)  # fmt: skip
                if not weights_finite(model):  # the last step can break the weights after the last loss was read
                    raise TrainingDiverged("the weights became NaN or infinite")
            except TrainingDiverged as exc:
                raise diverged(run, epoch, exc) from None
        if context.enabled:
            # Each rank updated its own batch-norm statistics, and the moving average blended each rank's own into
            # its copy: average both so every rank validates and holds the same model.
            from timm.utils import distribute_bn

            for module in {id(m): m for m in (model, trainables.evaluated)}.values():
                distribute_bn(module, context.world_size, reduce=True)
        validation = evaluate(trainables.evaluated, loaders.val, context, settings, num_classes, tta=config.tta)
        # Every rank's skips, so the ranks agree on the bad-image count (one rank refusing alone would leave the
        # others waiting in a collective forever) and the run folder lists them all.
        state.skipped.update(skip for rank_skips in gather_objects(stats["skipped"], context) for skip in rank_skips)
        state.skipped.update(validation.skipped)
        scores = score(schema.subset(attributes), validation.predictions)
        lr = float(trainables.scheduler.get_last_lr()[0])
        row = history_row(epoch + 1, lr, stats, validation.loss, scores)
        improved = state.record(row, selection_score(config, scores, validation.loss))
        write_on_main(functools.partial(record_epoch, checkpoints, trainables, state, improved, scores, writer, config),
                      checkpoints, context)  # fmt: skip
        bad = {path: reason for path, reason in state.skipped if path in data.train_paths}
        check_bad_fraction(config, bad, len(data.train_paths), "(found while training)")
        if config.early_stop and state.epochs_since_best >= config.early_stop:
            if context.is_main:
                print(f"early stop: no improvement for {config.early_stop} epoch(s)")
            break
    if writer is not None:
        writer.close()
    barrier(context)
    calibrate_best(run, schema.subset(attributes), loaders, settings, num_classes, context, augmentation.flip)
    if config.applicability != "none" and context.is_main:
        # Images of attributes the model does not answer are evidence too (a per-attribute model sees only its own).
        others = [r for r in data.dataset.read_labels() if r.attribute not in attributes]
        fit_run_applicability(run.best, config.applicability, data.dataset.path, data.train + others, data.val,
                              device, workers=min(config.workers, 2))  # fmt: skip
    barrier(context)
    image_cache = str(cache.directory) if cache is not None else None
    summary = write_on_main(lambda: finish_run(run, schema, attributes, config, image_cache), checkpoints, context)
    return FitResult(broadcast_object(summary or {}, context), model, trainables.evaluated)


def step_settings(config: TrainConfig, schema: Schema, attributes: list[str], preprocessing: Preprocessing,
                  amp_dtype: torch.dtype | None, channels_last: bool) -> StepSettings:  # fmt: skip
    """How each training step of this config runs: the one place the config's loss, augmentation and clipping
    settings become `StepSettings` (the training bench asks here too)."""
    augmentation = config.augmentation()
    return StepSettings(
        attributes=attributes, preprocessing=preprocessing,
        augmentation=None if augmentation.is_identity else augmentation, amp_dtype=amp_dtype,
        channels_last=channels_last, maybe_weight=config.maybe_weight, label_smoothing=config.label_smoothing,
        clip_grad=config.clip_grad, max_steps=config.max_steps_per_epoch,
        applicability_weight=config.applicability_weight, unlabelled_weight=config.applicability_negatives,
        invisible=tuple(invisible_indices(schema, attributes).get(name, -1) for name in attributes),
    )  # fmt: skip


def calibrate_best(run: RunDir, schema: Schema, loaders: Loaders, settings: StepSettings, num_classes: dict[str, int],
                   context: DistributedContext, flip: bool) -> None:  # fmt: skip
    """Fit the best checkpoint's temperatures on the validation split (every rank evaluates its shard): for single
    passes, and for flip-averaged answers when the model was trained with mirrored images (TTA may be asked then)."""
    best, *_ = model_from_checkpoint(run.best, context.device)
    if settings.channels_last:
        best.to(memory_format=torch.channels_last)
    single = evaluate(best, loaders.val, context, settings, num_classes, tta=False)
    averaged = evaluate(best, loaders.val, context, settings, num_classes, tta=True) if flip else None
    if context.is_main:
        calibrate_run(run, run.best, schema, single.predictions, averaged.predictions if averaged else None)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def selection_score(config: TrainConfig, scores: Scores, val_loss: float) -> float:
    """Higher is better; decides which epoch's weights become the best checkpoint."""
    if config.select_metric == "loss":
        return -val_loss
    if config.select_metric == "map":
        return scores.mean_average_precision
    return scores.basic_precision


def weights_finite(model: nn.Module) -> bool:
    """Whether every floating-point weight and buffer is finite; a NaN must never reach a checkpoint."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def diverged(run: RunDir, epoch: int, exc: TrainingDiverged) -> TrainingDiverged:
    """The divergence, with which epoch and what was kept, in words a user can act on."""
    kept = (f"the last good checkpoint, {run.last} (epoch {epoch}), is kept" if run.last.is_file()
            else "no epoch had finished, so there is no checkpoint")  # fmt: skip
    return TrainingDiverged(
        f"{run}: training diverged in epoch {epoch + 1}: {exc}. The run stopped; {kept}. Lower --lr, keep "
        "--clip-grad on, or try --amp bf16 or off, then train again"
    )


def record_epoch(checkpoints: RunCheckpoints, trainables: Trainables, state: TrainState, improved: bool,
                 scores: Scores, writer: Any, config: TrainConfig) -> None:  # fmt: skip
    """After an epoch: best.pt (if it improved) and last.pt, the metrics, the skipped images, TensorBoard."""
    run = checkpoints.run
    checkpoints.save(trainables, state, improved, scores)
    write_history(run, state.history)
    record_skipped(run, state.skipped)
    tensorboard_writes(run, lambda: log_epoch(writer, state.history[-1], config))


def tensorboard_writes(run: RunDir, write: Callable[[], T]) -> T:
    """TensorBoard writes its event files itself, past `atomic_open`: a full disk there is named the same way."""
    try:
        return write()
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError.writing(run.tensorboard, exc) from None
        raise


def write_on_main(write: Callable[[], T], checkpoints: RunCheckpoints, context: DistributedContext) -> T | None:
    """Rank 0 writes into the run folder; a full disk stops every rank, saying what is kept to resume from."""

    def explained() -> T:
        try:
            return write()
        except DiskFullError as exc:
            raise disk_full(checkpoints.run, checkpoints.saved_epochs, exc) from None

    return on_main(explained, context)


def disk_full(run: RunDir, saved: int, exc: DiskFullError) -> DiskFullError:
    """The full disk in words a user can act on: which file, and the checkpoint that survived (atomic writes)."""
    where = f"disk full while writing {exc.path}" if exc.path else str(exc)
    kept = (
        f"the last good checkpoint is {run.last} (epoch {saved}); free some space, then continue with --resume"
        if saved
        else "no epoch had been saved yet, so there is no checkpoint; free some space, then train again"
    )
    return DiskFullError(f"{run}: {where}; {kept}", path=exc.path)


def finish_run(run: RunDir, schema: Schema, attributes: list[str], config: TrainConfig,
               image_cache: str | None) -> dict[str, Any]:  # fmt: skip
    """Write the summary (last, so it marks the run finished) and the run's report with its plots."""
    from fashionattr.report import write_run_report

    best = load_checkpoint(run.best)
    history = json.loads(run.metrics_json.read_text(encoding="utf-8"))
    summary = {
        "run_dir": str(run),
        "arch": config.arch,
        "layout": config.layout,
        "attributes": attributes,
        "best_epoch": best["epoch"] + 1,
        "epochs_run": len(history),
        "best_metrics": best["metrics"],
        "image_cache": image_cache,
    }
    write_run_report(run, schema.subset(attributes), history, summary, best["scores"])
    write_json(run.summary, summary)
    return summary


def train(config: TrainConfig, resume: bool = False) -> list[dict[str, Any]]:
    """Train what the config asks for; the per-attribute layout trains one run per attribute under `config.out`."""
    context = init_distributed(config.device)
    try:
        schema = DatasetRoot.open(config.data).schema
        try:
            attributes = schema.resolve_names(config.attributes)
        except KeyError as exc:
            raise UserError(f"--attributes: {exc.args[0]}") from None
        if not layout_of(config.layout).one_model_per_attribute:
            return [fit(config, attributes, config.out, context, resume=resume).summary]
        summaries = []
        for name in attributes:
            run = attribute_run(config.out, schema, name)
            if run.is_finished and resume:
                summaries.append(json.loads(run.summary.read_text(encoding="utf-8")))
                continue
            summaries.append(fit(config, [name], run.path, context, resume=resume).summary)
        return summaries
    finally:
        shutdown(context)


def attribute_run(out: str | Path, schema: Schema, attribute: str) -> RunDir:
    """The run folder of one attribute of a per-attribute run: OUT/<short name>."""
    return RunDir(out).attribute_run(schema.attribute(attribute).short_name)
