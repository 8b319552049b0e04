"""Training end to end on synthetic data: learning, checkpoints, resume, run directory contents, and bad images.

Bad images in the training data: every unusable file of the corpus (tests/corpus.py) is skipped and listed in the
run folder with its reason; on a dataset with 5% corrupt files training goes on within --max-bad-fraction and
refuses to start above it (found by the image cache or the header scan), and truncated files that pass the header
scan stop it after the epoch that found them.
"""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fashionattr.training as training
import fashionattr.training.saver as checkpoints
from fashionattr.checkpoint import load_checkpoint, model_from_checkpoint
from fashionattr.cli import main
from fashionattr.config import resolve_config
from fashionattr.data.labels import label_string
from fashionattr.errors import UserError
from fashionattr.run_dir import RunDir
from fashionattr.synthetic.generate import generate_dataset
from helpers import CORPUS_DIR, QUICK_TRAIN, assert_no_traceback, bad_cases, draw_pattern

ATTRIBUTES = ["skirt_length_labels", "neckline_design_labels"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, per_class=14, size=64, seed=1, progress=False)
    return root


def config(data, out, **overrides):
    settings = dict(
        data=str(data),
        out=str(out),
        arch="test_resnet",
        layout="multitask",
        attributes=ATTRIBUTES,
        img_size=48,
        epochs=2,
        batch_size=16,
        workers=0,
        progress=False,
        lr=3e-3,
        deterministic=True,
    )
    settings.update(overrides)
    return resolve_config(None, settings)


def patterns_dataset(root: Path, per_class: int = 40) -> Path:
    """A dataset with its own schema: stripe direction and stripe width, in random colours."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "schema.json").write_text(json.dumps({"name": "patterns", "attributes": [
        {"name": "direction", "classes": ["horizontal", "vertical", "diagonal"]},
        {"name": "width", "classes": ["thin", "wide"]}]}))  # fmt: skip
    rows = []
    for attribute, classes in (("direction", 3), ("width", 2)):
        for target in range(classes):
            for i in range(per_class):
                image = Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(0, 256, 3)))
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                kind = target if attribute == "direction" else int(rng.integers(0, 3))
                period = 4 if attribute == "direction" else (2 if target == 0 else 8)
                draw_pattern(image, kind, period, colour)
                path = f"Images/{attribute}/{target}_{i}.jpg"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                image.save(root / path, quality=90)
                rows.append(f"{path},{attribute},{label_string(target, classes)}\n")
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "label.csv").write_text("".join(rows))
    return root


def test_training_learns_and_writes_a_complete_run_directory(tmp_path):
    data = patterns_dataset(tmp_path / "patterns")
    out = tmp_path / "run"
    [summary] = training.train(config(data, out, attributes=["all"], img_size=32, epochs=6, batch_size=16,
                                      cache="build"))  # fmt: skip
    for name in ("config.yaml", "schema.json", "metrics.csv", "metrics.json", "best.pt", "last.pt", "scores.json",
                 "summary.json", "report.md", "split.csv", "plots/learning_curves.png",
                 "plots/confusion_direction.png", "tensorboard"):  # fmt: skip
        assert (out / name).exists(), name
    history = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    chance = (1 / 3 + 1 / 2) / 2
    best = summary["best_metrics"]["val_mean_accuracy"]
    assert best > chance + 0.25, f"validation accuracy {best:.2f} is not well above chance {chance:.2f}"
    _, schema, preprocessing, payload = model_from_checkpoint(out)
    assert schema.name == "patterns" and payload["attributes"] == ["direction", "width"]
    assert preprocessing.img_size == 32


def test_refuses_to_overwrite_a_run_without_resume(dataset, tmp_path):
    out = tmp_path / "run"
    training.train(config(dataset, out, epochs=1, max_steps_per_epoch=1))
    with pytest.raises(UserError, match="--resume"):
        training.train(config(dataset, out, epochs=1))


class Interrupted(Exception):
    pass


def test_resume_continues_from_the_last_epoch_with_identical_weights(dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    training.train(config(dataset, straight, epochs=3))

    resumed = tmp_path / "resumed"
    real_save = checkpoints.save_checkpoint
    saves = []

    def save_then_die(path, payload):
        real_save(path, payload)
        saves.append(path.name)
        if path.name == "last.pt" and payload["epoch"] == 1:
            raise Interrupted

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        training.train(config(dataset, resumed, epochs=3))
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 1
    training.train(config(dataset, resumed, epochs=3), resume=True)

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert b["epoch"] == 2
    assert [r["epoch"] for r in b["history"]] == [1, 2, 3]
    for key, value in a["train_model"].items():
        assert torch.equal(value, b["train_model"][key]), key


def test_soft_labels_ema_and_per_attribute_layout(dataset, tmp_path):
    out = tmp_path / "per-attribute"
    summaries = training.train(config(dataset, out, layout="per-attribute", epochs=1, maybe_weight=0.3,
                                      ema_decay=0.9, max_steps_per_epoch=2))  # fmt: skip
    assert [s["attributes"] for s in summaries] == [["skirt_length_labels"], ["neckline_design_labels"]]
    assert (out / "skirt_length" / "best.pt").is_file() and (out / "neckline_design" / "best.pt").is_file()


def test_grouped_layout_trains(dataset, tmp_path):
    [summary] = training.train(config(dataset, tmp_path / "g", layout="grouped", grouping="design-length", epochs=1,
                                      max_steps_per_epoch=2))  # fmt: skip
    spec = load_checkpoint(tmp_path / "g")["spec"]
    assert spec["groups"] == {"design": ["neckline_design_labels"], "length": ["skirt_length_labels"]}
    assert summary["epochs_run"] == 1


def test_train_and_evaluate_commands(dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", str(dataset), "--out", str(out), "--arch", "test_resnet", "--attributes",
                 "skirt_length,neckline_design", "--img-size", "32", "--epochs", "1", "--workers", "0",
                 "--max-steps-per-epoch", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    assert main(["evaluate", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "BP / mAP" in printed
    scores = json.loads((out / "eval-val" / "scores.json").read_text())
    assert set(scores["attributes"]) >= set(ATTRIBUTES)
    assert (scores["split"], scores["tta"], scores["calibration"]) == ("val", False, "calibrated")
    assert scores["model"] == str(out / "best.pt") and scores["data"] == str(dataset)
    assert main(["evaluate", str(out), "--split", "test", "--workers", "0", "--tta", "--no-calibration"]) == 0
    assert (out / "eval-test" / "confusion_skirt_length.png").is_file()
    # An evaluation says what it measured: the test set, flip TTA, raw probabilities; never titled validation.
    scores = json.loads((out / "eval-test" / "scores.json").read_text())
    assert (scores["split"], scores["tta"], scores["calibration"]) == ("test", True, "raw")
    report = (out / "eval-test" / "report.md").read_text()
    assert report.startswith("# Evaluation on the test set\n") and "| test images |" in report
    assert "validation" not in report.lower() and "val images" not in report and "(epoch 1)" in report
    assert "flip TTA" in report and "raw probabilities" in report
    run_scores = json.loads((out / "scores.json").read_text())  # training's own: the validation split, uncalibrated
    assert (run_scores["split"], run_scores["calibration"]) == ("val", "raw")


def test_bad_settings_are_usage_errors(dataset, tmp_path, capsys):
    assert main(["train", str(dataset), "--out", str(tmp_path / "x"), "--epochs", "0"]) == 2
    assert "epochs must be at least 1" in capsys.readouterr().err
    assert main(["train", str(dataset), "--out", str(tmp_path / "x"), "--arch", "no_such_net"]) == 2
    (tmp_path / "cfg.yaml").write_text("epochz: 3\n")
    assert main(["train", str(dataset), "--config", str(tmp_path / "cfg.yaml")]) == 2
    assert "unknown setting(s) epochz" in capsys.readouterr().err


def test_config_file_with_command_line_override(dataset, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"data: {dataset}\narch: test_resnet\nepochs: 5\nimg_size: 40\n")
    resolved = resolve_config(path, {"epochs": 2, "out": str(tmp_path / "o")})
    assert (resolved.epochs, resolved.img_size, resolved.arch) == (2, 40, "test_resnet")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--arch", "resnet18"], "arch resnet18 here, test_resnet in the run"),
        (["--layout", "grouped", "--grouping", "design-length"], "layout grouped here, multitask in the run"),
        (["--attributes", "skirt_length"], "attributes skirt_length_labels here, skirt_length_labels,neckline"),
        (["--img-size", "64"], "image size 64 here, 48 in the run"),
    ],
)  # fmt: skip
def test_resume_with_other_settings_is_refused_naming_the_setting_and_both_values(dataset, tmp_path, capsys, options,
                                                                                  words):  # fmt: skip
    out = tmp_path / "run"
    base = ["train", str(dataset), "--out", str(out), "--arch", "test_resnet", "--img-size", "48", "--epochs", "2",
            "--workers", "0", "--max-steps-per-epoch", "1", "--no-progress", "--attributes",
            "skirt_length,neckline_design"]  # fmt: skip
    training.train(config(dataset, out, epochs=1, max_steps_per_epoch=1))
    before = (out / "last.pt").read_bytes()
    assert main([*base, *options, "--resume"]) == 2  # a repeated option's last value wins
    err = capsys.readouterr().err
    assert words in err and "--resume with other settings" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "last.pt").read_bytes() == before


# --- bad images in the training data ----------------------------------------------------------------------------


def test_train_skips_and_lists_every_bad_image(corpus_dataset, tmp_path, capsys):
    root, cases = corpus_dataset
    out = tmp_path / "run"
    # One batch holds every training image: with several, the last partial batch is dropped, and a file whose
    # header looks fine (only a decode finds it bad) could go unread in a one-epoch run.
    code = main(["train", str(root), "--out", str(out), "--attributes", "coat_length", "--cache", "off",
                 "--max-bad-fraction", "0.5", *QUICK_TRAIN, "--batch-size", "512"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    skipped = dict(line.split("\t", 1) for line in RunDir(out).skipped.read_text().splitlines())
    assert set(skipped) == {f"{CORPUS_DIR}/{name}" for name in bad_cases(cases)}
    for name, case in bad_cases(cases).items():
        assert case.reason in skipped[f"{CORPUS_DIR}/{name}"], name


CORRUPT_ATTRIBUTES = "coat_length,sleeve_length"
CORRUPT_FRACTION = 0.05


def corrupt(root: Path, fraction: float, seed: int, truncate: bool = False) -> set[str]:
    """Replace `fraction` of the coat and sleeve images with garbage (or cut them short); returns their paths."""
    images = sorted(p for a in ("coat_length_labels", "sleeve_length_labels") for p in (root / "Images" / a).glob("*"))
    rng = random.Random(seed)
    chosen = rng.sample(images, max(1, round(fraction * len(images))))
    for path in chosen:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3] if truncate else rng.randbytes(len(data)))
    return {path.relative_to(root).as_posix() for path in chosen}


@pytest.fixture(scope="module")
def corrupt_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("corrupt") / "data"
    generate_dataset(root, per_class=8, size=48, test_fraction=0.0, workers=1, progress=False)
    return root, corrupt(root, CORRUPT_FRACTION, seed=5)


def train_corrupt(root: Path, out: Path, *extra: str) -> int:
    return main(["train", str(root), "--out", str(out), "--attributes", CORRUPT_ATTRIBUTES, *QUICK_TRAIN, *extra])


@pytest.mark.parametrize("cache", ["build", "off"])
def test_training_goes_on_within_the_bad_image_limit(corrupt_dataset, tmp_path, capsys, cache):
    root, garbage = corrupt_dataset
    out = tmp_path / "run"
    assert train_corrupt(root, out, "--cache", cache, "--max-bad-fraction", "0.1") == 0, capsys.readouterr().err
    skipped = dict(line.split("\t", 1) for line in RunDir(out).skipped.read_text().splitlines())
    assert set(skipped) == garbage
    assert all("not an image" in reason for reason in skipped.values())
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize(("cache", "found_by"), [("build", "image cache"), ("off", "scan of the image headers")])
def test_training_refuses_to_start_over_the_default_limit(corrupt_dataset, tmp_path, capsys, cache, found_by):
    root, garbage = corrupt_dataset
    out = tmp_path / "run"
    assert train_corrupt(root, out, "--cache", cache) == 2
    err = capsys.readouterr().err
    assert_no_traceback(err)
    assert found_by in err and "over the 1.0% limit" in err and "--max-bad-fraction" in err
    assert any(path in err for path in garbage)  # names examples
    assert not (out / "last.pt").exists()  # refused before the first epoch


def test_truncated_images_pass_the_header_scan_and_stop_training_after_an_epoch(tmp_path, capsys):
    root = tmp_path / "data"
    generate_dataset(root, per_class=8, size=48, test_fraction=0.0, workers=1, progress=False)
    cut = corrupt(root, CORRUPT_FRACTION, seed=7, truncate=True)
    out = tmp_path / "run"
    assert train_corrupt(root, out, "--cache", "off") == 2
    err = capsys.readouterr().err
    assert "found while training" in err and any(path in err for path in cut)
    assert (out / "last.pt").exists()  # the epoch that found them is kept
    listed = {line.split("\t")[0] for line in RunDir(out).skipped.read_text().splitlines()}
    assert len(listed) >= 2 and listed <= cut  # those drawn in the epoch (the last, partial batch is dropped)
