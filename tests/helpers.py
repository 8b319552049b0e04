"""What several test modules share: checks and small builders that are not fixtures (those are in conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fashionattr.data.labels import LabelFileError, LabelRecord, parse_csv_line, read_lines
from fashionattr.submission import Answer


def answers_follow_questions(
    answers: Sequence[Answer], questions: Sequence[LabelRecord], answer_path: str | Path
) -> None:
    """Check the answers cover exactly the question rows in the same order; name the first line that differs."""
    answer_path = Path(answer_path)
    for index, ((image_path, attribute_name, _), question) in enumerate(zip(answers, questions, strict=False)):
        if (image_path, attribute_name) != (question.path, question.attribute):
            message = (
                f"answer is for {image_path} / {attribute_name} but question row {index + 1} (line {question.line}) "
                f"asks for {question.path} / {question.attribute}; answers must follow the question rows in order"
            )
            raise LabelFileError(answer_path, [(_answer_line_number(answer_path, index), message)])
    if len(answers) < len(questions):
        missing = questions[len(answers)]
        message = (
            f"{len(answers)} answers for {len(questions)} questions; the first unanswered question is "
            f"{missing.path} / {missing.attribute} (question line {missing.line})"
        )
        raise LabelFileError(answer_path, [(0, message)])
    if len(answers) > len(questions):
        message = f"{len(answers)} answers for {len(questions)} questions; this line and the rest are extra"
        raise LabelFileError(answer_path, [(_answer_line_number(answer_path, len(questions)), message)])


def _answer_line_number(answer_path: Path, index: int) -> int:
    """Line number of the `index`-th non-blank row, found again only when an error needs it (0 if unknown)."""
    try:
        lines = read_lines(answer_path)
    except LabelFileError:
        return 0
    row_lines = [number for number, line in enumerate(lines, start=1) if any(map(str.strip, parse_csv_line(line)))]
    return row_lines[index] if index < len(row_lines) else 0
