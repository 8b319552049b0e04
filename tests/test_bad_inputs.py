"""Bad inputs against every reader: the decoder, `check`, `train`, `predict` and `catalog index`.

The corpus (tests/corpus.py) is generated here, never committed. Each case either decodes to upright RGB (CMYK,
grayscale, alpha, 16-bit, EXIF rotation, a PNG/GIF/WebP/BMP named .jpg, 1x1) or is refused with a message that
names the file and says what is wrong; no command shows a traceback. The service's side is in tests/test_serve.py.
Training on a dataset with 5% corrupt files: it goes on within --max-bad-fraction and refuses above it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import fashionattr.training.run as training
from conftest import TrainedRun
from corpus import (
    ANSWER_LABELS,
    ANSWER_NUMBER_CASES,
    ANSWER_PRECISION_CASES,
    ANSWER_ROW,
    ATOMIC_WRITE_STEPS,
    CONFIG_CASES,
    DISK_FULL_COMMANDS,
    DISK_FULL_ERRNOS,
    MAYBE_CASES,
    NAME_CASES,
    NON_UTF8_NAME,
    OVERWRITE_CASES,
    PARSE_CASES,
    SCHEMA_CASES,
    SCHEMA_EDITS,
    SLEEVE_ANSWER,
    SLEEVE_ROW,
    SPELLING_CASES,
    A,
    B,
    Case,
    MaybeCase,
    NameCase,
    OverwriteCase,
    SchemaEdit,
    TextCase,
    row,
    special_file,
    special_files,
    write_image_corpus,
)
from fashionattr.catalog import Catalog
from fashionattr.cli import main
from fashionattr.config import read_config_file
from fashionattr.data.cache import CACHE_DIRNAME
from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.images import ImageError, open_image, probe_image
from fashionattr.data.labels import LABELS_RELPATH, QUESTIONS_RELPATH, LabelFileError, read_labels
from fashionattr.data.split import read_split
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI
from fashionattr.synthetic.generate import generate_dataset
from test_serve import Server, build_catalog, start_server

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
    # One batch holds every training image: with several, the last partial batch is dropped, and a file whose
    # header looks fine (only a decode finds it bad) could go unread in a one-epoch run.
    code = main(["train", str(root), "--out", str(out), "--attributes", "coat_length", "--cache", "off",
                 "--max-bad-fraction", "0.5", *QUICK_TRAIN, "--batch-size", "512"])  # fmt: skip
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
    argv = ["catalog", "index", str(trained_run.run), str(folder), "--catalog", str(db), "--workers", "0",
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


# === Second round: whole classes of hostile input =================================================================
#
# Each class has one mechanism every command goes through, and a table of cases here (tables in tests/corpus.py):
# special files (io.open_regular_file), one file spelled several ways (labels.normalise_image_path and
# dataset.check_image_paths), strict parsers (parsing.py, labels.read_lines, image modes), AP ties (metrics) and
# the service's limits (tests further down). Every case is accepted correctly or refused with a one-line message
# naming the file (and line), exit 2 (1 where other files are still answered); none may hang or show a traceback.


def tiny_root(folder: Path, synthetic_data: Path, labels: str = A) -> Path:
    """A dataset root holding Images/coat_length_labels/a.jpg and b.jpg (real photos) and the given label.csv."""
    images = folder / "Images" / "coat_length_labels"
    images.mkdir(parents=True)
    sources = sorted((synthetic_data / "Images" / "coat_length_labels").glob("*.jpg"))[:2]
    for source, name in zip(sources, ("a.jpg", "b.jpg"), strict=True):
        shutil.copyfile(source, images / name)
    (folder / "Annotations").mkdir()
    (folder / LABELS_RELPATH).write_text(labels, encoding="utf-8", newline="")
    return folder


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str, code: int = 2) -> str:
    """Run the command in-process; it must exit with `code`, one-line messages containing `words`, no traceback."""
    assert main(argv) == code, argv
    err = capsys.readouterr().err
    assert_no_traceback(err)
    for word in words:
        assert word in err, (argv, word, err)
    return err


# --- class 1: special files are refused before they are opened ----------------------------------------------------


@pytest.fixture(scope="module")
def special(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    folder = tmp_path_factory.mktemp("special") / "photos"
    return folder, special_files(folder)


@pytest.mark.timeout(60)
def test_special_files_are_refused_by_the_decoder_and_the_header_probe(special):
    folder, cases = special
    for name, case in cases.items():
        for read in (open_image, probe_image):
            with pytest.raises(ImageError) as info:
                read(folder / name)
            assert case.reason in info.value.reason and str(folder / name) in str(info.value), (name, read)


@pytest.mark.timeout(60)
def test_the_safe_reader_bounds_what_it_reads(tmp_path):
    from fashionattr.io import FileReadError, read_regular_file

    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * 2048)
    assert read_regular_file(big, 2048) == b"x" * 2048
    with pytest.raises(FileReadError, match="over the"):
        read_regular_file(big, 1024)
    special_file(tmp_path / "zero.csv", "zero")
    with pytest.raises(FileReadError, match="character device"):
        read_regular_file(tmp_path / "zero.csv", 1024)


@pytest.fixture(scope="module")
def special_dataset(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    """The shared synthetic dataset plus the special files that lie inside it, labelled as coat_length class 1.

    The links to devices and /proc lead out of the root, so a label file naming them is refused as a whole
    (`test_links_may_not_leave_the_root_or_name_one_file_twice`); `predict` meets them one by one.
    """
    root = tmp_path_factory.mktemp("special-data") / "data"
    shutil.copytree(synthetic_data, root, symlinks=True)
    every = special_files(root / "Images/coat_length_labels/special")
    cases = {name: every[name] for name in ("fifo.jpg", "socket.jpg", "folder.jpg", "dangling.jpg")}
    with (root / LABELS_RELPATH).open("a", encoding="utf-8") as labels:
        labels.write("".join(row(f"Images/coat_length_labels/special/{name}") for name in cases))
    return root, cases


@pytest.mark.timeout(180)
def test_check_and_train_report_every_special_file(special_dataset, tmp_path, capsys):
    root, cases = special_dataset
    assert main(["check", str(root), "--workers", "1"]) == 2
    out = capsys.readouterr().out
    for name, case in cases.items():
        line = next(line for line in out.splitlines() if f"special/{name}:" in line)
        assert case.reason in line, (name, line)
    out_dir = tmp_path / "run"
    code = main(["train", str(root), "--out", str(out_dir), "--attributes", "coat_length", "--cache", "off",
                 "--max-bad-fraction", "0.5", *QUICK_TRAIN])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    skipped = dict(line.split("\t", 1) for line in RunDir(out_dir).skipped.read_text().splitlines())
    assert set(skipped) == {f"Images/coat_length_labels/special/{name}" for name in cases}
    assert all(case.reason in skipped[f"Images/coat_length_labels/special/{name}"] for name, case in cases.items())


@pytest.mark.timeout(180)
def test_predict_and_submit_answer_the_rest_and_name_each_special_file(trained_run: TrainedRun, special, tmp_path,
                                                                       capsys):  # fmt: skip
    folder, cases = special
    code = main(["predict", str(trained_run.run), str(folder), str(folder / "fifo.jpg"), "--format", "json",
                 "--workers", "0"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert_no_traceback(err)
    entries = json.loads(out)
    listed = [Path(entry["source"]).name for entry in entries]
    assert sorted(listed) == sorted([*(n for n in cases if n != "folder.jpg"), "fifo.jpg"])  # a folder is searched
    for entry in entries:
        assert cases[Path(entry["source"]).name].reason in entry["error"], entry
    # submit: a question whose image is a FIFO is answered uniformly and named; the good one is predicted
    root = tmp_path / "data"
    (root / "Tests").mkdir(parents=True)
    shutil.copytree(trained_run.data / "Images" / "coat_length_labels", root / "Images" / "coat_length_labels")
    good = sorted((root / "Images" / "coat_length_labels").glob("*.jpg"))[0].name
    special_file(root / "Images" / "coat_length_labels" / "fifo.jpg", "fifo")
    questions = root / "Tests" / "question.csv"
    questions.write_text(row(f"Images/coat_length_labels/{good}", label="?") + row("Images/coat_length_labels/fifo.jpg",
                                                                                  label="?"))  # fmt: skip
    answers = tmp_path / "answers.csv"
    err = refused(["submit", str(trained_run.run), str(questions), "--out", str(answers), "--workers", "0"], capsys,
                  "fifo.jpg: is a named pipe (FIFO)", code=1)  # fmt: skip
    lines = answers.read_text().splitlines()
    assert len(lines) == 2 and lines[1].endswith(";".join(["0.125"] * 8)), (lines, err)


SPECIAL_TEXT_FILES = [
    ("label-fifo", "data/Annotations/label.csv", "fifo", ["check", "{data}"], "named pipe"),
    ("label-dev-zero", "data/Annotations/label.csv", "zero", ["check", "{data}"], "character device"),
    ("label-dev-urandom", "data/Annotations/label.csv", "urandom", ["split", "{data}"], "character device"),
    ("label-fifo-train", "data/Annotations/label.csv", "fifo", ["train", "{data}", "--out", "{tmp}/run"], "named pipe"),
    ("questions-fifo", "data/Tests/question.csv", "fifo", ["check", "{data}"], "named pipe"),
    ("schema-json-fifo", "data/schema.json", "fifo", ["check", "{data}"], "named pipe"),
    ("schema-yaml-dev-zero", "data/schema.yaml", "zero", ["check", "{data}"], "character device"),
    ("config-fifo", "config.yaml", "fifo", ["train", "{data}", "--config", "{tmp}/config.yaml"], "named pipe"),
    ("config-dev-urandom", "config.json", "urandom", ["train", "{data}", "--config", "{tmp}/config.json"],
     "character device"),
    ("split-fifo", "split.csv", "fifo", ["train", "{data}", "--split-file", "{tmp}/split.csv", "--out", "{tmp}/run"],
     "named pipe"),
    ("answers-fifo", "answers.csv", "fifo", ["evaluate", "--answers", "{tmp}/answers.csv", "--labels",
                                             "{data}/Annotations/label.csv"], "named pipe"),
    ("labels-dev-zero", "labels.csv", "zero", ["evaluate", "--answers", "{tmp}/good-answers.csv", "--labels",
                                              "{tmp}/labels.csv"], "character device"),
]  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("relative", "kind", "argv", "words"), [case[1:] for case in SPECIAL_TEXT_FILES],
                         ids=[case[0] for case in SPECIAL_TEXT_FILES])  # fmt: skip
def test_special_label_schema_config_split_and_answer_files_are_refused(synthetic_data, tmp_path, capsys, relative,
                                                                        kind, argv, words):  # fmt: skip
    data = tiny_root(tmp_path / "data", synthetic_data)
    (tmp_path / "good-answers.csv").write_text(A.replace("nynnnnnn", "0;1;0;0;0;0;0;0"))
    special_file(tmp_path / relative, kind)
    command = [part.format(data=data, tmp=tmp_path) for part in argv]
    refused(command, capsys, f"{tmp_path / relative}: ", words)


def test_a_fifo_label_file_in_a_subprocess_ends_with_exit_2(synthetic_data, tmp_path):
    data = tiny_root(tmp_path / "data", synthetic_data)
    special_file(data / LABELS_RELPATH, "fifo")
    result = subprocess.run([sys.executable, "-m", "fashionattr", "check", str(data)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2 and "is a named pipe (FIFO), not a regular file" in result.stderr
    assert_no_traceback(result.stderr)


# --- class 3: one file, several spellings ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", SPELLING_CASES, ids=[case.id for case in SPELLING_CASES])
def test_one_file_spelled_several_ways_is_one_image(synthetic_data, tmp_path, capsys, case: TextCase):
    root = tiny_root(tmp_path / "data", synthetic_data, case.text)
    split = tmp_path / "split.csv"
    commands = [["check", str(root)], ["split", str(root), "--out", str(split)]]
    if case.words is None:
        for argv in commands:
            assert main(argv) == 0, capsys.readouterr().err
        rows = read_split(split)
        assert all(path.startswith("Images/coat_length_labels/") and "//" not in path and "./" not in path
                   for path, _ in rows)  # fmt: skip
        assert len(rows) == len({(r.path, r.attribute) for r in read_labels(root / LABELS_RELPATH, FASHIONAI)}) == 2
        return
    for argv in [*commands, ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]]:
        refused(argv, capsys, f"{root / LABELS_RELPATH}:{case.line}: ", case.words)
    assert not split.exists()


def _link_out(root: Path, outside: Path) -> str:
    os.symlink(outside / "real.jpg", root / "Images/coat_length_labels/b.jpg.link")
    return A + row("Images/coat_length_labels/b.jpg.link")


def _folder_out(root: Path, outside: Path) -> str:
    os.symlink(outside, root / "Images/coat_length_labels/elsewhere")
    return A + row("Images/coat_length_labels/elsewhere/real.jpg")


def _etc_passwd(root: Path, outside: Path) -> str:
    os.symlink("/etc/passwd", root / "Images/coat_length_labels/passwd.jpg")
    return A + row("Images/coat_length_labels/passwd.jpg")


def _dangling_out(root: Path, outside: Path) -> str:
    os.symlink(outside / "missing.jpg", root / "Images/coat_length_labels/gone.jpg")
    return A + row("Images/coat_length_labels/gone.jpg")


def _chain_out(root: Path, outside: Path) -> str:
    os.symlink(outside / "real.jpg", root / "Images/coat_length_labels/c.jpg")
    os.symlink("c.jpg", root / "Images/coat_length_labels/d.jpg")
    return A + row("Images/coat_length_labels/d.jpg")


def _relative_out(root: Path, outside: Path) -> str:
    os.symlink(os.path.relpath(outside / "real.jpg", root / "Images/coat_length_labels"),
               root / "Images/coat_length_labels/rel.jpg")  # fmt: skip
    return A + row("Images/coat_length_labels/rel.jpg")


def _link_twice(root: Path, outside: Path) -> str:
    os.symlink("a.jpg", root / "Images/coat_length_labels/alias.jpg")
    return A + row("Images/coat_length_labels/alias.jpg")


def _hard_link_twice(root: Path, outside: Path) -> str:
    os.link(root / "Images/coat_length_labels/a.jpg", root / "Images/coat_length_labels/hard.jpg")
    return A + row("Images/coat_length_labels/hard.jpg")


def _folder_link_twice(root: Path, outside: Path) -> str:
    os.symlink(".", root / "Images/coat_length_labels/same")
    return A + row("Images/coat_length_labels/same/a.jpg")


def _link_inside_alone(root: Path, outside: Path) -> str:
    (root / "Images/coat_length_labels/b.jpg").unlink()
    os.symlink("a.jpg", root / "Images/coat_length_labels/b.jpg")
    return B


def _link_other_attribute(root: Path, outside: Path) -> str:
    os.symlink("a.jpg", root / "Images/coat_length_labels/alias.jpg")
    return A + row("Images/coat_length_labels/alias.jpg", "sleeve_length_labels", "nynnnnnnn")


def _link_in_subfolder(root: Path, outside: Path) -> str:
    (root / "Images/coat_length_labels/sub").mkdir()
    os.symlink("../b.jpg", root / "Images/coat_length_labels/sub/b.jpg")
    return A + row("Images/coat_length_labels/sub/b.jpg")


def _dev_zero(root: Path, outside: Path) -> str:
    os.symlink("/dev/zero", root / "Images/coat_length_labels/zero.jpg")
    return A + row("Images/coat_length_labels/zero.jpg")


LINK_CASES = [
    (_link_out, "leads out of the dataset root"),
    (_dev_zero, "leads out of the dataset root through a symbolic link (to /dev/zero)"),
    (_folder_out, "leads out of the dataset root"),
    (_etc_passwd, "leads out of the dataset root"),
    (_dangling_out, "leads out of the dataset root"),
    (_chain_out, "leads out of the dataset root"),
    (_relative_out, "leads out of the dataset root"),
    (_link_twice, "is the same file as 'Images/coat_length_labels/a.jpg' (line 1)"),
    (_hard_link_twice, "is the same file as"),
    (_folder_link_twice, "is the same file as"),
    (_link_inside_alone, None),
    (_link_other_attribute, None),
    (_link_in_subfolder, None),
]


@pytest.mark.parametrize(("make", "words"), LINK_CASES, ids=[make.__name__.strip("_") for make, _ in LINK_CASES])
def test_links_may_not_leave_the_root_or_name_one_file_twice(synthetic_data, tmp_path, capsys, make, words):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(sorted((synthetic_data / "Images/coat_length_labels").glob("*.jpg"))[-1], outside / "real.jpg")
    root = tiny_root(tmp_path / "data", synthetic_data)
    (root / LABELS_RELPATH).write_text(make(root, outside), encoding="utf-8")
    commands = [["check", str(root)], ["split", str(root), "--out", str(tmp_path / "split.csv")]]
    if words is None:
        for argv in commands:
            assert main(argv) == 0, capsys.readouterr().err
        return
    for argv in [*commands, ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]]:
        refused(argv, capsys, f"{root / LABELS_RELPATH}:2: ", words)


def test_a_dataset_whose_root_or_images_folder_is_a_link_is_accepted(synthetic_data, tmp_path, capsys):
    """Images kept on another disk (Images/ a link to it), or the whole dataset reached through a link: accepted,
    each resolved once; a folder inside that leads elsewhere stays refused, in one line for all its rows."""
    disk = tmp_path / "other-disk"
    shutil.copytree(synthetic_data / "Images", disk / "Images")
    root = tmp_path / "data"
    (root / "Annotations").mkdir(parents=True)
    shutil.copyfile(synthetic_data / LABELS_RELPATH, root / LABELS_RELPATH)
    (root / "Images").symlink_to(disk / "Images")
    (tmp_path / "alias").symlink_to(root)
    for dataset in (root, tmp_path / "alias"):
        split = ["split", str(dataset), "--out", str(tmp_path / "s.csv"), "--force"]
        for argv in (["check", str(dataset), "--workers", "1"], split):
            assert main(argv) == 0, capsys.readouterr().err

    rows = (root / LABELS_RELPATH).read_text().splitlines()
    coat = [line for line in rows if line.startswith("Images/coat_length_labels/")]
    shutil.move(disk / "Images" / "coat_length_labels", tmp_path / "elsewhere")
    (disk / "Images" / "coat_length_labels").symlink_to(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["check", str(root), "--no-images"]) == 2
    err = capsys.readouterr().err
    assert "folder Images/coat_length_labels/ leads out of the dataset root" in err
    assert f"{len(coat)} image path(s) lie in it" in err and "malformed" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_question_linking_out_of_the_root_is_refused_by_check_and_submit(trained_run, synthetic_data, tmp_path,
                                                                          capsys):  # fmt: skip
    root = tiny_root(tmp_path / "data", synthetic_data)
    os.symlink("/etc/hostname", root / "Images/coat_length_labels/host.jpg")
    (root / "Tests").mkdir()
    questions = root / QUESTIONS_RELPATH
    questions.write_text(row("Images/coat_length_labels/a.jpg", label="?") + row("Images/coat_length_labels/host.jpg",
                                                                                label="?"))  # fmt: skip
    refused(["check", str(root)], capsys, f"{questions}:2: ", "leads out of the dataset root")
    refused(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "answers.csv")], capsys,
            f"{questions}:2: ", "leads out of the dataset root")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()


def test_a_split_file_naming_one_image_twice_is_refused(synthetic_data, tmp_path, capsys):
    root = tiny_root(tmp_path / "data", synthetic_data, A + B)
    split = tmp_path / "split.csv"
    split.write_text("Images/coat_length_labels/a.jpg,coat_length_labels,train\n"
                     "Images/coat_length_labels/b.jpg,coat_length_labels,train\n"
                     "./Images/coat_length_labels/a.jpg,coat_length_labels,val\n")  # fmt: skip
    refused(["train", str(root), "--split-file", str(split), "--out", str(tmp_path / "run"), *QUICK_TRAIN], capsys,
            f"{split}:3: ", "already assigned on line 1")  # fmt: skip
    split.write_text("./Images/coat_length_labels/a.jpg,coat_length_labels,train\n"
                     "Images//coat_length_labels/b.jpg,coat_length_labels,val\n")  # fmt: skip
    expected = {(f"Images/coat_length_labels/{name}", "coat_length_labels") for name in ("a.jpg", "b.jpg")}
    assert set(read_split(split)) == expected


# --- class 5: parsers refuse what they should --------------------------------------------------------------------


@pytest.mark.parametrize("case", PARSE_CASES, ids=[case.id for case in PARSE_CASES])
def test_label_files_keep_true_line_numbers_and_name_their_separator(synthetic_data, tmp_path, capsys, case):
    root = tiny_root(tmp_path / "data", synthetic_data, case.text)
    for argv in (["check", str(root)], ["split", str(root), "--out", str(tmp_path / "split.csv")],
                 ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]):  # fmt: skip
        refused(argv, capsys, f"{root / LABELS_RELPATH}:{case.line}: ", case.words or "")
    with pytest.raises(LabelFileError) as info:
        read_labels(root / LABELS_RELPATH, FASHIONAI)
    assert case.line in [line for line, _ in info.value.problems]


@pytest.mark.parametrize("case", ANSWER_NUMBER_CASES, ids=[case.id for case in ANSWER_NUMBER_CASES])
def test_answer_files_hold_plain_decimal_numbers(tmp_path, capsys, case):
    labels, answers = tmp_path / "labels.csv", tmp_path / "answers.csv"
    labels.write_text(ANSWER_LABELS)
    answers.write_text(case.text, encoding="utf-8")
    argv = ["evaluate", "--answers", str(answers), "--labels", str(labels)]
    if case.words is None:
        assert main(argv) == 0, capsys.readouterr().err
        assert "| coat_length | 1 |" in capsys.readouterr().out
        return
    refused(argv, capsys, f"{answers}:{case.line}: ", case.words)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", SCHEMA_CASES, ids=[case.id for case in SCHEMA_CASES])
def test_schema_files_are_read_strictly(synthetic_data, tmp_path, capsys, case):
    root = tiny_root(tmp_path / "data", synthetic_data)
    schema = root / ("schema.json" if case.id.startswith("json") else "schema.yaml")
    schema.write_bytes(case.text.encode("utf-8", "surrogateescape"))
    if case.words is None:
        assert main(["check", str(root)]) == 0, capsys.readouterr().err
        classes = DatasetRoot.open(root).schema.attribute("coat_length_labels").classes
        assert classes == ("No", "Yes", "On", "Off", "Y", "N", "~x", "1:20")
        return
    where = f"{schema}:{case.line}: " if case.line else f"{schema}: "
    for argv in (["check", str(root)], ["split", str(root), "--out", str(tmp_path / "split.csv")],
                 ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]):  # fmt: skip
        refused(argv, capsys, where, case.words)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


QUESTION_IDS = ("dot-slash", "only-dots", "u2028-error-line-after-it", "tab-separated")
QUESTION_CASES = [case for case in (*SPELLING_CASES, *PARSE_CASES) if case.id in QUESTION_IDS]


@pytest.mark.parametrize("case", QUESTION_CASES, ids=[case.id for case in QUESTION_CASES])
def test_question_files_are_read_like_label_files_by_check_and_submit(trained_run, synthetic_data, tmp_path, capsys,
                                                                      case):  # fmt: skip
    root = tiny_root(tmp_path / "data", synthetic_data)
    questions = root / QUESTIONS_RELPATH
    questions.parent.mkdir()
    questions.write_text(case.text.replace(",nynnnnnn", ",?").replace(",nyn\n", ",?,?\n"), encoding="utf-8")
    words = "expected 3 columns" if case.id.startswith("u2028") else case.words
    refused(["check", str(root), "--no-images"], capsys, f"{questions}:{case.line}: ", words or "")
    refused(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "answers.csv")], capsys,
            f"{questions}:{case.line}: ", words or "")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[case.id for case in CONFIG_CASES])
def test_config_files_are_read_strictly(synthetic_data, tmp_path, capsys, case):
    config = tmp_path / ("config.json" if case.id.startswith("json") else "config.yaml")
    config.write_text(case.text)
    if case.words is None:
        assert read_config_file(config) == {"lr": 0.001, "min_lr": 2.5e-7}
        return
    root = tiny_root(tmp_path / "data", synthetic_data)
    where = f"{config}:{case.line}: " if case.line else f"{config}: "
    refused(["train", str(root), "--config", str(config), "--out", str(tmp_path / "run")], capsys, where, case.words)


def test_image_modes_keep_their_colours_and_brightness(corpus):
    folder, _ = corpus
    red = np.asarray(open_image(folder / "cielab-red.tif"))
    assert red[0, 0, 0] > 240 and red[0, 0, 1] < 20 and red[0, 0, 2] < 30  # red, not PIL's old false colours
    for name in ("cielab-grey.tif", "cielab-planar-grey.tif"):  # a dim grey, interleaved or in planes: not blue
        grey = np.asarray(open_image(folder / name)).astype(int)
        assert abs(grey[0, 0] - 94).max() <= 2, (name, grey[0, 0])
    ramp = np.asarray(open_image(folder / "float-0-1.tif"))[0, :, 0]
    assert ramp[0] == 0 and ramp[-1] == 255 and (np.diff(ramp.astype(int)) >= 0).all()  # 0..1 floats, not black
    dark = np.asarray(open_image(folder / "gray16-dark.png"))
    assert dark.max() <= 1  # 200 of 65535 is nearly black, not brightened to white
    assert np.asarray(open_image(folder / "int32-16-bit-range.tif"))[0, -1, 0] == 255


# --- class 2 (names): names from data never become paths outside the chosen folder ------------------------------

COAT_CLASSES = ["Invisible", "High Waist", "Regular", "Long", "Micro", "Knee", "Midi", "Ankle&Floor"]


@pytest.mark.parametrize("case", NAME_CASES, ids=[case.id for case in NAME_CASES])
def test_attribute_names_that_cannot_be_file_names_are_refused_by_the_schema(synthetic_data, tmp_path, capsys,
                                                                             case: NameCase):  # fmt: skip
    root = tiny_root(tmp_path / "data", synthetic_data)
    names = [name.format(tmp=tmp_path) for name in case.names]
    attributes = [{"name": "coat_length_labels", "classes": COAT_CLASSES},
                  *({"name": name, "classes": ["P", "Q"]} for name in names)]  # fmt: skip
    schema = root / "schema.json"
    schema.write_text(json.dumps({"name": "mine", "attributes": attributes}), encoding="utf-8")
    out = tmp_path / "out"
    if case.words is None:
        assert main(["check", str(root), "--no-images"]) == 0, capsys.readouterr().err
        loaded = DatasetRoot.open(root).schema
        folders = [RunDir(out).attribute_run(attribute.short_name).path for attribute in loaded]
        assert [folder.parent for folder in folders] == [out] * (len(names) + 1)
        assert len({folder.name.casefold() for folder in folders}) == len(folders)
        return
    for argv in (["check", str(root), "--no-images"],
                 ["train", str(root), "--layout", "per-attribute", "--out", str(out), *QUICK_TRAIN],
                 ["grid", str(root), "--archs", "test_resnet", "--out", str(out), *QUICK_TRAIN[2:]]):  # fmt: skip
        refused(argv, capsys, f"{schema}: ", case.words)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # nothing written, inside or out


def test_every_path_built_from_a_name_is_checked_even_past_the_schema(tmp_path):
    """Defence in depth: a schema built around the checks still cannot steer a write out of the folder."""
    from fashionattr.grid import plan_cells
    from fashionattr.names import UnsafeNameError
    from fashionattr.report import write_run_report
    from fashionattr.run_dir import confusion_plot_name
    from fashionattr.schema import Attribute, Schema

    escape = Attribute(f"{tmp_path}/ESCAPED_labels", ("P", "Q"))
    for build in (lambda: RunDir(tmp_path / "run").attribute_run(escape.short_name),
                  lambda: confusion_plot_name("../../ESCAPED"),
                  lambda: plan_cells(tmp_path / "grid", ["test_resnet"], ["per-attribute"], [escape]),
                  lambda: plan_cells(tmp_path / "grid", ["../x"], ["multitask"], [escape])):  # fmt: skip
        with pytest.raises(UnsafeNameError, match="cannot name a file or folder"):
            build()
    unchecked = object.__new__(Schema)  # bypasses the schema's own checks
    object.__setattr__(unchecked, "name", "x")
    object.__setattr__(unchecked, "attributes", (escape,))
    object.__setattr__(unchecked, "groupings", {})
    scores = {"attributes": {escape.name: {"count": 1, "accuracy": 1.0, "average_precision": 1.0,
                                           "confusion": [[1, 0], [0, 0]]}},
              "count": 1, "basic_precision": 1.0, "mean_average_precision": 1.0}  # fmt: skip
    summary = {"arch": "a", "layout": "multitask", "best_epoch": 1, "epochs_run": 1}
    with pytest.raises(UnsafeNameError):
        write_run_report(RunDir(tmp_path / "run"), unchecked, [{"epoch": 1, "train_loss": 1.0}], summary, scores)
    assert not (tmp_path / "ESCAPED_labels").exists() and not Path(f"{tmp_path}/ESCAPED").exists()
    assert not list((tmp_path / "run").rglob("confusion_*"))


@pytest.mark.parametrize("arch", ["/abs/net", "..", "a\\b", ".hidden", "-rf", "net\u2215x"])
def test_grid_refuses_architecture_names_that_cannot_name_a_cell_folder(synthetic_data, tmp_path, capsys, arch):
    root = tiny_root(tmp_path / "data", synthetic_data)
    grid = ["grid", str(root), f"--archs={arch}", "--out", str(tmp_path / "grid")]
    refused(grid, capsys, "cannot name a cell folder")
    assert not (tmp_path / "grid").exists()


# --- class 7: two writers, a full disk ---------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from fashionattr.run_dir import lock_folder
with lock_folder(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(300)
"""


@contextlib.contextmanager
def held_by_another_process(folder: Path) -> Iterator[subprocess.Popen]:
    """Another process holding `folder`'s lock, as a training run writing into it does."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


TRY_LOCK = """
import sys
from fashionattr.run_dir import FolderBusyError, lock_folder
try:
    with lock_folder(sys.argv[1], "run folder"):
        print("free")
except FolderBusyError as exc:
    print(exc)
"""


def try_lock_from_another_process(folder: Path) -> str:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True, text=True,
                          timeout=60).stdout.strip()  # fmt: skip


@pytest.mark.timeout(240)
def test_a_second_train_into_a_busy_run_folder_is_refused_and_a_killed_one_leaves_it_free(
    synthetic_data, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    train = ["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN]
    with held_by_another_process(out) as first:
        for extra in ([], ["--resume"], ["--seed", "2"]):
            refused([*train, *extra], capsys, f"{out}: another fashionattr process is writing this run folder "
                    f"(pid {first.pid}, started ", "choose another output folder")  # fmt: skip
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the second writer
        first.send_signal(signal.SIGKILL)  # a run killed while it held the folder
        first.wait(timeout=30)
    seen_while_training: list[str] = []
    real_epoch = training.train_one_epoch

    def train_one_epoch(*args, **kwargs):
        seen_while_training.append(try_lock_from_another_process(out))
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", train_one_epoch)
    assert main(train) == 0, capsys.readouterr().err  # the kernel released the dead holder's lock
    assert len(seen_while_training) == 1
    assert seen_while_training[0].startswith(f"{out}: another fashionattr process is writing this run folder (pid "
                                             f"{os.getpid()}, started ")  # fmt: skip
    assert try_lock_from_another_process(out) == "free"  # and the finished run let it go


def test_per_attribute_runs_grid_cells_and_evaluations_take_their_folder_in_turn(synthetic_data, trained_run,
                                                                                tmp_path, capsys):  # fmt: skip
    out = tmp_path / "per-attribute"
    with held_by_another_process(out / "coat_length") as holder:
        refused(["train", str(synthetic_data), "--layout", "per-attribute", "--attributes", "coat_length,sleeve_length",
                 "--out", str(out), *QUICK_TRAIN], capsys, f"{out / 'coat_length'}: another fashionattr process "
                f"is writing this run folder (pid {holder.pid}")  # fmt: skip
    assert not (out / "sleeve_length").exists()  # refused before anything was trained
    grid = tmp_path / "grid"
    cell = grid / "per-attribute" / "test_resnet" / "coat_length"
    with held_by_another_process(cell):
        assert main(["grid", str(synthetic_data), "--archs", "test_resnet", "--attributes", "coat_length", "--out",
                     str(grid), *QUICK_TRAIN[2:]]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert_no_traceback(captured.err)
    assert f"per-attribute/test_resnet/coat_length: passed over: {cell}: another fashionattr process" in captured.out
    assert "1 cell(s) passed over, being trained by another process" in captured.out
    assert not (grid / "failures.json").exists() and not RunDir(cell).last.exists()
    evaluation = tmp_path / "eval"
    codes: list[int] = []
    with held_by_another_process(evaluation) as holder:
        command = threading.Thread(target=lambda: codes.append(main(["evaluate", str(trained_run.run), "--out",
                                                                      str(evaluation), "--workers", "0"])))  # fmt: skip
        command.start()
        command.join(timeout=1.0)
        assert command.is_alive() and not (evaluation / "scores.json").exists()  # it waits for the other writer
        holder.kill()
        command.join(timeout=180)
    assert codes == [0]
    assert_no_traceback(capsys.readouterr().err)
    assert (evaluation / "scores.json").is_file() and (evaluation / "report.md").is_file()


@pytest.mark.parametrize("code", DISK_FULL_ERRNOS)
@pytest.mark.parametrize("step", ATOMIC_WRITE_STEPS)
def test_a_full_disk_at_any_step_of_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch, step, code):
    import fashionattr.io as io_module
    from fashionattr.errors import DiskFullError

    folder = tmp_path / ("new-folder" if step == "mkdir" else "folder")
    target = folder / "scores.json"
    if step != "mkdir":
        folder.mkdir()
        target.write_text("OLD\n")
    full = OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    def fail(*args, **kwargs):
        raise full

    patches = {"mkdir": (Path, "mkdir"), "mkstemp": (io_module.tempfile, "mkstemp"), "fsync": (os, "fsync"),
               "replace": (os, "replace")}  # fmt: skip
    if step in patches:
        monkeypatch.setattr(*patches[step], fail)
    with pytest.raises(DiskFullError) as info, io_module.atomic_open(target) as handle:
        handle.write("NEW\n")
        if step == "write":
            fail()
    monkeypatch.undo()
    assert str(info.value).startswith(f"disk full while writing {target} ({DISK_FULL_ERRNOS[code]}); its old content")
    assert info.value.path == str(target)
    if step == "mkdir":
        assert not folder.exists()
    else:
        assert sorted(p.name for p in folder.iterdir()) == ["scores.json"] and target.read_text() == "OLD\n"


def fsync_fails_for(monkeypatch: pytest.MonkeyPatch, name: str, after: int = 0) -> list[str]:
    """Make the flush of temporary files for `name` fail with ENOSPC, after `after` of them succeeded."""
    real = os.fsync
    written: list[str] = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if Path(path).name.startswith(f".{name}."):
            written.append(path)
            if len(written) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return written


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("argv", "target"), [case[1:] for case in DISK_FULL_COMMANDS],
                         ids=[case[0] for case in DISK_FULL_COMMANDS])  # fmt: skip
def test_a_full_disk_is_one_line_and_exit_1_and_the_old_file_stays(trained_run, tmp_path, monkeypatch, capsys,
                                                                   argv, target):  # fmt: skip
    path = tmp_path / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("OLD\n")
    fsync_fails_for(monkeypatch, path.name)
    command = [part.format(data=trained_run.data, run=trained_run.run, tmp=tmp_path) for part in argv]
    refused(command, capsys, f"disk full while writing {path} (No space left on device)", code=1)
    assert path.read_text() == "OLD\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.timeout(240)
def test_a_disk_filling_up_during_training_keeps_the_last_good_checkpoint_and_resumes(synthetic_data, tmp_path,
                                                                                      monkeypatch, capsys):  # fmt: skip
    from fashionattr.checkpoint import load_checkpoint

    out = tmp_path / "run"
    train = ["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN,
             "--epochs", "2", "--max-steps-per-epoch", "1"]  # fmt: skip
    written = fsync_fails_for(monkeypatch, "last.pt", after=1)  # epoch 1's last.pt is written, epoch 2's is not
    refused(train, capsys, f"{out}: disk full while writing {out / 'last.pt'}; the last good checkpoint is "
            f"{out / 'last.pt'} (epoch 1); free some space, then continue with --resume", code=1)  # fmt: skip
    assert len(written) == 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 0  # epoch 1, whole
    assert not list(out.glob(".*.tmp")) and not RunDir(out).is_finished
    monkeypatch.undo()
    assert main([*train, "--resume"]) == 0, capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and RunDir(out).is_finished


def test_a_full_disk_under_tensorboard_names_its_folder_and_the_checkpoint_just_saved(synthetic_data, tmp_path,
                                                                                      monkeypatch, capsys):  # fmt: skip
    out = tmp_path / "run"

    def log_epoch(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(training, "log_epoch", log_epoch)
    refused(["train", str(synthetic_data), "--out", str(out), "--attributes", "coat_length", *QUICK_TRAIN,
             "--max-steps-per-epoch", "1"], capsys, f"{out}: disk full while writing {out / 'tensorboard'}; the last "
            f"good checkpoint is {out / 'last.pt'} (epoch 1)", code=1)  # fmt: skip


REAL_FULL_DISK = """
set -e
mount -t tmpfs -o size=64k tmpfs "$1/bytes"
mount -t tmpfs -o size=1m,nr_inodes=3 tmpfs "$1/inodes"
printf 'OLD\\n' > "$1/bytes/split.csv"
dd if=/dev/zero of="$1/bytes/filler" bs=1k count=1000 2>/dev/null || true
touch "$1/inodes/a" "$1/inodes/b" 2>/dev/null || true
set +e
for where in bytes inodes; do
    "$2" -m fashionattr split "$3" --out "$1/$where/split.csv" --force 2>"$1/$where.err"
    echo "$where $?"
    ls -A "$1/$where" | tr '\\n' ' ' > "$1/$where.files"
    cat "$1/$where/split.csv" > "$1/$where.kept" 2>/dev/null
done
"""


@pytest.mark.timeout(120)
def test_a_really_full_file_system_gives_the_same_one_line(synthetic_data, tmp_path):
    """On real tmpfs mounts (in a user namespace, so no privileges are needed): no bytes left, then no inodes left."""
    for name in ("bytes", "inodes"):
        (tmp_path / name).mkdir()
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", REAL_FULL_DISK, "sh", str(tmp_path),
               sys.executable, str(synthetic_data)]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=100)
    except FileNotFoundError:
        pytest.skip("no unshare command here")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {result.stderr.strip()[:200]}")
    assert result.stdout.split() == ["bytes", "1", "inodes", "1"], result.stdout + result.stderr
    for name, reason in (("bytes", "No space left on device"), ("inodes", "No space left on device")):
        err = (tmp_path / f"{name}.err").read_text()
        assert_no_traceback(err)
        assert err.startswith(f"fashionattr split: error: disk full while writing {tmp_path}/{name}/split.csv "
                              f"({reason}); its old content, if any, is kept"), err  # fmt: skip
        assert ".tmp" not in (tmp_path / f"{name}.files").read_text()  # the temporary file was removed
    assert (tmp_path / "bytes.kept").read_text() == "OLD\n"


def test_a_full_disk_while_building_the_image_cache_is_refused_before_any_pixel_is_written(synthetic_data,
                                                                                           tmp_path, monkeypatch,
                                                                                           capsys):  # fmt: skip
    root = tiny_root(tmp_path / "data", synthetic_data, A + B)

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    refused(
        ["prepare", str(root), "--arch", "test_resnet", "--size", "32", "--workers", "1"],
        capsys,
        f"disk full while building the image cache {root / CACHE_DIRNAME}/",
        "train with --cache off",
        code=1,
    )
    assert not [p for p in (root / CACHE_DIRNAME).rglob("*") if p.is_file()]


# --- answer files keep every digit (issue 10) ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "vector"), ANSWER_PRECISION_CASES, ids=[name for name, _ in ANSWER_PRECISION_CASES])
def test_an_answer_file_gives_back_every_probability_bit_for_bit(tmp_path, name, vector):
    from fashionattr.submission import read_submission, write_submission

    given = np.array(vector, dtype=np.float64)
    path = tmp_path / "answers.csv"
    write_submission(path, [("Images/coat_length_labels/a.jpg", "coat_length_labels")], [given], FASHIONAI)
    [(_, _, read)] = read_submission(path, FASHIONAI)
    assert read.dtype == np.float64 and (read == given).all()
    assert (read.view(np.int64) == (given + 0.0).view(np.int64)).all()  # bit for bit; -0.0 is written as 0.0
    written = path.read_text().strip().split(",")[2].split(";")
    assert not any(number.startswith("-") for number in written) and len(written) == 8


def test_ap_from_the_written_answer_file_is_ap_from_the_model(tmp_path):
    """Confident answers that six decimals printed alike: AP from the file used to drop, now it is the model's."""
    from fashionattr.metrics import AttributePredictions, maybe_mask, score
    from fashionattr.submission import score_submission, write_submission

    rng = np.random.default_rng(4)
    count = 400
    targets = rng.integers(0, 8, count)
    confidence = rng.random(count)
    right = rng.random(count) < 0.5 + 0.5 * confidence
    predicted = np.where(right, targets, (targets + 1) % 8)
    logits = rng.normal(0, 0.3, (count, 8))
    logits[np.arange(count), predicted] += np.where(confidence > 0.2, 16 + 20 * confidence, 5 * confidence)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = [(f"Images/coat_length_labels/{n:03d}.jpg", "coat_length_labels") for n in range(count)]
    labels = "".join(row(path, label="".join("y" if c == t else "n" for c in range(8)))
                     for (path, _), t in zip(rows, targets, strict=True))  # fmt: skip
    (tmp_path / "labels.csv").write_text(labels)
    write_submission(tmp_path / "answers.csv", rows, list(probabilities), FASHIONAI)

    def ap_of(vectors: np.ndarray) -> float:
        predictions = AttributePredictions(vectors, targets, maybe_mask([[]] * count, 8))
        return score(FASHIONAI, {"coat_length_labels": predictions}).attributes["coat_length_labels"].average_precision

    from_file = score_submission(tmp_path / "answers.csv", tmp_path / "labels.csv", FASHIONAI)
    assert from_file.attributes["coat_length_labels"].average_precision == ap_of(probabilities)
    assert np.mean(np.round(probabilities, 6).max(axis=1) == 1.0) > 0.7  # most of them print as 1.000000 ...
    assert ap_of(np.round(probabilities, 6)) < ap_of(probabilities) - 0.01  # ... which used to cost AP


# --- an attribute whose every answer lands on an `m` class (issue 10) -------------------------------------------


@pytest.mark.parametrize("case", MAYBE_CASES, ids=[case.id for case in MAYBE_CASES])
def test_an_attribute_no_answer_counts_for_is_shown_as_n_a_and_named(tmp_path, capsys, case: MaybeCase):
    names = [f"{n}.jpg" for n in range(len(case.labels))]
    labels = A + "".join(SLEEVE_ROW.format(name=n, label=label) for n, label in zip(names, case.labels, strict=True))
    answers = ANSWER_ROW.format("0;1;0;0;0;0;0;0") + "".join(
        SLEEVE_ANSWER.format(name=n, probabilities=p) for n, p in zip(names, case.answers, strict=True)
    )
    (tmp_path / "labels.csv").write_text(labels)
    (tmp_path / "answers.csv").write_text(answers)
    assert main(["evaluate", "--answers", str(tmp_path / "answers.csv"), "--labels", str(tmp_path / "labels.csv")]) == 0
    out = capsys.readouterr().out
    assert f"| sleeve_length | {len(names)} | " in out and out.split("| sleeve_length |")[1].split("\n")[0].endswith(
        f"| {case.sleeve_ap} |"
    )
    assert out.split("| **BP / mAP** |")[1].split("\n")[0].endswith(f"| {case.map_cell} |")
    note = "AP n/a for sleeve_length: every answer landed on a class labelled 'm'"
    assert (note in out) == (case.sleeve_ap == "n/a"), out


def test_the_run_report_scores_json_and_the_grid_name_an_undefined_ap(tmp_path):
    from fashionattr.grid import GridSpec, collect_results, plan_cells, results_markdown, write_spec
    from fashionattr.metrics import AttributePredictions, score
    from fashionattr.render.tables import scores_table
    from fashionattr.training.saver import TrainState

    schema = FASHIONAI.subset(["coat_length_labels", "sleeve_length_labels"])
    on_m = np.zeros((2, 9), dtype=bool)
    on_m[:, 2] = True
    scores = score(schema, {
        "coat_length_labels": AttributePredictions(np.eye(8)[[1, 2]], np.array([1, 2]), np.zeros((2, 8), bool)),
        "sleeve_length_labels": AttributePredictions(np.eye(9)[[2, 2]], np.array([1, 1]), on_m),
    })  # fmt: skip
    saved = json.loads(json.dumps(scores.to_dict()))  # as scores.json holds it
    assert saved["mean_average_precision"] == 1.0 and saved["map_leaves_out"] == ["sleeve_length_labels"]
    assert saved["attributes"]["sleeve_length_labels"]["average_precision"] is None
    assert "no answer counted" in saved["attributes"]["sleeve_length_labels"]["average_precision_note"]
    assert saved["notes"] == scores.notes and "mean over the other 1 attribute(s)" in scores.notes[0]
    table = scores_table(schema, saved)
    assert "| sleeve_length | 2 | 0.0 | n/a |" in table and "Note: AP n/a for sleeve_length" in table

    grid = tmp_path / "grid"
    write_spec(grid, GridSpec("data", ["a", "b"], ["per-attribute"], schema, "fashionattr grid"))
    for cell in plan_cells(grid, ["a", "b"], ["per-attribute"], list(schema)):
        run = RunDir(cell.directory)
        run.path.mkdir(parents=True)
        run.summary.write_text("{}")
        entry = dict(saved["attributes"][cell.attributes[0]])
        if cell.arch == "b" and entry["average_precision"] is None:
            entry["average_precision"] = 0.5
        run.scores.write_text(json.dumps({"attributes": {cell.attributes[0]: entry}}))
    results = collect_results(grid)
    assert results.rows("–")[1] == ["sleeve_length", "0.0", "0.0"]
    assert results.rows("–")[-1] == ["mAP", "100.0", "75.0"]  # a: coat alone; b: the mean of 1.0 and 0.5
    assert "AP n/a for sleeve_length (a)" in results_markdown(results)

    state = TrainState()
    assert state.record({"epoch": 1}, float("nan")) and state.record({"epoch": 2}, float("nan"))
    assert state.record({"epoch": 3}, 0.2) and not state.record({"epoch": 4}, float("nan"))


# --- class 6: a model and data of different schemas -------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("edit", SCHEMA_EDITS, ids=[edit.id for edit in SCHEMA_EDITS])
def test_submit_and_evaluate_refuse_data_whose_schema_gives_the_model_s_attributes_other_classes(
    trained_run, synthetic_data, tmp_path, capsys, edit: SchemaEdit
):
    root = tiny_root(tmp_path / "data", synthetic_data)
    schema = FASHIONAI.to_dict()
    entries = schema["attributes"]
    index = next(n for n, entry in enumerate(entries) if entry["name"] == edit.attribute)
    if edit.classes is None:
        del entries[index]
        schema["groupings"], schema["categories"] = {}, {}
    else:
        entries[index]["classes"] = list(edit.classes)
    (root / "schema.json").write_text(json.dumps(schema))
    (root / "Tests").mkdir()
    (root / QUESTIONS_RELPATH).write_text(row("Images/coat_length_labels/a.jpg", label="?"))
    answers = tmp_path / "answers.csv"
    submit = ["submit", str(trained_run.run), str(root / QUESTIONS_RELPATH), "--out", str(answers), "--workers", "0"]
    evaluate = ["evaluate", str(trained_run.run), "--data", str(root), "--labels", str(root / LABELS_RELPATH),
                "--out", str(tmp_path / "eval"), "--workers", "0"]  # fmt: skip
    for argv, words in ((submit, edit.submit), (evaluate, edit.evaluate)):
        if words is None:
            assert main(argv) == 0, capsys.readouterr().err
        else:
            refused(argv, capsys, "trained on another schema", words)
    assert answers.exists() == (edit.submit is None)
    assert (tmp_path / "eval").exists() == (edit.evaluate is None)


@pytest.fixture(scope="module")
def mixed_schema_folder(trained_per_attribute_run, tmp_path_factory) -> Path:
    """A per-attribute folder whose sleeve-length model was trained on a schema that gives coat length 8 other names.

    Its weights fit; only the schema it was trained on differs, so its answers would be named by the wrong schema.
    """
    from fashionattr.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("mixed") / "runs"
    shutil.copytree(trained_per_attribute_run.run, folder)
    best = RunDir(folder / "sleeve_length").best
    payload = load_checkpoint(best)
    for entry in payload["schema"]["attributes"]:
        if entry["name"] == "coat_length_labels":
            entry["classes"] = list("ABCDEFGH")
    save_checkpoint(best, payload)
    return folder


MIXED_COMMANDS = [
    ("predict", ["predict", "{runs}", "{images}", "--workers", "0"]),
    ("predict-attributes", ["predict", "{runs}", "{images}", "--attributes", "sleeve_length", "--workers", "0"]),
    ("submit", ["submit", "{runs}", "{data}/Tests/question.csv", "--out", "{tmp}/answers.csv", "--workers", "0"]),
    ("serve", ["serve", "{runs}", "--port", "0"]),
    ("catalog-index", ["catalog", "index", "{runs}", "{images}", "--catalog", "{tmp}/catalog.sqlite",
                       "--workers", "0", "--device", "cpu"]),
]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [argv for _, argv in MIXED_COMMANDS], ids=[name for name, _ in MIXED_COMMANDS])
def test_models_of_two_schemas_are_never_used_as_one(mixed_schema_folder, trained_run, tmp_path, capsys, argv):
    command = [part.format(runs=mixed_schema_folder, data=trained_run.data, tmp=tmp_path,
                           images=trained_run.data / "Images" / "sleeve_length_labels") for part in argv]  # fmt: skip
    refused(command, capsys, f"{mixed_schema_folder / 'sleeve_length' / 'best.pt'}: trained on another schema than "
            f"the other models under {mixed_schema_folder}: attribute 'coat_length_labels' has 8 classes (A, B, C, D, "
            "...) in the model but 8 (Invisible, High Waist Length")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()


# --- class 9: AP does not depend on the order of rows ------------------------------------------------------------


def tied_answers(count: int = 30, seed: int = 3) -> tuple[list[str], list[str]]:
    """Label and answer rows for coat length where most answers tie at a top probability of 1 or 0.5."""
    rng = random.Random(seed)
    labels, answers = [], []
    for index in range(count):
        path = f"Images/coat_length_labels/{index:03d}.jpg"
        target, predicted = rng.randrange(8), rng.randrange(8)
        top = rng.choice([1.0, 1.0, 0.5])
        probabilities = [0.0] * 8
        probabilities[predicted] = top
        probabilities[(predicted + 1) % 8] += 1.0 - top
        labels.append(row(path, label="".join("y" if c == target else "n" for c in range(8))))
        answers.append(row(path, label=";".join(f"{p:g}" for p in probabilities)))
    return labels, answers


@pytest.mark.parametrize("order", ["reversed-labels", "shuffled-labels", "reversed-answers"])
def test_evaluate_scores_the_same_answers_the_same_whatever_the_row_order(tmp_path, capsys, order):
    labels, answers = tied_answers()
    (tmp_path / "labels.csv").write_text("".join(labels))
    (tmp_path / "answers.csv").write_text("".join(answers))
    argv = ["evaluate", "--answers", str(tmp_path / "answers.csv"), "--labels", str(tmp_path / "labels.csv")]
    assert main(argv) == 0
    reference = capsys.readouterr().out
    reordered = {"reversed-labels": (labels[::-1], answers), "shuffled-labels": (random.Random(1).sample(labels, 30),
                 answers), "reversed-answers": (labels, answers[::-1])}[order]  # fmt: skip
    (tmp_path / "labels.csv").write_text("".join(reordered[0]))
    (tmp_path / "answers.csv").write_text("".join(reordered[1]))
    assert main(argv) == 0
    assert capsys.readouterr().out == reference


# --- class 8: slow and greedy HTTP clients -----------------------------------------------------------------------
# Against real `fashionattr serve` processes: one with one-second deadlines (and a catalogue), and one allowed only
# 256 open files, as a default `ulimit -n 1024` server is allowed a few more.

HEADER_TIMEOUT_S = 1
WAIT_CAP_S = 20.0
"""How long a test waits for the server to act: far beyond its one-second deadlines, so only a hang fails."""


@pytest.fixture(scope="module")
def guarded_server(trained_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("guarded")
    db = build_catalog(trained_run, workdir / "photos", workdir / "catalog.sqlite")
    with start_server(trained_run.run, workdir / "server.log", "--catalog", str(db), "--header-timeout",
                      str(HEADER_TIMEOUT_S), "--body-timeout", str(HEADER_TIMEOUT_S)) as server:  # fmt: skip
        yield server


def healthy(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=WAIT_CAP_S).status_code == 200


def until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    connection.settimeout(WAIT_CAP_S)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


SLOW_CLIENTS = [
    ("partial-headers", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"], b"HTTP/1.1 408"),
    ("partial-request-line", [b"GET /heal"], b"HTTP/1.1 408"),
    ("connects-and-says-nothing", [], b""),
    ("stalled-json-body", [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n{\"images\": ["], b"HTTP/1.1 408"),
    ("stalled-multipart-body", [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                b"boundary=b\r\nContent-Length: 5000\r\n\r\n--b\r\nContent-Disposition: form-data; "
                                b'name="files"; filename="a.jpg"\r\n\r\n\xff\xd8'], b"HTTP/1.1 408"),
    ("partial-second-request-after-keep-alive", [b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /healthz HTT"],
     b"HTTP/1.1 408"),
]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("parts", "ends_with"), [case[1:] for case in SLOW_CLIENTS],
                         ids=[case[0] for case in SLOW_CLIENTS])  # fmt: skip
def test_a_slow_client_is_cut_off_while_healthz_answers(guarded_server, parts, ends_with):
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=WAIT_CAP_S) as connection:
        for part in parts:
            connection.sendall(part)
            time.sleep(0.05)
        assert healthy(guarded_server)  # while the slow client holds its connection
        received = until_closed(connection)
    if ends_with:
        last = received[received.rfind(b"HTTP/1.1 ") :]
        assert last.startswith(ends_with), received
        assert b'{"error": "the request' in last  # the service's JSON error
    else:
        assert received == b""
    assert healthy(guarded_server)
    assert_no_traceback(guarded_server.log.read_text())  # a dropped request is no server error


@pytest.mark.timeout(120)
def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_deadline(guarded_server):
    """A slowloris keeps every pause short; the deadline counts from the first byte, so it still ends."""
    request = b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-Slow-%d: %d\r\n" % (n, n) for n in range(500))
    deadline = time.monotonic() + WAIT_CAP_S
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=WAIT_CAP_S) as connection:
        connection.setblocking(False)
        answer = b""
        for byte in request:
            assert time.monotonic() < deadline, "the server kept a trickling client for 20 s"
            try:
                connection.send(bytes([byte]))
                answer += connection.recv(4096)
                break  # the server spoke: it answered 408 and closed
            except BlockingIOError:
                time.sleep(0.1)
            except OSError:  # reset: it closed
                break
        assert not answer or answer.startswith(b"HTTP/1.1 408")
    assert healthy(guarded_server)


def deep_json(depth: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return b'{"images": ' + opening * depth + closing * depth + b"}"


HTTP_CASES = [
    ("json-nested-100000", "POST", "/v1/predict", deep_json(100_000), 422, "nests 100001 levels deep"),
    ("json-objects-nested-50000", "POST", "/v1/predict", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, 422,
     "nests 50000 levels deep"),
    ("json-nested-just-over", "POST", "/v1/predict", deep_json(8), 422, "more than the 8 allowed"),
    ("json-brackets-in-strings-are-text", "POST", "/v1/predict", b'{"images": [{"name": "' + b"[" * 5000 + b'", '
     b'"data": "@@"}]}', 200, ""),
    ("offset-10-to-the-30", "GET", "/v1/catalog/search?offset=" + "1" + "0" * 30, None, 422, "offset"),
    ("offset-2-to-the-63", "GET", f"/v1/catalog/search?offset={2**63}", None, 422, "offset"),
    ("offset-negative", "GET", "/v1/catalog/search?offset=-1", None, 422, "offset"),
    ("offset-at-the-bound", "GET", "/v1/catalog/search?offset=1000000000", None, 200, ""),
    ("limit-10-to-the-30", "GET", "/v1/catalog/search?limit=" + "1" + "0" * 30, None, 422, "limit"),
    ("similar-k-huge", "GET", "/v1/catalog/similar/1?k=" + "9" * 40, None, 422, "k"),
    ("item-id-huge", "GET", "/v1/catalog/items/" + "9" * 40, None, 404, "numeric id"),
    ("confidence-nan", "GET", "/v1/catalog/facets?min_confidence=nan", None, 422, "min_confidence"),
    ("confidence-inf", "GET", "/v1/catalog/search?min_confidence=inf", None, 422, "min_confidence"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [case[1:] for case in HTTP_CASES],
                         ids=[case[0] for case in HTTP_CASES])  # fmt: skip
def test_greedy_requests_get_json_4xx_answers(guarded_server, method, path, body, status, words):
    headers = {"content-type": "application/json"} if body is not None else {}
    response = httpx.request(method, guarded_server.url + path, content=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text[:500]
    if status != 200:
        assert words in response.json()["error"]
    assert healthy(guarded_server)


def test_head_healthz_answers_like_get(guarded_server):
    response = httpx.head(f"{guarded_server.url}/healthz", timeout=WAIT_CAP_S)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(("option", "value"), [("--header-timeout", "0"), ("--header-timeout", "nan"),
                                               ("--body-timeout", "-1"), ("--max-connections", "0")])  # fmt: skip
def test_bad_limit_options_are_user_errors(trained_run, capsys, option, value):
    refused(["serve", str(trained_run.run), option, value], capsys, option)


def start_server_with_few_files(checkpoint: Path, log: Path, open_files: int) -> contextlib.AbstractContextManager:
    """`start_server`, but the server process may hold only `open_files` descriptors (soft and hard limit)."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files}, {open_files}))"
    launcher = (f"{limit}; import runpy, sys; sys.argv = ['fashionattr', *sys.argv[1:]]; "
                "runpy.run_module('fashionattr', run_name='__main__')")  # fmt: skip
    return start_server(checkpoint, log, launcher=[sys.executable, "-c", launcher])


@pytest.mark.timeout(180)
def test_many_idle_connections_do_not_starve_healthz(trained_run: TrainedRun, tmp_path):
    """400 silent sockets against a server allowed 256 files: before the cap, /healthz waited for ever."""
    with start_server_with_few_files(trained_run.run, tmp_path / "server.log", 256) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_CAP_S) for _ in range(400)]
        try:
            assert healthy(server)  # within 20 s: the default header deadline (10 s) has not closed them for it
            closed = 0
            for connection in idle:
                connection.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    closed += connection.recv(1) == b""
            assert 400 - closed <= 256  # the longest idle ones were closed to make room
            assert "connections, as the process may open only so many files" in server.log.read_text()
        finally:
            for connection in idle:
                connection.close()


# --- outputs never replace inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", OVERWRITE_CASES, ids=[case.id for case in OVERWRITE_CASES])
def test_no_command_writes_over_one_of_its_inputs(trained_run, tmp_path, capsys, case: OverwriteCase):
    data = tmp_path / "data"
    shutil.copytree(trained_run.data, data)
    photo = tmp_path / "photo.jpg"
    shutil.copyfile(next((data / "Images" / "coat_length_labels").glob("*.jpg")), photo)
    run = tmp_path / "run"
    shutil.copytree(trained_run.run, run)
    alias = tmp_path / "alias.jpg"
    if case.prepare == "hard link":
        os.link(photo, alias)
    elif case.prepare == "symbolic link":
        alias.symlink_to(photo)
    elif case.prepare == "split":
        assert main(["split", str(data)]) == 0
    elif case.prepare == "sheet":
        shutil.copyfile(photo, tmp_path / "contact_sheet.png")
    elif case.prepare == "png in the dataset":
        shutil.copyfile(photo, data / "Images" / "extra.png")
    fields = {"data": data, "run": run, "photo": photo, "tmp": tmp_path}
    victim = Path(case.victim.format(**fields))
    before = victim.read_bytes()
    capsys.readouterr()
    assert main([part.format(**fields) for part in case.argv]) == 2
    err = capsys.readouterr().err
    assert case.words in err and "writing there would replace it" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert victim.read_bytes() == before


# --- every JSON written is strict JSON -------------------------------------------------------------------------------


def strict_loads(text: str) -> object:
    """Parse as RFC 8259 JSON: `NaN`, `Infinity` and `-Infinity` (which Python's json writes by default) are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_a_note(tmp_path):
    from fashionattr.io import write_json

    write_json(tmp_path / "x.json", {"precision": float("nan"), "rows": [1.0, float("inf")], "count": 3})
    assert strict_loads((tmp_path / "x.json").read_text()) == {
        "precision": None, "precision_note": "not a number (NaN)", "rows": [1.0, None], "count": 3}  # fmt: skip


def test_review_json_is_strict_when_no_known_error_was_reviewed(tmp_path):
    """review.json held NaN (not JSON) when none of the known errors fell among the reviewed rows."""
    from fashionattr.io import write_json
    from fashionattr.review.issues import ReviewScore

    score = ReviewScore(reviewed=40, known=0, flagged=0, found=0, top_known=0, right_suggestion=0)
    write_json(tmp_path / "review.json", {"known_errors": score.to_dict()})
    entry = strict_loads((tmp_path / "review.json").read_text())["known_errors"]  # type: ignore[index]
    assert entry["precision"] is None and "no row was flagged" in entry["precision_note"]
    assert entry["recall"] is None and "no known error" in entry["recall_note"]


def test_json_is_written_through_the_one_strict_writer():
    """Outside `fashionattr.io`, no module serialises JSON itself (the catalogue's stored metadata and the service's
    error bodies, owned by their packages, hold no numbers that can be NaN)."""
    source = Path(__file__).resolve().parent.parent / "src" / "fashionattr"
    owned_elsewhere = {"catalog", "serve"}
    offenders = [str(path.relative_to(source)) for path in source.rglob("*.py")
                 if path.name != "io.py" and path.relative_to(source).parts[0] not in owned_elsewhere
                 and ("json.dump(" in path.read_text() or "json.dumps(" in path.read_text())]  # fmt: skip
    assert not offenders, f"write JSON through fashionattr.io.json_text / write_json: {offenders}"
