"""Bad inputs against every reader: the decoder, `check`, `train`, `predict` and `catalog index`.

The corpus (tests/corpus.py) is generated here, never committed. Each case either decodes to upright RGB (CMYK,
grayscale, alpha, 16-bit, EXIF rotation, a PNG/GIF/WebP/BMP named .jpg, 1x1) or is refused with a message that
names the file and says what is wrong; no command shows a traceback. The service's side is in tests/test_serve.py.
Training on a dataset with 5% corrupt files: it goes on within --max-bad-fraction and refuses above it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TrainedRun
from corpus import NON_UTF8_NAME, Case, write_image_corpus
from fashionattr.catalog import Catalog
from fashionattr.cli import main
from fashionattr.data.images import ImageError, open_image, probe_image
from fashionattr.data.labels import LABELS_RELPATH
from fashionattr.data.synth import generate_dataset
from fashionattr.run_dir import RunDir

CORPUS_DIR = "Images/coat_length_labels/corpus"
QUICK_TRAIN = ["--arch", "test_resnet", "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0",
               "--no-progress"]  # fmt: skip


def bad(cases: dict[str, Case]) -> dict[str, Case]:
    return {name: case for name, case in cases.items() if not case.good}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    folder = tmp_path_factory.mktemp("corpus") / "photos"
    return folder, write_image_corpus(folder, non_utf8_name=True)


@pytest.fixture(scope="module")
def corpus_dataset(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    """The shared synthetic dataset plus every corpus file, labelled as coat_length class 1."""
    root = tmp_path_factory.mktemp("corpus-data") / "data"
    shutil.copytree(synthetic_data, root, symlinks=True)
    cases = write_image_corpus(root / CORPUS_DIR)
    rows = "".join(f"{CORPUS_DIR}/{name},coat_length_labels,nynnnnnn\n" for name in cases)
    with (root / LABELS_RELPATH).open("a", encoding="utf-8") as labels:
        labels.write(rows)
    return root, cases


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]


# --- the decoder ------------------------------------------------------------------------------------------------


def test_every_corpus_file_decodes_upright_or_is_refused_by_name(corpus):
    folder, cases = corpus
    for name, case in cases.items():
        path = folder / name
        if case.good:
            with open_image(path) as image:
                assert image.mode == "RGB" and image.size == case.size, name
        else:
            with pytest.raises(ImageError) as info:
                open_image(path)
            assert str(path) in str(info.value) and case.reason in info.value.reason, (name, info.value.reason)


def test_header_probe_finds_all_but_what_needs_a_full_decode(corpus):
    folder, cases = corpus
    for name, case in bad(cases).items():
        if case.header_ok:
            probe_image(folder / name)  # a truncated body shows only when decoded
        else:
            with pytest.raises(ImageError, match=case.reason):
                probe_image(folder / name)


def test_bytes_decode_like_files(corpus):
    folder, cases = corpus
    for name, case in cases.items():
        if (folder / name).is_symlink():
            continue
        data = (folder / name).read_bytes()
        if case.good:
            assert open_image(data, name).size == case.size
        else:
            with pytest.raises(ImageError, match=case.reason):
                open_image(data, name)


def test_exif_rotation_is_applied(corpus):
    folder, _ = corpus
    with Image.open(folder / "exif-rotated.jpg") as raw:
        assert raw.size == (40, 20)
    image = np.asarray(open_image(folder / "exif-rotated.jpg"))
    assert image.shape == (40, 20, 3)
    # Orientation 6 means "rotate 90 degrees clockwise to display": the red top-left corner goes top-right.
    assert image[2, -3, 0] > 200 and image[2, -3, 1] < 80 and image[2, -3, 2] < 80
    assert abs(int(image[2, 2, 0]) - 200) < 30 and abs(int(image[2, 2, 1]) - 200) < 30


def test_alpha_becomes_white_and_16_bit_keeps_its_range(corpus):
    folder, _ = corpus
    rgba = np.asarray(open_image(folder / "rgba.png"))
    assert tuple(rgba[10, 5]) == (0, 0, 255) and tuple(rgba[10, 35]) == (255, 255, 255)
    with Image.open(folder / "gray16.png") as raw:
        assert raw.mode.startswith("I")  # really 16 bits per pixel
    gray = np.asarray(open_image(folder / "gray16.png"))
    assert gray.min() <= 5 and gray.max() >= 250 and (gray[..., 0] == gray[..., 1]).all()


def test_decompression_bomb_is_refused_from_its_header(corpus):
    folder, _ = corpus
    assert (folder / "bomb.png").stat().st_size < 200
    assert struct.unpack(">II", (folder / "bomb.png").read_bytes()[16:24]) == (40_000, 40_000)  # as declared
    with pytest.raises(ImageError, match="decompression bomb"):
        open_image(folder / "bomb.png")


# --- `check` ----------------------------------------------------------------------------------------------------


def test_check_lists_every_bad_image_with_its_reason(corpus_dataset, capsys):
    root, cases = corpus_dataset
    assert main(["check", str(root), "--workers", "1"]) == 2
    out, err = capsys.readouterr()
    assert_no_traceback(out + err)
    listed = out.split("unusable image(s):", 1)[1]
    for name, case in cases.items():
        line = next((line for line in listed.splitlines() if f"{CORPUS_DIR}/{name}:" in line), None)
        if case.good:
            assert line is None, f"{name} should decode: {line}"
        else:
            assert line is not None and case.reason in line, (name, line)
    assert "40x20: " in out  # the good ones are decoded and counted by size


def test_check_in_a_subprocess_shows_no_traceback(corpus_dataset):
    root, cases = corpus_dataset
    result = subprocess.run([sys.executable, "-m", "fashionattr", "check", str(root), "--workers", "1"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    assert all(name in result.stdout for name in bad(cases))


# --- `train` ----------------------------------------------------------------------------------------------------


def test_train_skips_and_lists_every_bad_image(corpus_dataset, tmp_path, capsys):
    root, cases = corpus_dataset
    out = tmp_path / "run"
    code = main(["train", str(root), "--out", str(out), "--attributes", "coat_length", "--cache", "off",
                 "--max-bad-fraction", "0.5", *QUICK_TRAIN])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    skipped = dict(line.split("\t", 1) for line in RunDir(out).skipped.read_text().splitlines())
    assert set(skipped) == {f"{CORPUS_DIR}/{name}" for name in bad(cases)}
    for name, case in bad(cases).items():
        assert case.reason in skipped[f"{CORPUS_DIR}/{name}"], name


# --- `predict` --------------------------------------------------------------------------------------------------


def test_predict_answers_the_good_and_names_each_bad_file(trained_run: TrainedRun, corpus, capsys):
    folder, cases = corpus
    code = main(["predict", str(trained_run.run), str(folder), "--format", "json", "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert_no_traceback(err)
    entries = {Path(entry["source"]).name: entry for entry in json.loads(out)}
    assert set(entries) == set(cases)  # the symlink loop's partner is not an image name; the loop itself is
    for name, case in cases.items():
        if case.good:
            assert "error" not in entries[name] and len(entries[name]["attributes"]) == 8, name
        else:
            assert case.reason in entries[name]["error"], (name, entries[name])
            assert name in err


def test_predict_prints_a_non_utf8_file_name_as_its_bytes(trained_run: TrainedRun, corpus, tmp_path):
    folder, _ = corpus
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # a strict UTF-8 stdout, as under many locales
    argv = [sys.executable, "-m", "fashionattr", "predict", str(trained_run.run), str(folder), "--workers", "0"]
    result = subprocess.run(argv, capture_output=True, timeout=180, env=env)
    assert result.returncode == 1, result.stderr.decode(errors="replace")[-2000:]
    assert_no_traceback(result.stderr.decode(errors="replace"))
    assert NON_UTF8_NAME in result.stdout
    out_file = tmp_path / "tags.csv"
    assert main(["predict", str(trained_run.run), str(folder), "-o", str(out_file), "--workers", "0"]) == 1
    assert NON_UTF8_NAME in out_file.read_bytes()


# --- `catalog index` --------------------------------------------------------------------------------------------


def test_catalog_index_records_bad_files_as_errors_and_goes_on(trained_run: TrainedRun, corpus, tmp_path, capsys):
    folder, cases = corpus
    db = tmp_path / "catalog.sqlite"
    argv = ["catalog", "index", str(folder), "--model", str(trained_run.run), "--db", str(db), "--workers", "0",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 1
    _, err = capsys.readouterr()
    assert_no_traceback(err)
    catalog = Catalog(db)
    errors = dict(catalog.errors())
    misnamed = os.fsdecode(NON_UTF8_NAME)
    assert set(errors) == set(bad(cases)) | {"caf\\xe9-latin1.jpg"}
    assert "not valid UTF-8" in errors["caf\\xe9-latin1.jpg"]
    for name, case in bad(cases).items():
        assert case.reason in errors[name]
    assert len(catalog) == sum(case.good for name, case in cases.items() if name != misnamed)
    assert main(argv) == 1  # a rerun changes nothing and still lists them
    assert dict(Catalog(db).errors()) == errors


# --- label files through the commands -----------------------------------------------------------------------------

GOOD_ROW = "Images/coat_length_labels/a.jpg,coat_length_labels,nynnnnnn\n"
LABEL_CASES = ["columns", "attribute", "length", "two-y", "no-y", "illegal", "duplicate", "escapes", "absolute", "nul",
               "huge-field", "bom-crlf", "empty"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD_ROW + "Images/b.jpg,coat_length_labels\n", 2, "expected 3 columns"),
        (GOOD_ROW + "Images/b.jpg,hat_labels,ny\n", 2, "unknown attribute"),
        (GOOD_ROW + "Images/b.jpg,coat_length_labels,nyn\n", 2, "has 3 characters"),
        (GOOD_ROW + "Images/b.jpg,coat_length_labels,yynnnnnn\n", 2, "2 'y' marks"),
        (GOOD_ROW + "Images/b.jpg,coat_length_labels,nnnnnnnn\n", 2, "no 'y'"),
        (GOOD_ROW + "Images/b.jpg,coat_length_labels,nyxnnnnn\n", 2, "only 'y', 'n' and 'm'"),
        (GOOD_ROW + GOOD_ROW, 2, "duplicate row"),
        (GOOD_ROW + "../../etc/passwd,coat_length_labels,nynnnnnn\n", 2, "leaves the dataset root"),
        (GOOD_ROW + "/etc/passwd,coat_length_labels,nynnnnnn\n", 2, "is absolute"),
        (GOOD_ROW + "Images/b\0.jpg,coat_length_labels,nynnnnnn\n", 2, "control characters"),
        (GOOD_ROW + "Images/" + "x" * 200_000 + ".jpg,coat_length_labels,nynnnnnn\n", 2, "field larger"),
        ("\ufeff" + GOOD_ROW.replace("\n", "\r\n") + "Images/b.jpg,coat_length_labels,nyn\r\n", 2, "has 3 characters"),
        ("", 0, "no label rows"),
    ],
    ids=LABEL_CASES,
)
def test_bad_label_files_are_refused_by_check_and_train_naming_file_and_line(tmp_path, capsys, text, line, words):
    root = tmp_path / "data"
    (root / "Annotations").mkdir(parents=True)
    labels = root / LABELS_RELPATH
    labels.write_text(text, encoding="utf-8", newline="")
    where = f"{labels}:{line}:" if line else f"{labels}:"
    for argv in (["check", str(root)], ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert where in err and words in err, err
        assert not (tmp_path / "run" / "last.pt").exists()


def test_a_stray_quote_or_huge_field_costs_only_its_own_row(tmp_path):
    from fashionattr.data.labels import LabelFileError, read_labels
    from fashionattr.schema import FASHIONAI

    path = tmp_path / "label.csv"
    huge = "Images/" + "x" * 200_000 + ".jpg,coat_length_labels,nynnnnnn\n"
    path.write_text(GOOD_ROW + '"Images/q.jpg,coat_length_labels,nynnnnnn\n' + huge + "Images/c.jpg,pant,n\n")
    with pytest.raises(LabelFileError) as info:
        read_labels(path, FASHIONAI)
    assert [line for line, _ in info.value.problems] == [2, 3, 4]  # every row reported, true line numbers


# --- training on a dataset with 5% corrupt images -----------------------------------------------------------------

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
