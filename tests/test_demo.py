"""`fashionattr demo`, the main job end to end on the built-in synthetic data: data, check, split, cache, training,
scores on the held-out test set, the tags a catalogue would show, and the report; at a size that takes seconds."""

from __future__ import annotations

import json

from fashionattr.run_dir import RunDir
from helpers import refused, run_cli

TINY = ["--per-class", "5", "--size", "64", "--img-size", "32", "--epochs", "1", "--batch-size", "16"]


def test_the_demo_trains_scores_and_reports_and_a_rerun_reuses_its_data(tmp_path):
    out = tmp_path / "demo"
    first = run_cli("demo", "--out", out, *TINY)
    assert first.code == 0, first.err
    run = RunDir(out / "run")
    assert run.checkpoint.is_file() and (out / "run" / "report.md").is_file()
    test = out / "run" / "eval-test"
    scores = json.loads((test / "scores.json").read_text())
    assert scores["split"] == "test" and scores["count"] == 54  # one held-out image per class
    tags = json.loads((test / "tags.json").read_text())
    assert tags["images"] == 54 and tags["threshold"] == 0.5
    assert "Test set" in first.out and "Tags a catalogue would show" in first.out

    again = run_cli("demo", "--out", out, *TINY)
    assert again.code == 0, again.err
    assert f"using the synthetic dataset in {out / 'data'}" in again.out


def test_a_demo_too_small_to_hold_out_a_test_image_is_refused_before_any_work(tmp_path):
    err = refused(["demo", "--out", str(tmp_path / "demo"), "--per-class", "4"], "--per-class 5 or more")
    assert "holds out no test image" in err
    assert not (tmp_path / "demo").exists()
