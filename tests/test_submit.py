"""`fashionattr submit`: a complete answer file in question order, refusals, unreadable images, and scoring it."""

from __future__ import annotations

import shutil

import numpy as np

from fashionattr.cli import main
from fashionattr.data.labels import read_questions
from fashionattr.schema import FASHIONAI
from fashionattr.submission import read_submission
from helpers import PER_ATTRIBUTE, TrainedRun, answers_follow_questions

QUICK = ["--workers", "0", "--batch-size", "8"]


def test_round_trip_then_evaluate(trained_run: TrainedRun, tmp_path, capsys):
    answer = tmp_path / "answer.csv"
    assert main(["submit", str(trained_run.run), str(trained_run.questions), "--out", str(answer), *QUICK]) == 0
    questions = read_questions(trained_run.questions, FASHIONAI)
    answers = read_submission(answer, FASHIONAI)
    answers_follow_questions(answers, questions, answer)
    assert len(answers) == len(questions) > 0
    for _, attribute, probabilities in answers:
        assert len(probabilities) == FASHIONAI.attribute(attribute).num_classes
        assert abs(probabilities.sum() - 1.0) < 1e-6
    assert f"wrote {len(questions)} answers" in capsys.readouterr().out

    assert main(["evaluate", "--answers", str(answer), "--labels", str(trained_run.answers)]) == 0
    table = capsys.readouterr().out
    assert "BP / mAP" in table and "AP %" in table


def test_refuses_attributes_the_model_does_not_have_before_any_work(trained_per_attribute_run, tmp_path, capsys):
    answer = tmp_path / "answer.csv"
    run = trained_per_attribute_run
    assert main(["submit", str(run.run), str(run.questions), "--out", str(answer), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "does not predict" in err and "skirt_length_labels" in err and "neckline_design_labels" in err
    assert "coat_length_labels (" not in err  # only the missing ones are listed
    assert not answer.exists()


def test_unknown_attribute_name_is_listed(trained_run, tmp_path, capsys):
    questions = tmp_path / "Tests" / "question.csv"
    questions.parent.mkdir()
    questions.write_text("Images/a.jpg,hat_colour_labels,?\nImages/b.jpg,hat_colour_labels,?\n")
    assert main(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "a.csv"), *QUICK]) == 2
    assert "hat_colour_labels (2 rows)" in capsys.readouterr().err


def test_unreadable_image_still_gets_a_line_and_exit_code_1(trained_run, tmp_path, capsys):
    """Question file outside Tests/, so the image root comes from --data."""
    root = tmp_path / "dataset"
    source = next((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))
    (root / "Images" / "coat_length_labels").mkdir(parents=True)
    shutil.copy(source, root / "Images" / "coat_length_labels" / "good.jpg")
    (root / "Images" / "coat_length_labels" / "bad.jpg").write_bytes(b"not a picture")
    questions = tmp_path / "questions.csv"
    questions.write_text("Images/coat_length_labels/good.jpg,coat_length_labels,?\n"
                         "Images/coat_length_labels/bad.jpg,coat_length_labels,?\n")  # fmt: skip
    answer = tmp_path / "answer.csv"

    code = main(["submit", str(trained_run.run), str(questions), "--data", str(root), "--out", str(answer), *QUICK])
    assert code == 1
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "uniform" in err
    answers = read_submission(answer, FASHIONAI)
    answers_follow_questions(answers, read_questions(questions, FASHIONAI), answer)
    np.testing.assert_allclose(answers[1][2], np.full(8, 1 / 8), atol=1e-6)
    assert not np.allclose(answers[0][2], answers[1][2])

    # Without --data, the question file's own folder is not the image root: refused with a hint, nothing written.
    assert main(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "b.csv"), *QUICK]) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "b.csv").exists()


def test_per_attribute_folder_answers_its_own_questions(trained_per_attribute_run, tmp_path):
    run = trained_per_attribute_run
    questions = tmp_path / "Tests" / "question.csv"
    questions.parent.mkdir()
    rows = [q for q in read_questions(run.questions, FASHIONAI) if q.attribute in PER_ATTRIBUTE]
    questions.write_text("".join(f"{q.path},{q.attribute},?\n" for q in rows))
    answer = tmp_path / "answer.csv"
    code = main(["submit", str(run.run), str(questions), "--data", str(run.data), "--out", str(answer), *QUICK])
    assert code == 0
    assert [(p, a) for p, a, _ in read_submission(answer, FASHIONAI)] == [(q.path, q.attribute) for q in rows]
