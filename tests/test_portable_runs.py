"""Portable run folders: a run records its dataset (absolute, and relative to the run folder), so a run copied with
its data, or moved without it, still evaluates, reviews and calibrates; a dataset found nowhere names --data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fashionattr.cli import main


@pytest.fixture()
def demo_like(synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`project/data` and `project/run`, trained from inside `project` with the relative `--data data`, as the demo
    trains `runs/demo/run` on `runs/demo/data`."""
    project = tmp_path / "project"
    shutil.copytree(synthetic_data, project / "data")
    monkeypatch.chdir(project)
    quick = ["--batch-size", "8", "--workers", "0", "--max-steps-per-epoch", "2", "--no-progress"]
    assert main(["train", "data", "--out", "run", "--arch", "test_resnet", "--img-size", "32", "--epochs", "1",
                 *quick]) == 0  # fmt: skip
    return project


def evaluate_review_calibrate(run: Path, scratch: Path) -> None:
    for argv in (["evaluate", str(run), "--workers", "0", "--out", str(scratch / "eval")],
                 ["review", str(run), "--workers", "0", "--out", str(scratch / "review")],
                 ["calibrate", str(run), "--workers", "0"]):  # fmt: skip
        assert main(argv) == 0, argv


def test_a_run_copied_with_its_data_evaluates_reviews_and_calibrates(demo_like, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(demo_like, copy)
    shutil.rmtree(demo_like)  # the original is gone: only the copy beside the run can be found
    monkeypatch.chdir(tmp_path)  # and the command runs from another folder
    evaluate_review_calibrate(copy / "run", tmp_path / "out")


def test_a_run_moved_without_its_data_finds_it_where_it_was(demo_like, tmp_path, monkeypatch):
    moved = tmp_path / "moved-run"
    shutil.move(demo_like / "run", moved)
    monkeypatch.chdir(tmp_path)
    evaluate_review_calibrate(moved, tmp_path / "out")


def test_a_dataset_found_nowhere_names_data(demo_like, tmp_path, monkeypatch, capsys):
    shutil.move(demo_like / "data", tmp_path / "renamed")
    monkeypatch.chdir(tmp_path)
    for command in ("evaluate", "review", "calibrate"):
        extra = ["--out", str(tmp_path / command)] if command != "calibrate" else []
        assert main([command, str(demo_like / "run"), "--workers", "0", *extra]) == 2
        err = capsys.readouterr().err
        assert "the dataset the run trained on is not found" in err and "pass --data" in err, err
    assert main(["evaluate", str(demo_like / "run"), "--workers", "0", "--data", str(tmp_path / "renamed"), "--out",
                 str(tmp_path / "eval")]) == 0  # fmt: skip
    assert main(["evaluate", str(demo_like / "run"), "--data", str(tmp_path / "nowhere")]) == 2
    assert "(--data)" in capsys.readouterr().err
