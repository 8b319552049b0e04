"""Plots land as complete PNG files with no temporary files left beside them; tables render as Markdown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionattr.render.plots import plot_confusion, plot_grid_bars, plot_learning_curves
from fashionattr.render.tables import markdown_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_only_png(folder: Path, path: Path) -> None:
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert path.stat().st_size > 1000
    assert list(folder.iterdir()) == [path]


def test_plot_confusion(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    confusion = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # the last class has no images: no division by zero
    plot_confusion(confusion, ["Invisible", "Ruffle Semi-High Collar", "Rib Collar"], "collar_design", path)
    assert_only_png(tmp_path, path)


def test_plot_confusion_rejects_mismatched_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 class names"):
        plot_confusion(np.zeros((2, 2)), ["a", "b", "c"], "t", tmp_path / "confusion.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_learning_curves(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    history = [
        {
            "epoch": 1,
            "train_loss": 1.2,
            "val_loss": None,
            "val_mean_accuracy": 0.4,
            "val_accuracy/coat_length_labels": 0.5,
        },
        {"epoch": 2, "train_loss": 0.9, "val_mean_accuracy": 0.55, "val_accuracy/coat_length_labels": 0.6},
        {
            "epoch": 3,
            "train_loss": 0.7,
            "val_loss": 0.8,
            "val_mean_accuracy": 0.6,
            "val_accuracy/pant_length_labels": 0.6,
        },
    ]
    plot_learning_curves(history, path)
    assert_only_png(tmp_path, path)


def test_plot_learning_curves_without_epochs(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    plot_learning_curves([], path)
    assert_only_png(tmp_path, path)


def test_plot_grid_bars(tmp_path: Path) -> None:
    path = tmp_path / "grid.png"
    table = {
        "coat_length": {"resnet50": 70.0, "vgg19_bn": 83.0, "dpn131": 84.0},
        "collar_design": {"resnet50": 59.0, "vgg19_bn": 81.0},  # an unfinished cell has no bar
    }
    plot_grid_bars(table, path, title="validation accuracy")
    assert_only_png(tmp_path, path)


def test_markdown_table() -> None:
    table = markdown_table([["coat", "70"], ["a|b", "5"]], header=["attribute", "resnet50"])
    assert table == "| attribute | resnet50 |\n|---|---|\n| coat | 70 |\n| a\\|b | 5 |\n"
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        markdown_table([["only one"]], header=["a", "b"])
