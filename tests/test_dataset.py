"""A dataset root as `check` (and `split`, `train` and `submit`) reads it, with hostile images and image paths.

`check` lists every unusable image of the corpus (tests/corpus.py) and every special file (FIFO, socket, folder,
dangling link) by name and reason, and `train` skips them; no traceback, also in a process of its own. Image paths
in the label and question files: one file spelled several ways (`./`, `//`, `x/..`) is one image, so a second
spelling is a duplicate row; a link that leads out of the root (to /etc/passwd, a device, another disk) or names
a listed file a second time is refused by its line; a root or Images/ folder that is itself a link is accepted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from corpus import SPELLING_CASES, A, B, Case, TextCase, row, special_files
from fashionattr.cli import main
from fashionattr.data.labels import LABELS_RELPATH, QUESTIONS_RELPATH, read_labels
from fashionattr.data.split import read_split
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI
from helpers import CORPUS_DIR, QUICK_TRAIN, assert_no_traceback, bad_cases, cli_command, refused, tiny_root

# --- unusable images --------------------------------------------------------------------------------------------


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
    result = subprocess.run(cli_command("check", root, "--workers", "1"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert_no_traceback(result.stderr)
    assert all(name in result.stdout for name in bad_cases(cases))


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


# --- one file, several spellings --------------------------------------------------------------------------------


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
        refused(argv, f"{root / LABELS_RELPATH}:{case.line}: ", case.words)
    assert not split.exists()


# --- links ------------------------------------------------------------------------------------------------------


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
        refused(argv, f"{root / LABELS_RELPATH}:2: ", words)


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


def test_a_question_linking_out_of_the_root_is_refused_by_check_and_submit(trained_run, synthetic_data, tmp_path):
    root = tiny_root(tmp_path / "data", synthetic_data)
    os.symlink("/etc/hostname", root / "Images/coat_length_labels/host.jpg")
    (root / "Tests").mkdir()
    questions = root / QUESTIONS_RELPATH
    questions.write_text(row("Images/coat_length_labels/a.jpg", label="?") + row("Images/coat_length_labels/host.jpg",
                                                                                label="?"))  # fmt: skip
    refused(["check", str(root)], f"{questions}:2: ", "leads out of the dataset root")
    refused(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "answers.csv")],
            f"{questions}:2: ", "leads out of the dataset root")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()
