"""Answer files: writing, strict reading, order checks and scoring against labels (`evaluate --answers`).

Hostile and awkward numbers: only plain decimals are read (Python's `_`, nan, inf, hexadecimal, other scripts'
digits and a decimal comma are refused by line; exponents, subnormals and 17 digits are accepted); every
probability comes back bit for bit, so AP from the file is the model's; an attribute whose every answer lands on an
`m` class is shown as AP n/a and named; and the scores do not depend on the order of the rows.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from corpus import (
    ANSWER_LABELS,
    ANSWER_NUMBER_CASES,
    ANSWER_PRECISION_CASES,
    ANSWER_ROW,
    MAYBE_CASES,
    SLEEVE_ANSWER,
    SLEEVE_ROW,
    A,
    MaybeCase,
    row,
)
from fashionattr.cli import main
from fashionattr.data.labels import LabelFileError, LabelRecord, read_questions
from fashionattr.errors import UserError
from fashionattr.metrics import AttributePredictions, maybe_mask, score
from fashionattr.schema import FASHIONAI, Attribute, Schema
from fashionattr.submission import read_submission, score_submission, write_submission
from helpers import answers_follow_questions, refused

TOY = Schema(
    name="toy",
    attributes=(
        Attribute("colour_labels", ("Invisible", "Red", "Blue")),
        Attribute("size_labels", ("Invisible", "Small", "Large", "Huge")),
    ),
)
ROWS = [("Images/colour_labels/a.jpg", "colour_labels"), ("Images/size_labels/b.jpg", "size_labels")]


def test_round_trip_and_written_numbers_sum_to_one(tmp_path: Path) -> None:
    thirds = np.full(3, 1 / 3, dtype=np.float32)  # six decimals made 0.333333 x3, summing to 0.999999
    size = np.array([0.1, 0.2, 0.3, 0.4])
    path = tmp_path / "answer.csv"
    write_submission(path, ROWS, [thirds, size], TOY)

    lines = path.read_text().splitlines()
    assert lines[0] == "Images/colour_labels/a.jpg,colour_labels," + ";".join(["0.3333333432674408"] * 3)
    assert lines[1] == "Images/size_labels/b.jpg,size_labels,0.1;0.2;0.3;0.4"
    for line in lines:
        written = [float(value) for value in line.split(",")[2].split(";")]
        assert sum(written) == pytest.approx(1.0, abs=1e-6)  # as closely as a float32 softmax sums

    answers = read_submission(path, TOY)
    assert [(image, attribute) for image, attribute, _ in answers] == ROWS
    assert answers[0][2].tolist() == thirds.astype(np.float64).tolist()  # bit for bit
    assert answers[1][2].tolist() == size.tolist()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_write_accepts_question_records(tmp_path: Path) -> None:
    questions = [LabelRecord(path, attribute, target=-1) for path, attribute in ROWS]
    write_submission(tmp_path / "answer.csv", questions, [np.array([1.0, 0, 0]), np.array([0, 0, 0, 1.0])], TOY)
    assert len(read_submission(tmp_path / "answer.csv", TOY)) == 2


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([np.array([0.5, 0.5]), np.full(4, 0.25)], "2 probabilities but the attribute has 3 classes"),
        ([np.array([2.0, -1.0, 0.0]), np.full(4, 0.25)], "non-negative"),
        ([np.array([3.0, 1.0, 2.0]), np.full(4, 0.25)], "not logits"),
        ([np.full(3, 1 / 3)], "2 question rows but 1 probability vectors"),
    ],
)
def test_write_rejects_bad_vectors(tmp_path: Path, vectors: list[np.ndarray], message: str) -> None:
    with pytest.raises(UserError, match=message):
        write_submission(tmp_path / "answer.csv", ROWS, vectors, TOY)
    assert not (tmp_path / "answer.csv").exists()


def test_read_tolerates_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "answer.csv"
    text = "\ufeffa.jpg,colour_labels,0.2;0.3;0.5\r\n\r\nb.jpg,size_labels,0;0;0;1\r\n"
    path.write_bytes(text.encode("utf-8"))
    answers = read_submission(path, TOY)
    assert [answer[0] for answer in answers] == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.jpg,colour_labels", "expected 3 columns"),
        ("a.jpg,colour_labels,0.5;0.5,extra", "expected 3 columns"),
        ("a.jpg,shoe_labels,0.5;0.5", "unknown attribute 'shoe_labels'"),
        ("a.jpg,colour_labels,0.5;0.5", "2 probabilities but colour_labels has 3 classes"),
        ("a.jpg,colour_labels,0.5;half;0", "probability 1 ('half') is not a number"),
        ("a.jpg,colour_labels,0.5;nan;0.5", "probability 1 ('nan') is not a number"),
        ("a.jpg,colour_labels,1.5;-0.5;0", "not a finite number in"),
        ("a.jpg,colour_labels,0.5;0.4;0.05", "sum to 0.95"),
        ("a.jpg,colour_labels,0.5;;0.5", "probability 1 ('') is not a number"),
        ("b.jpg,size_labels,0;0;0;1", "duplicate answer: b.jpg / size_labels already given on line 1"),
    ],
)
def test_read_reports_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "answer.csv"
    path.write_text(f"b.jpg,size_labels,0;0;0;1\n\n{line}\n")
    with pytest.raises(LabelFileError) as caught:
        read_submission(path, TOY)
    assert f"{path}:3: " in str(caught.value)
    assert message in str(caught.value)


def test_read_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "answer.csv"
    path.write_text("\n")
    with pytest.raises(LabelFileError, match="no answer rows"):
        read_submission(path, TOY)


def write_questions(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / "question.csv"
    path.write_text("".join(f"{image},{attribute},?\n" for image, attribute in rows))
    return path


def test_validate_against_questions_finds_the_differing_line(tmp_path: Path) -> None:
    questions = read_questions(write_questions(tmp_path, ROWS), TOY)
    answer_path = tmp_path / "answer.csv"
    vectors = {"colour_labels": np.full(3, 1 / 3), "size_labels": np.full(4, 0.25)}

    write_submission(answer_path, ROWS, [vectors[attribute] for _, attribute in ROWS], TOY)
    answers_follow_questions(read_submission(answer_path, TOY), questions, answer_path)

    swapped = ROWS[::-1]
    write_submission(answer_path, swapped, [vectors[attribute] for _, attribute in swapped], TOY)
    with pytest.raises(LabelFileError, match=r"answer\.csv:1: answer is for Images/size_labels/b\.jpg"):
        answers_follow_questions(read_submission(answer_path, TOY), questions, answer_path)

    write_submission(answer_path, ROWS[:1], [vectors["colour_labels"]], TOY)
    with pytest.raises(LabelFileError, match="1 answers for 2 questions; the first unanswered question is"):
        answers_follow_questions(read_submission(answer_path, TOY), questions, answer_path)

    extra = [*ROWS, ("Images/size_labels/c.jpg", "size_labels")]
    write_submission(answer_path, extra, [vectors[attribute] for _, attribute in extra], TOY)
    with pytest.raises(LabelFileError, match=r"answer\.csv:3: 3 answers for 2 questions"):
        answers_follow_questions(read_submission(answer_path, TOY), questions, answer_path)


LABELS = """\
c1.jpg,colour_labels,nyn
c2.jpg,colour_labels,nny
c3.jpg,colour_labels,ymn
s1.jpg,size_labels,nnyn
s2.jpg,size_labels,ynnn
"""
# colour: c1 0.9 correct, c2 0.8 wrong, c3 0.7 hits its `m` class (skipped) -> accuracy 1/3, AP (1/1 + 1/2) / 2
# size:   s1 0.6 correct, s2 0.4 correct (given in the other order)         -> accuracy 1,   AP 1
ANSWERS = """\
s2.jpg,size_labels,0.4;0.2;0.2;0.2
c3.jpg,colour_labels,0.15;0.7;0.15
c2.jpg,colour_labels,0.1;0.8;0.1
c1.jpg,colour_labels,0.05;0.9;0.05
s1.jpg,size_labels,0.1;0.2;0.6;0.1
"""


def test_score_submission_by_hand(tmp_path: Path) -> None:
    labels_path, answer_path = tmp_path / "answers.csv", tmp_path / "submission.csv"
    labels_path.write_text(LABELS)
    answer_path.write_text(ANSWERS)
    scores = score_submission(answer_path, labels_path, TOY)
    assert scores.attributes["colour_labels"].accuracy == pytest.approx(1 / 3)
    assert scores.attributes["colour_labels"].average_precision == pytest.approx(0.75)
    assert scores.attributes["size_labels"].average_precision == pytest.approx(1.0)
    assert scores.basic_precision == pytest.approx((1 / 3 + 1) / 2)
    assert scores.mean_average_precision == pytest.approx((0.75 + 1) / 2)


def test_score_submission_needs_an_answer_for_every_label(tmp_path: Path) -> None:
    labels_path, answer_path = tmp_path / "answers.csv", tmp_path / "submission.csv"
    labels_path.write_text(LABELS)
    answer_path.write_text("".join(line + "\n" for line in ANSWERS.splitlines() if not line.startswith("c2")))
    with pytest.raises(LabelFileError, match=r"answers\.csv:2: no answer for c2\.jpg / colour_labels"):
        score_submission(answer_path, labels_path, TOY)


def test_score_submission_rejects_answers_without_labels(tmp_path: Path) -> None:
    labels_path, answer_path = tmp_path / "answers.csv", tmp_path / "submission.csv"
    labels_path.write_text(LABELS)
    answer_path.write_text(ANSWERS + "x.jpg,size_labels,1;0;0;0\n")
    with pytest.raises(LabelFileError, match=r"submission\.csv:6: answer for x\.jpg / size_labels, which .* does not"):
        score_submission(answer_path, labels_path, TOY)


# --- hostile numbers, and every digit kept ----------------------------------------------------------------------


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
    refused(argv, f"{answers}:{case.line}: ", case.words)


@pytest.mark.parametrize(("name", "vector"), ANSWER_PRECISION_CASES, ids=[name for name, _ in ANSWER_PRECISION_CASES])
def test_an_answer_file_gives_back_every_probability_bit_for_bit(tmp_path, name, vector):
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


# --- scoring: undefined AP, and the order of rows ---------------------------------------------------------------


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
