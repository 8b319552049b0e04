"""Answer files: writing, strict reading, order checks and scoring against labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fashionattr.data.labels import LabelFileError, LabelRecord, read_questions
from fashionattr.errors import UserError
from fashionattr.schema import Attribute, Schema
from fashionattr.submission import read_submission, score_submission, write_submission
from helpers import answers_follow_questions

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
