"""`import-folders`: ImageFolder-style class folders become a dataset that checks, splits and trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpus import IMPORT_LINK_CASES
from fashionattr.cli import main
from fashionattr.data.dataset import DatasetRoot


def stripes(vertical: bool, seed: int, size: int = 40) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 60, 3).astype(np.uint8)
    period = int(rng.integers(4, 8))
    if vertical:
        pixels[:, ::period] = 230
    else:
        pixels[::period, :] = 230
    return Image.fromarray(pixels)


@pytest.fixture()
def class_folders(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    for class_name, vertical in (("horizontal", False), ("vertical", True)):
        for number in range(24):
            path = source / class_name / f"img {number}.{'png' if number % 3 == 0 else 'jpg'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            stripes(vertical, seed=number + 100 * vertical).save(path)
    (source / "horizontal" / "notes.txt").write_text("not an image")
    return source


def test_class_folders_become_a_dataset_that_trains(class_folders, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert main(["import-folders", str(class_folders), str(out), "--attribute", "stripes"]) == 0
    printed = capsys.readouterr().out
    assert "stripes: 2 classes (horizontal 24, vertical 24)" in printed and "left out 1 file" in printed
    schema = json.loads((out / "schema.json").read_text())
    assert schema["attributes"] == [{"name": "stripes", "classes": ["horizontal", "vertical"]}]
    records = DatasetRoot.open(out).read_labels()
    assert len(records) == 48 and {r.target for r in records} == {0, 1}
    first = next(r for r in records if r.target == 1)
    assert (out / first.path).stat().st_ino != 0 and (out / first.path).read_bytes()  # linked or copied
    sources = (out / "Annotations" / "sources.csv").read_text().splitlines()
    assert len(sources) == 48 and "img 0.png" in sources[0]

    assert main(["check", str(out)]) == 0
    run = tmp_path / "run"
    code = main(["train", str(out), "--out", str(run), "--arch", "test_resnet", "--img-size", "32", "--epochs", "6",
                 "--batch-size", "8", "--workers", "0", "--lr", "0.003", "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_metrics"]["val_mean_accuracy"] >= 0.8  # stripes are easy: far above the 0.5 chance


def test_several_attributes_and_copies(tmp_path):
    source = tmp_path / "src"
    for attribute in ("pattern", "shade"):
        for class_name in ("a", "b", "c"):
            folder = source / attribute / class_name
            folder.mkdir(parents=True)
            stripes(class_name == "b", seed=ord(class_name)).save(folder / "one.jpg")
    out = tmp_path / "out"
    assert main(["import-folders", str(source), str(out), "--copy"]) == 0
    assert DatasetRoot.open(out).schema.names == ["pattern", "shade"]
    assert len(DatasetRoot.open(out).read_labels()) == 6


def test_clear_errors_for_empty_classes_bad_files_and_an_existing_dataset(class_folders, tmp_path, capsys):
    (class_folders / "empty").mkdir()
    assert main(["import-folders", str(class_folders), str(tmp_path / "a"), "--attribute", "stripes"]) == 2
    assert "empty: no images in this class folder" in capsys.readouterr().err
    (class_folders / "empty").rmdir()

    (class_folders / "vertical" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["import-folders", str(class_folders), str(tmp_path / "b"), "--attribute", "stripes"]) == 2
    err = capsys.readouterr().err
    assert "1 image(s) check would refuse" in err and "broken.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "Annotations" / "label.csv").exists()
    assert main(["import-folders", str(class_folders), str(tmp_path / "c"), "--attribute", "stripes",
                 "--skip-bad"]) == 0  # fmt: skip
    assert "skipped" in capsys.readouterr().out and len(DatasetRoot.open(tmp_path / "c").read_labels()) == 48

    assert main(["import-folders", str(class_folders), str(tmp_path / "c"), "--attribute", "stripes"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["import-folders", str(class_folders / "vertical"), str(tmp_path / "d")]) == 2
    assert "--attribute" in capsys.readouterr().err
    assert main(["import-folders", str(tmp_path / "missing"), str(tmp_path / "e"), "--attribute", "x"]) == 2


def small_tree(tmp_path: Path) -> tuple[Path, Path]:
    """SRC/a and SRC/b with three images each, and a folder outside SRC with a photo in it."""
    source, outside = tmp_path / "src", tmp_path / "outside"
    for target, class_name in enumerate("ab"):
        (source / class_name).mkdir(parents=True)
        for number in range(3):
            stripes(bool(target), seed=number + 10 * target).save(source / class_name / f"{number}.jpg")
    outside.mkdir()
    stripes(True, seed=99).save(outside / "photo.jpg")
    return source, outside


@pytest.mark.parametrize("make", IMPORT_LINK_CASES, ids=[make.__name__.strip("_") for make in IMPORT_LINK_CASES])
def test_import_writes_only_what_check_accepts_and_lists_what_it_left_out(tmp_path, capsys, make):
    source, outside = small_tree(tmp_path)
    words = make(source, outside)
    assert main(["import-folders", str(source), str(tmp_path / "refused"), "--attribute", "x"]) == 2
    err = capsys.readouterr().err
    assert words in err and "--skip-bad" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "dataset"
    assert main(["import-folders", str(source), str(out), "--attribute", "x", "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "skipped " in printed and words in printed
    rows = (out / "Annotations" / "label.csv").read_text().splitlines()
    assert len(rows) == len(list((out / "Images" / "x").iterdir()))
    assert not any(path.is_symlink() for path in (out / "Images" / "x").iterdir())
    assert main(["check", str(out), "--workers", "1"]) == 0, capsys.readouterr().err


def test_links_inside_the_source_are_followed_and_a_source_that_is_a_link_is_resolved(tmp_path, capsys):
    source, _ = small_tree(tmp_path)
    (tmp_path / "alias").symlink_to(source)
    (source / "a" / "other-name.jpg").symlink_to("0.jpg")
    (source / "b" / "extra.jpg").symlink_to("../../outside/../src/a/1.jpg")  # one file in two classes: left out
    out = tmp_path / "dataset"
    assert main(["import-folders", str(tmp_path / "alias"), str(out), "--attribute", "x", "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "x: 2 classes (a 2, b 3)" in printed, printed
    assert "the same file as" in printed and "one file in classes a and b" in printed
    assert main(["check", str(out), "--workers", "1"]) == 0


def test_every_class_bad_with_skip_bad_keeps_the_users_empty_folder(tmp_path, capsys):
    source, _ = small_tree(tmp_path)
    for image in (source / "b").iterdir():
        image.write_bytes(b"not an image")
    out = tmp_path / "made-by-the-user"
    out.mkdir()
    assert main(["import-folders", str(source), str(out), "--attribute", "x", "--skip-bad"]) == 2
    assert "no usable image left in x/b" in capsys.readouterr().err
    assert out.is_dir() and not any(out.iterdir())
