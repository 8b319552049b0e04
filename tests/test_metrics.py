"""Challenge scores on cases small enough to compute by hand, and an AP no answer counts for: n/a, named, and left
out of the mean in scores.json, the run report's table and the grid's results, never NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashionattr.metrics import (
    AttributePredictions,
    accuracy,
    average_precision,
    confusion_matrix,
    maybe_mask,
    precision_recall,
    score,
)
from fashionattr.render.tables import scores_table
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI, Attribute, Schema

TOY = Schema(
    name="toy",
    attributes=(
        Attribute("colour_labels", ("Invisible", "Red", "Blue")),
        Attribute("size_labels", ("Invisible", "Small", "Large", "Huge")),
    ),
)


def confident(predicted: list[int], confidence: list[float], num_classes: int = 3) -> np.ndarray:
    """Probabilities whose argmax is `predicted[i]` with top probability `confidence[i]`, the rest spread evenly."""
    probs = np.empty((len(predicted), num_classes))
    for row, (cls, top) in enumerate(zip(predicted, confidence, strict=True)):
        probs[row] = (1.0 - top) / (num_classes - 1)
        probs[row, cls] = top
    return probs


def no_maybe(count: int, num_classes: int = 3) -> np.ndarray:
    return np.zeros((count, num_classes), dtype=bool)


def test_perfect_predictions_score_one() -> None:
    targets = np.array([0, 1, 2, 1])
    probs = confident(list(targets), [0.9, 0.8, 0.7, 0.6])
    assert accuracy(probs, targets) == 1.0
    assert average_precision(probs, targets, no_maybe(4)) == 1.0


def test_average_precision_by_hand() -> None:
    # Sorted by confidence: 0.9 correct, 0.8 wrong, 0.7 correct, 0.6 wrong.
    # Running precision at each image: 1/1, 1/2, 2/3, 2/4 -> AP = (1 + 1/2 + 2/3 + 2/4) / 4 = 2/3.
    # Input order is shuffled so the sort is exercised.
    targets = np.array([1, 0, 2, 1])
    probs = confident([2, 0, 1, 1], [0.6, 0.9, 0.8, 0.7])  # wrong, correct, wrong, correct
    assert average_precision(probs, targets, no_maybe(4)) == pytest.approx((1 + 1 / 2 + 2 / 3 + 2 / 4) / 4)
    assert accuracy(probs, targets) == 0.5


def test_prediction_on_maybe_class_is_skipped_not_wrong() -> None:
    # Same images as above; the 0.8 image's argmax (class 1) is marked `m`, so it is skipped:
    # counted images 0.9 correct, 0.7 correct, 0.6 wrong -> AP = (1/1 + 2/2 + 2/3) / 3 = 8/9.
    targets = np.array([1, 0, 2, 1])
    probs = confident([2, 0, 1, 1], [0.6, 0.9, 0.8, 0.7])
    maybe = maybe_mask([(), (), (1,), ()], num_classes=3)
    skipped = average_precision(probs, targets, maybe)
    counted_wrong = average_precision(probs, targets, no_maybe(4))
    assert skipped == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert counted_wrong == pytest.approx(2 / 3)
    assert skipped > counted_wrong
    # An `m` elsewhere than the argmax changes nothing.
    assert average_precision(probs, targets, maybe_mask([(0,), (), (0,), ()], 3)) == pytest.approx(counted_wrong)


def test_tied_images_count_as_one_group_whatever_their_order() -> None:
    # Both images have confidence 0.8, one right and one wrong: each gets the precision after both, 1/2.
    targets = np.array([0, 1])
    wrong_first = confident([2, 1], [0.8, 0.8])
    correct_first = confident([1, 2], [0.8, 0.8])
    assert average_precision(wrong_first, targets, no_maybe(2)) == pytest.approx(0.5)
    assert average_precision(correct_first, np.array([1, 0]), no_maybe(2)) == pytest.approx(0.5)
    # 0.9 right; then a tie at 0.7 of right, wrong, skipped (`m`); then 0.5 wrong.
    # Precision 1/1 for the first, 2/3 for both counted images of the group (taken after it), 2/4 for the last.
    targets = np.array([1, 1, 0, 0, 1])
    probs = confident([1, 1, 2, 1, 2], [0.9, 0.7, 0.7, 0.7, 0.5])
    maybe = maybe_mask([(), (), (), (1,), ()], 3)
    expected = (1 + 2 / 3 + 2 / 3 + 2 / 4) / 4
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 3, 4, 1]):
        assert average_precision(probs[order], targets[order], maybe[order]) == pytest.approx(expected)


ROW = st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from([1.0, 0.9, 0.5, 0.4]), st.booleans())
"""(predicted class, target class, top probability, whether the predicted class is marked `m`)."""


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_average_precision_does_not_depend_on_row_order(rows, seed) -> None:
    """Few distinct confidences, so most rows tie: reversed and shuffled rows give the very same AP."""
    predicted, targets, confidence, maybe_flag = (list(column) for column in zip(*rows, strict=True))
    probs = confident(predicted, confidence)
    targets = np.array(targets)
    maybe = np.zeros_like(probs, dtype=bool)
    maybe[np.arange(len(rows)), predicted] = np.array(maybe_flag) & (np.array(predicted) != targets)
    reference = average_precision(probs, targets, maybe)
    permutation = np.random.default_rng(seed).permutation(len(rows))
    for order in (np.arange(len(rows))[::-1], permutation):
        again = average_precision(probs[order], targets[order], maybe[order])
        assert (math.isnan(reference) and math.isnan(again)) or again == reference


def test_empty_and_all_skipped_are_nan() -> None:
    empty = AttributePredictions.empty(3)
    assert math.isnan(accuracy(empty.probs, empty.targets))
    assert math.isnan(average_precision(empty.probs, empty.targets, empty.maybe))
    probs = confident([1, 2], [0.9, 0.7])
    assert math.isnan(average_precision(probs, np.array([0, 0]), maybe_mask([(1,), (2,)], 3)))


def test_basic_precision_is_mean_of_attribute_accuracies() -> None:
    colour = AttributePredictions(confident([1, 2], [0.9, 0.9]), np.array([1, 2]), no_maybe(2))  # accuracy 1
    size = AttributePredictions(
        confident([0, 1, 1, 1], [0.9, 0.8, 0.7, 0.6], num_classes=4), np.array([0, 2, 3, 0]), no_maybe(4, 4)
    )  # accuracy 1/4; AP = (1 + 1/2 + 1/3 + 1/4) / 4
    scores = score(TOY, {"colour": colour, "size_labels": size})
    assert list(scores.attributes) == ["colour_labels", "size_labels"]
    assert scores.basic_precision == pytest.approx((1.0 + 0.25) / 2)  # not the pooled 3/6
    assert scores.mean_average_precision == pytest.approx((1.0 + (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) / 2)
    assert scores.count == 6


def test_attribute_without_images_stays_out_of_the_means() -> None:
    colour = AttributePredictions(confident([1, 0], [0.9, 0.9]), np.array([1, 2]), no_maybe(2))
    scores = score(TOY, {"colour_labels": colour})
    assert scores.attributes["size_labels"].count == 0
    assert scores.attributes["size_labels"].confusion.shape == (4, 4)
    assert scores.basic_precision == pytest.approx(0.5)
    data = json.loads(json.dumps(scores.to_dict(), allow_nan=False))
    assert data["attributes"]["size_labels"]["accuracy"] is None
    assert data["attributes"]["colour_labels"]["confusion"] == [[0, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_score_rejects_wrong_class_count_and_unknown_attribute() -> None:
    three_classes = AttributePredictions(confident([1], [0.9]), np.array([1]), no_maybe(1))
    with pytest.raises(ValueError, match="size_labels"):
        score(TOY, {"size_labels": three_classes})
    with pytest.raises(ValueError, match="unknown attribute"):
        score(TOY, {"shoe_labels": three_classes})


def test_confusion_precision_recall() -> None:
    confusion = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), num_classes=3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    precision, recall = precision_recall(confusion)
    assert precision == pytest.approx([1.0, 1 / 3, 0.0])  # class 2 never predicted -> 0
    assert recall == pytest.approx([0.5, 1.0, 0.0])


def test_concat_joins_batches() -> None:
    first = AttributePredictions(confident([1], [0.9]), np.array([1]), maybe_mask([(2,)], 3))
    second = AttributePredictions(confident([0, 2], [0.8, 0.7]), np.array([0, 1]), no_maybe(2))
    joined = AttributePredictions.concat([first, second, AttributePredictions.empty(3)])
    assert len(joined) == 3
    assert joined.targets.tolist() == [1, 0, 1]
    assert joined.maybe[0].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="class counts"):
        AttributePredictions.concat([first, AttributePredictions.empty(4)])


def test_predictions_validate_shapes() -> None:
    with pytest.raises(ValueError, match="targets"):
        AttributePredictions(confident([1], [0.9]), np.array([1, 2]), no_maybe(1))
    with pytest.raises(ValueError, match="class indices"):
        AttributePredictions(confident([1], [0.9]), np.array([3]), no_maybe(1))


def test_scores_table_lists_attributes_and_summary() -> None:
    colour = AttributePredictions(confident([1, 0], [0.9, 0.8]), np.array([1, 2]), no_maybe(2))
    table = scores_table(TOY, score(TOY, {"colour_labels": colour}).to_dict())
    lines = table.strip().splitlines()
    assert lines[0] == "| attribute | images | accuracy % | AP % |"
    assert lines[2] == "| colour | 2 | 50.0 | 75.0 |"
    assert lines[3] == "| **BP / mAP** | 2 | 50.0 | 75.0 |"  # an attribute with no images has no row


def test_the_run_report_scores_json_and_the_grid_name_an_undefined_ap(tmp_path):
    from fashionattr.grid import GridSpec, collect_results, plan_cells, results_markdown, write_spec
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
