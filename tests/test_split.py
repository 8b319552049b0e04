"""The stratified 4:1 split: 80/20 inside every (attribute, class), reproducible by seed, shared via a file.

Hostile split files: a malformed line is named, and one image named twice (also under another spelling such as
`./Images/...`) is refused by its line before anything is trained.
"""

from collections import Counter

import pytest

from corpus import A, B
from fashionattr.cli import main
from fashionattr.data.labels import LabelRecord
from fashionattr.data.split import SplitError, apply_split, make_split, read_split, write_split
from helpers import QUICK_TRAIN, refused, tiny_root


def records(per_class=(10, 7, 23, 1)):
    out = []
    for attribute in ("coat_length_labels", "neck_design_labels"):
        for target, count in enumerate(per_class):
            out += [LabelRecord(f"Images/{attribute}/{target}_{i}.jpg", attribute, target) for i in range(count)]
    return out


def test_stratified_80_20_within_one_image_per_stratum():
    assignment = make_split(records(), val_fraction=0.2, seed=3)
    for attribute in ("coat_length_labels", "neck_design_labels"):
        for target, count in enumerate((10, 7, 23, 1)):
            val = sum(1 for (p, a), s in assignment.items() if a == attribute and f"/{target}_" in p and s == "val")
            assert abs(val - 0.2 * count) <= 1
            assert val == round(0.2 * count)


def test_same_seed_same_split_whatever_the_row_order():
    forward = make_split(records(), seed=7)
    backward = make_split(list(reversed(records())), seed=7)
    assert forward == backward
    assert make_split(records(), seed=8) != forward


def test_split_file_round_trip_and_apply(tmp_path):
    recs = records()
    assignment = make_split(recs, seed=1)
    write_split(tmp_path / "split.csv", assignment)
    assert read_split(tmp_path / "split.csv") == assignment
    train, val = apply_split(recs, assignment)
    assert len(train) + len(val) == len(recs)
    assert not {(r.path, r.attribute) for r in train} & {(r.path, r.attribute) for r in val}
    with pytest.raises(SplitError, match="not in the split"):
        apply_split([*recs, LabelRecord("Images/new.jpg", "coat_length_labels", 0)], assignment)


def test_malformed_split_file_names_line(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("a.jpg,coat_length_labels,train\na.jpg,coat_length_labels,test\n")
    with pytest.raises(SplitError, match=r"split.csv:2:"):
        read_split(path)


def test_split_command_writes_the_default_file(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "Annotations").mkdir(parents=True)
    rows = "".join(f"Images/c/{i}.jpg,coat_length_labels,{'y' if i % 2 else 'n'}{'n' if i % 2 else 'y'}nnnnnn\n"
                   for i in range(20))  # fmt: skip
    (root / "Annotations" / "label.csv").write_text(rows)
    assert main(["split", str(root), "--seed", "4"]) == 0
    split = read_split(root / "Annotations" / "split.csv")
    assert Counter(split.values()) == {"train": 16, "val": 4}
    assert main(["split", str(root), "--val-fraction", "1.5"]) == 2
    assert "more than 0 and less than 1" in capsys.readouterr().err


def test_a_file_labelled_for_two_attributes_never_straddles_and_strata_stay_balanced():
    import random

    rng = random.Random(0)
    recs, per_stratum = [], Counter()
    for i in range(400):
        path = f"Images/both/{i}.jpg"
        recs.append(LabelRecord(path, "coat_length_labels", rng.randrange(4)))
        if i % 2 == 0:  # half the files are labelled for a second attribute too
            recs.append(LabelRecord(path, "neck_design_labels", rng.randrange(3)))
    for rec in recs:
        per_stratum[(rec.attribute, rec.target)] += 1
    for seed in range(5):
        assignment = make_split(recs, val_fraction=0.2, seed=seed)
        sides: dict[str, set[str]] = {}
        for (path, _), subset in assignment.items():
            sides.setdefault(path, set()).add(subset)
        assert all(len(s) == 1 for s in sides.values())
        in_val = Counter((r.attribute, r.target) for r in recs if assignment[(r.path, r.attribute)] == "val")
        for stratum, n in per_stratum.items():
            assert abs(in_val[stratum] - round(0.2 * n)) <= 2, (seed, stratum, in_val[stratum], n)


def test_byte_identical_copies_land_on_one_side(tmp_path):
    images = tmp_path / "Images" / "c"
    images.mkdir(parents=True)
    recs = []
    for i in range(60):
        (images / f"{i}.jpg").write_bytes(f"image {i % 20}".encode())  # 20 contents, three paths each
        recs.append(LabelRecord(f"Images/c/{i}.jpg", "coat_length_labels", i % 2))
    for seed in range(4):
        assignment = make_split(recs, seed=seed, root=tmp_path)
        for content in range(20):
            assert len({assignment[(f"Images/c/{i}.jpg", "coat_length_labels")] for i in (content, content + 20,
                        content + 40)}) == 1  # fmt: skip
        assert 6 <= Counter(assignment.values())["val"] <= 18
    unrooted = make_split(recs, seed=0)  # without the files, each path is its own image
    assert Counter(unrooted.values())["val"] == 12


def test_a_split_that_puts_one_image_on_both_sides_is_refused():
    recs = [LabelRecord("Images/a.jpg", "coat_length_labels", 0), LabelRecord("Images/a.jpg", "neck_design_labels", 0)]
    straddling = {("Images/a.jpg", "coat_length_labels"): "train", ("Images/a.jpg", "neck_design_labels"): "val"}
    with pytest.raises(SplitError, match=r"training for one attribute and in validation for another.*--force"):
        apply_split(recs, straddling)


def test_split_refuses_to_replace_a_different_split_without_force_and_names_its_runs(tmp_path, capsys):
    from fashionattr.data.split import record_split_user

    root = tmp_path / "data"
    (root / "Annotations").mkdir(parents=True)
    rows = "".join(f"Images/c/{i}.jpg,coat_length_labels,{'y' if i % 2 else 'n'}{'n' if i % 2 else 'y'}nnnnnn\n"
                   for i in range(20))  # fmt: skip
    (root / "Annotations" / "label.csv").write_text(rows)
    split_file = root / "Annotations" / "split.csv"
    assert main(["split", str(root), "--seed", "1"]) == 0
    first = split_file.read_text()
    assert main(["split", str(root), "--seed", "1"]) == 0  # the same split again is no change
    (tmp_path / "run").mkdir()
    record_split_user(split_file, tmp_path / "run")
    capsys.readouterr()
    assert main(["split", str(root), "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "already holds a different split" in err and str((tmp_path / "run").resolve()) in err and "--force" in err
    assert split_file.read_text() == first
    assert main(["split", str(root), "--seed", "2", "--force"]) == 0
    assert split_file.read_text() != first


def test_check_names_byte_identical_images(synthetic_data, tmp_path, capsys):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_data, root)
    labels = (root / "Annotations" / "label.csv").read_text().splitlines()
    path, attribute, label = labels[0].split(",")
    copy = path.rsplit("/", 1)[0] + "/copy-of-first.jpg"
    shutil.copyfile(root / path, root / copy)
    (root / "Annotations" / "label.csv").write_text("\n".join([*labels, f"{copy},{attribute},{label}"]) + "\n")
    assert main(["check", str(root), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 set(s) of byte-identical images" in out
    assert f"{copy} = {path}" in out or f"{path} = {copy}" in out


def test_a_split_file_naming_one_image_twice_is_refused(synthetic_data, tmp_path):
    root = tiny_root(tmp_path / "data", synthetic_data, A + B)
    split = tmp_path / "split.csv"
    split.write_text("Images/coat_length_labels/a.jpg,coat_length_labels,train\n"
                     "Images/coat_length_labels/b.jpg,coat_length_labels,train\n"
                     "./Images/coat_length_labels/a.jpg,coat_length_labels,val\n")  # fmt: skip
    refused(["train", str(root), "--split-file", str(split), "--out", str(tmp_path / "run"), *QUICK_TRAIN],
            f"{split}:3: ", "already assigned on line 1")  # fmt: skip
    split.write_text("./Images/coat_length_labels/a.jpg,coat_length_labels,train\n"
                     "Images//coat_length_labels/b.jpg,coat_length_labels,val\n")  # fmt: skip
    expected = {(f"Images/coat_length_labels/{name}", "coat_length_labels") for name in ("a.jpg", "b.jpg")}
    assert set(read_split(split)) == expected
