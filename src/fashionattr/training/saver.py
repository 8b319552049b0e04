"""A run's checkpoints, in the manner of timm's `CheckpointSaver`: what best.pt and last.pt hold, and resuming.

best.pt holds the weights that are evaluated (the EMA's when there is one) of the best epoch so far; last.pt adds
the whole training state (raw weights, optimiser, schedule, scaler, EMA, history), so `--resume` continues
exactly where the last finished epoch left off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fashionattr.checkpoint import load_checkpoint, save_checkpoint
from fashionattr.config import TrainConfig
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.errors import UserError
from fashionattr.io import write_json
from fashionattr.metrics import Scores
from fashionattr.run_dir import RunDir


@dataclass
class TrainState:
    """Where a run stands between epochs; saved in last.pt and restored by `--resume`."""

    next_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    epochs_since_best: int = 0
    skipped: set[tuple[str, str]] = field(default_factory=set)

    def record(self, row: dict[str, Any], score: float) -> bool:
        """Add an epoch's metrics; whether its score beat every earlier epoch's.

        An undefined score (mAP when no answer counted) beats nothing, but until some epoch has a score each epoch
        counts as the best so far, so a run always has a best.pt.
        """
        self.history.append(row)
        self.next_epoch = row["epoch"]
        score = -math.inf if math.isnan(score) else score
        improved = score > self.best_score or self.best_score == -math.inf
        if improved:
            self.best_score, self.epochs_since_best = score, 0
        else:
            self.epochs_since_best += 1
        return improved


@dataclass
class Trainables:
    """Everything whose state a resumed run needs back."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    ema: nn.Module | None

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and shipped: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]


class RunCheckpoints:
    """Writes a run's best.pt and last.pt; `description` (spec, schema, preprocessing, ...) goes into both."""

    def __init__(self, run: RunDir, description: dict[str, Any]) -> None:
        self.run = run
        self.description = description
        self.saved_epochs = 0
        """How many epochs the last.pt on disk holds: what a run stopped now (a full disk) would resume from."""

    def restore(self, trainables: Trainables) -> TrainState:
        """Load last.pt's training state into `trainables`; the state to continue from."""
        state = load_checkpoint(self.run.last)
        trainables.model.load_state_dict(state["train_model"])
        trainables.optimizer.load_state_dict(state["optimizer"])
        trainables.scheduler.load_state_dict(state["scheduler"])
        if trainables.scaler is not None and state.get("scaler"):
            trainables.scaler.load_state_dict(state["scaler"])
        if trainables.ema is not None and state.get("ema_model") is not None:
            trainables.ema.module.load_state_dict(state["ema_model"])  # type: ignore[operator, union-attr]
        self.saved_epochs = state["epoch"] + 1
        return TrainState(next_epoch=state["epoch"] + 1, history=list(state["history"]),
                          best_score=state["best_score"], epochs_since_best=state["epochs_since_best"],
                          skipped={(path, reason) for path, reason in state.get("skipped", [])})  # fmt: skip

    def save(self, trainables: Trainables, state: TrainState, improved: bool, scores: Scores) -> None:
        """After an epoch: best.pt (and scores.json) when it improved, last.pt always; each written atomically."""
        epoch, row = state.next_epoch - 1, state.history[-1]
        weights = trainables.evaluated.state_dict()
        if improved:
            save_checkpoint(self.run.best, {**self.description, "model": weights, "epoch": epoch, "metrics": row,
                                            "scores": scores.to_dict()})  # fmt: skip
            # What was measured, as an evaluation's scores.json says it: the best epoch's weights (the moving average
            # when there is one) on the validation split, before calibration, with the TTA the config validates with.
            config = self.description.get("config", {})
            measured = {"model": str(self.run.best), "epoch": epoch + 1, "data": config.get("data"), "split": "val",
                        "labels": None, "tta": bool(config.get("tta")), "calibration": "raw"}  # fmt: skip
            write_json(self.run.scores, {**measured, **scores.to_dict()})
        ema = trainables.ema
        save_checkpoint(self.run.last, {
            **self.description, "model": weights, "train_model": trainables.model.state_dict(),
            "ema_model": ema.module.state_dict() if ema is not None else None,  # type: ignore[operator, union-attr]
            "optimizer": trainables.optimizer.state_dict(), "scheduler": trainables.scheduler.state_dict(),
            "scaler": trainables.scaler.state_dict() if trainables.scaler is not None else None, "epoch": epoch,
            "history": state.history, "best_score": state.best_score, "epochs_since_best": state.epochs_since_best,
            "metrics": row, "skipped": sorted(state.skipped),
        })  # fmt: skip
        self.saved_epochs = epoch + 1


def check_resume(run: RunDir, config: TrainConfig, attributes: list[str], preprocessing: Preprocessing) -> None:
    """Refuse `--resume` with settings that build another model than the run's, naming each and both values.

    The architecture, layout, grouping, attributes and input pixels decide the model's weights and what they mean;
    resuming with others would end in a state-dict traceback, or worse, in a model trained on two inputs.
    """
    stored = load_checkpoint(run.last)
    stored_config = stored.get("config") or {}
    stored_input = stored.get("preprocessing") or {}
    pairs: list[tuple[str, Any, Any]] = [
        ("arch", config.arch, stored_config.get("arch")),
        ("layout", config.layout, stored_config.get("layout")),
        ("attributes", ",".join(attributes), ",".join(stored.get("attributes") or [])),
        ("image size", preprocessing.img_size, stored_input.get("img_size")),
        ("resampling", preprocessing.interpolation, stored_input.get("interpolation")),
    ]
    if config.layout == "grouped":
        pairs.append(("grouping", config.grouping, stored_config.get("grouping")))
    differences = [f"{setting} {ours} here, {theirs} in the run" for setting, ours, theirs in pairs if ours != theirs]
    if differences:
        raise UserError(f"{run}: --resume with other settings than the run was started with: "
                        f"{'; '.join(differences)}; resume with the run's own settings (its config.yaml: --arch, "
                        "--layout, --attributes, --img-size, --interpolation, --grouping) or choose another "
                        "--out")  # fmt: skip
