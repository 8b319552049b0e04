"""Complete labels: what each synthetic drawing shows of every attribute, and the file that carries it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionattr.data.complete_labels import (
    COMPLETE_RELPATH,
    NOT_SHOWN,
    TEST_CATEGORIES_RELPATH,
    TEST_COMPLETE_RELPATH,
    read_categories,
    read_complete,
)
from fashionattr.data.labels import read_labels
from fashionattr.errors import UserError
from fashionattr.schema import FASHIONAI
from fashionattr.synthetic.generate import generate_dataset
from fashionattr.synthetic.scenes import render_scene
from fashionattr.synthetic.truth import INVISIBLE, UNDECIDED, class_at

LENGTHS = ("skirt_length_labels", "pant_length_labels", "coat_length_labels")
ABSENT_ON_FIGURES = ("collar_design_labels", "neck_design_labels")


def drawings(attribute: str, class_name: str, count: int = 24) -> list:
    attr = FASHIONAI.attribute(attribute)
    target = attr.class_index(class_name)
    index = FASHIONAI.names.index(attribute)
    return [render_scene(attr, target, np.random.default_rng([5, index, target, k]), 128) for k in range(count)]


def test_a_skirt_photo_has_no_trouser_length_and_its_own_skirt_length() -> None:
    coats = 0
    for drawn in drawings("skirt_length_labels", "Knee Length", count=40):
        assert drawn.truth["skirt_length_labels"] in ("Knee Length", UNDECIDED)
        assert drawn.truth["pant_length_labels"] == INVISIBLE
        coats += drawn.truth["coat_length_labels"] != INVISIBLE  # a coat worn over it, ending above its hem
        assert all(drawn.truth[name] == INVISIBLE for name in ABSENT_ON_FIGURES)
        assert drawn.truth["neckline_design_labels"] == UNDECIDED  # drawn, too small on a whole figure
        assert drawn.category in ("skirt", "dress")
    assert 0 < coats < 20


def test_a_close_up_shows_no_hem() -> None:
    for attribute, name in (("neckline_design_labels", "V Neckline"), ("collar_design_labels", "Peter Pan")):
        for drawn in drawings(attribute, name):
            assert all(drawn.truth[length] == INVISIBLE for length in LENGTHS)
            assert drawn.truth[attribute] in (name, UNDECIDED)


def test_design_parts_not_worn_are_invisible_and_a_covered_neckline_undecided() -> None:
    for drawn in drawings("collar_design_labels", "Shirt Collar"):
        assert drawn.truth["lapel_design_labels"] == INVISIBLE
        assert drawn.truth["neck_design_labels"] == INVISIBLE
        assert drawn.truth["neckline_design_labels"] == UNDECIDED  # under the collar
    for drawn in drawings("neckline_design_labels", "Round Neckline"):
        assert all(drawn.truth[name] == INVISIBLE for name in ABSENT_ON_FIGURES)


def test_strapless_close_ups_are_sleeveless() -> None:
    truths = {drawn.truth["sleeve_length_labels"] for drawn in drawings("neckline_design_labels", "Strapless Neck")}
    assert truths == {"Sleeveless"}


def test_an_occluded_part_is_invisible() -> None:
    for drawn in drawings("skirt_length_labels", INVISIBLE):
        assert drawn.truth["skirt_length_labels"] == INVISIBLE
        assert drawn.truth["pant_length_labels"] in (INVISIBLE, UNDECIDED)


def test_trousers_under_a_coat_show_their_length_only_below_its_hem() -> None:
    """A coat is drawn over what is under it: the trousers' length shows where their hem is below the coat's."""
    shown = set()
    for drawn in drawings("coat_length_labels", "Regular Length", count=40):
        shown.add(drawn.truth["pant_length_labels"])
    assert "Full Length" in shown  # the slim full-length trousers most coats are drawn over
    for drawn in drawings("coat_length_labels", "Ankle&Floor Length", count=40):
        assert drawn.truth["skirt_length_labels"] in (INVISIBLE, UNDECIDED)  # a floor-length coat covers any skirt


def test_a_hem_between_two_landmarks_is_undecided() -> None:
    table = {"a": 0.5, "b": 0.6, "c": 0.8}
    assert class_at(table, 0.51) == "a"
    assert class_at(table, 0.55) is None
    assert class_at(table, 0.81) == "c"


def test_the_dataset_carries_complete_labels_and_categories(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate_dataset(root, per_class=2, size=64, seed=1, workers=1, progress=False)
    truth = read_complete(root / COMPLETE_RELPATH, FASHIONAI)
    labels = read_labels(root / "Annotations" / "label.csv", FASHIONAI)
    assert set(truth) == {record.path for record in labels}
    for record in labels:
        assert set(truth[record.path]) == set(FASHIONAI.names)
        own = truth[record.path][record.attribute]
        classes = FASHIONAI.attribute(record.attribute).classes
        expected = NOT_SHOWN if classes[record.target] == INVISIBLE else record.target
        assert own == (None if record.maybe else expected)
    categories = read_categories(root / TEST_CATEGORIES_RELPATH, FASHIONAI.categories)
    assert set(categories) == set(read_complete(root / TEST_COMPLETE_RELPATH, FASHIONAI))


def test_a_bad_complete_label_file_names_each_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "complete.csv"
    path.write_text("path,attribute,value\n"
                    "a.jpg,skirt_length,Knee Length\n"
                    "a.jpg,skirt_length,Very Long\n"
                    "b.jpg,hat_size,Invisible\n"
                    "c.jpg,pant_length\n")  # fmt: skip
    with pytest.raises(UserError) as error:
        read_complete(path, FASHIONAI)
    message = str(error.value)
    assert f"{path}:3: 'Very Long' is not a class of skirt_length_labels" in message
    assert f"{path}:4:" in message and "hat_size" in message
    assert f"{path}:5: expected the columns path,attribute,value" in message
