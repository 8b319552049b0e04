"""A run's record of its epochs: metrics rows (CSV, JSON, TensorBoard), the console line, the skipped images."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from fashionattr.config import TrainConfig
from fashionattr.io import atomic_write_text, write_json
from fashionattr.metrics import Scores
from fashionattr.run_dir import RunDir


def history_row(epoch: int, lr: float, stats: dict[str, Any], val_loss: float, scores: Scores) -> dict[str, Any]:
    row: dict[str, Any] = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": stats["train_loss"],
        "train_images_per_second": stats["train_images_per_second"],
        "val_loss": val_loss,
        "val_mean_accuracy": scores.basic_precision,
        "val_map": scores.mean_average_precision,
    }
    for name, attribute_scores in scores.attributes.items():
        if attribute_scores.count:
            row[f"val_accuracy/{name}"] = attribute_scores.accuracy
            row[f"val_ap/{name}"] = attribute_scores.average_precision
    return row


def write_history(run: RunDir, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run.metrics_csv, buffer.getvalue())
    write_json(run.metrics_json, history)


def record_skipped(run: RunDir, skipped: set[tuple[str, str]]) -> None:
    """One `path<TAB>reason` line per skipped image, however many readers (cache, header scan, loader) found it."""
    reasons: dict[str, str] = {}
    for path, reason in sorted(skipped):
        reasons.setdefault(path, reason)
    lines = [f"{path}\t{reason}" for path, reason in reasons.items()]
    atomic_write_text(run.skipped, "\n".join(lines) + ("\n" if lines else ""))


def open_tensorboard(run: RunDir) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        return None
    return SummaryWriter(log_dir=str(run.tensorboard))


def log_epoch(writer: Any, row: dict[str, Any], config: TrainConfig) -> None:
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
