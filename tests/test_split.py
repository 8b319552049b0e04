"""The stratified 4:1 split: 80/20 inside every (attribute, class), reproducible by seed, shared via a file."""

from collections import Counter

import pytest

from fashionattr.cli import main
from fashionattr.data.labels import LabelRecord
from fashionattr.data.split import SplitError, apply_split, make_split, read_split, write_split


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
