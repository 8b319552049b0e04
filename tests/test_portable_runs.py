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


FORMAT_1 = Path(__file__).parent / "fixtures" / "run-format-1"
"""A run folder written by the release before the packages were rearranged (checkpoint format 1), with two images
and the answers that release gave for them (`predictions.json`)."""


def test_a_run_written_by_the_previous_release_predicts_the_same_answers(tmp_path, monkeypatch):
    import json

    project = tmp_path / "old"
    shutil.copytree(FORMAT_1, project)
    monkeypatch.chdir(project)
    assert main(["predict", "run", "images", "--format", "json", "--out", "now.json"]) == 0
    then = {item["source"]: item["attributes"] for item in json.loads((project / "predictions.json").read_text())}
    now = {item["source"]: item["attributes"] for item in json.loads((project / "now.json").read_text())}
    assert then.keys() == now.keys()
    for source, attributes in then.items():
        assert attributes.keys() == now[source].keys()
        for name, answer in attributes.items():
            assert now[source][name]["applies"] == answer["applies"], (source, name)
            assert now[source][name]["applicability"] == pytest.approx(answer["applicability"], abs=1e-5)
            assert now[source][name]["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-5)


def test_a_run_written_by_the_previous_release_rebuilds_its_report_and_exports(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FORMAT_1 / "run", run)
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "| **BP / mAP** | 54 | 15.9 | 14.2 |" in report  # the scores that release stored, drawn again
    assert (run / "plots" / "learning_curves.png").stat().st_size > 0
    assert main(["export", str(run), "--out", str(tmp_path / "model.onnx")]) == 0
    assert (tmp_path / "model.onnx").stat().st_size > 0
