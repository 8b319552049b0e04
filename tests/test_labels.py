"""Label and question files: the readers' tolerance of real files, and one error naming the file and the line of
every bad row, from the readers and from the commands that read them (`check`, `split`, `train`, `submit`).

Hostile rows: wrong columns, attributes and marks, duplicates, paths that escape the root, NULs, fields of 200,000
characters, stray quotes, line separators inside a path (U+2028, NEL, a lone CR), tabs or semicolons for commas, an
empty file; line numbers stay the file's own, and nothing is trained.
"""

import pytest

from corpus import PARSE_CASES, SPELLING_CASES, TextCase
from fashionattr.data.labels import (
    LABELS_RELPATH,
    QUESTIONS_RELPATH,
    LabelFileError,
    format_rows,
    read_labels,
    read_questions,
)
from fashionattr.schema import FASHIONAI
from helpers import QUICK_TRAIN, refused, tiny_root

GOOD = "Images/coat_length_labels/a.jpg,coat_length_labels,nynnnnnn\n"


def write(tmp_path, text, name="label.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_reads_records_with_target_and_maybe(tmp_path):
    path = write(tmp_path, GOOD + "Images/skirt_length_labels/b.jpg,skirt_length_labels,nnmynn\n")
    records = read_labels(path, FASHIONAI)
    assert [(r.path, r.attribute, r.target, r.maybe, r.line) for r in records] == [
        ("Images/coat_length_labels/a.jpg", "coat_length_labels", 1, (), 1),
        ("Images/skirt_length_labels/b.jpg", "skirt_length_labels", 3, (2,), 2),
    ]


def test_tolerates_bom_crlf_blank_lines_and_spaces(tmp_path):
    text = "\ufeff" + GOOD.replace("\n", "\r\n") + "\r\n\r\n  Images/x/b.jpg , neck_design_labels ,  ynnnn \r\n"
    records = read_labels(write(tmp_path, text), FASHIONAI)
    assert len(records) == 2
    assert records[1].path == "Images/x/b.jpg" and records[1].target == 0 and records[1].line == 4


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("Images/a.jpg,coat_length_labels", "expected 3 columns"),
        ("Images/a.jpg,coat_length_labels,nynnnnnn,extra", "expected 3 columns"),
        ("Images/a.jpg,hat_labels,ny", "unknown attribute 'hat_labels'"),
        ("Images/a.jpg,coat_length_labels,nyn", "has 3 characters but coat_length_labels has 8 classes"),
        ("Images/a.jpg,coat_length_labels,nnnnnnnn", "has no 'y'"),
        ("Images/a.jpg,coat_length_labels,yynnnnnn", "2 'y' marks"),
        ("Images/a.jpg,coat_length_labels,nyxnnnnn", "only 'y', 'n' and 'm'"),
        ("../outside.jpg,coat_length_labels,nynnnnnn", "leaves the dataset root"),
        ("Images/../../outside.jpg,coat_length_labels,nynnnnnn", "leaves the dataset root"),
        ("/etc/passwd,coat_length_labels,nynnnnnn", "is absolute"),
        ("Images/coat_length_labels/a.jpg,coat_length_labels,nnynnnnn", "duplicate row"),
    ],
)
def test_each_malformed_row_kind_names_file_and_line(tmp_path, row, message):
    path = write(tmp_path, GOOD + row + "\n")
    with pytest.raises(LabelFileError) as info:
        read_labels(path, FASHIONAI)
    text = str(info.value)
    assert f"{path}:2:" in text
    assert message in text


def test_reports_every_bad_row_first_twenty_and_a_count(tmp_path):
    rows = "".join(f"Images/{i}.jpg,coat_length_labels,nnn\n" for i in range(30))
    path = write(tmp_path, GOOD + rows)
    with pytest.raises(LabelFileError) as info:
        read_labels(path, FASHIONAI)
    assert len(info.value.problems) == 30
    text = str(info.value)
    assert "30 malformed row(s)" in text
    assert f"{path}:21:" in text and f"{path}:22:" not in text
    assert "and 10 more problem(s)" in text


def test_empty_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(LabelFileError, match="no label rows"):
        read_labels(write(tmp_path, ""), FASHIONAI)
    with pytest.raises(LabelFileError, match="file not found"):
        read_labels(tmp_path / "absent.csv", FASHIONAI)
    with pytest.raises(LabelFileError, match=r":2: not valid UTF-8"):
        read_labels(write(tmp_path, GOOD.encode() + b"Images/\xff.jpg,a,b\n"), FASHIONAI)


def test_questions_and_round_trip(tmp_path):
    path = write(tmp_path, "Images/a.jpg,pant_length_labels,?\nImages/b.jpg,sleeve_length_labels,?\n", "q.csv")
    questions = read_questions(path, FASHIONAI)
    assert [(q.attribute, q.target) for q in questions] == [("pant_length_labels", -1), ("sleeve_length_labels", -1)]
    assert format_rows(questions, FASHIONAI) == path.read_text()
    labels = read_labels(write(tmp_path, GOOD + "Images/c.jpg,skirt_length_labels,nnmynn\n"), FASHIONAI)
    assert format_rows(labels, FASHIONAI) == GOOD + "Images/c.jpg,skirt_length_labels,nnmynn\n"


def test_a_stray_quote_or_huge_field_costs_only_its_own_row(tmp_path):
    path = tmp_path / "label.csv"
    huge = "Images/" + "x" * 200_000 + ".jpg,coat_length_labels,nynnnnnn\n"
    path.write_text(GOOD + '"Images/q.jpg,coat_length_labels,nynnnnnn\n' + huge + "Images/c.jpg,pant,n\n")
    with pytest.raises(LabelFileError) as info:
        read_labels(path, FASHIONAI)
    assert [line for line, _ in info.value.problems] == [2, 3, 4]  # every row reported, true line numbers


# --- bad label files through the commands -----------------------------------------------------------------------

COMMAND_CASES = [
    TextCase("columns", GOOD + "Images/b.jpg,coat_length_labels\n", 2, "expected 3 columns"),
    TextCase("attribute", GOOD + "Images/b.jpg,hat_labels,ny\n", 2, "unknown attribute"),
    TextCase("length", GOOD + "Images/b.jpg,coat_length_labels,nyn\n", 2, "has 3 characters"),
    TextCase("two-y", GOOD + "Images/b.jpg,coat_length_labels,yynnnnnn\n", 2, "2 'y' marks"),
    TextCase("no-y", GOOD + "Images/b.jpg,coat_length_labels,nnnnnnnn\n", 2, "no 'y'"),
    TextCase("illegal", GOOD + "Images/b.jpg,coat_length_labels,nyxnnnnn\n", 2, "only 'y', 'n' and 'm'"),
    TextCase("duplicate", GOOD + GOOD, 2, "duplicate row"),
    TextCase("escapes", GOOD + "../../etc/passwd,coat_length_labels,nynnnnnn\n", 2, "leaves the dataset root"),
    TextCase("absolute", GOOD + "/etc/passwd,coat_length_labels,nynnnnnn\n", 2, "is absolute"),
    TextCase("nul", GOOD + "Images/b\0.jpg,coat_length_labels,nynnnnnn\n", 2, "control characters"),
    TextCase("huge-field", GOOD + "Images/" + "x" * 200_000 + ".jpg,coat_length_labels,nynnnnnn\n", 2, "field larger"),
    TextCase("bom-crlf", "\ufeff" + GOOD.replace("\n", "\r\n") + "Images/b.jpg,coat_length_labels,nyn\r\n", 2,
             "has 3 characters"),
    TextCase("empty", "", 0, "no label rows"),
]  # fmt: skip
"""A bad row of every kind, as the commands meet it; tests/corpus.py's PARSE_CASES add what a line end can hide."""
BAD_LABEL_FILES = [*COMMAND_CASES, *PARSE_CASES]


@pytest.mark.parametrize("case", BAD_LABEL_FILES, ids=[case.id for case in BAD_LABEL_FILES])
def test_bad_label_files_are_refused_by_check_split_and_train_naming_file_and_line(synthetic_data, tmp_path, case):
    """Each command says where (true line numbers whatever characters a path holds; a row in another separator
    says which) with exit 2, and trains nothing; the reader reports that line among its problems."""
    root = tiny_root(tmp_path / "data", synthetic_data, case.text)
    labels = root / LABELS_RELPATH
    where = f"{labels}:{case.line}: " if case.line else f"{labels}: "
    for argv in (["check", str(root)], ["split", str(root), "--out", str(tmp_path / "split.csv")],
                 ["train", str(root), "--out", str(tmp_path / "run"), *QUICK_TRAIN]):  # fmt: skip
        refused(argv, where, case.words or "")
        assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(LabelFileError) as info:
        read_labels(labels, FASHIONAI)
    assert case.line in [line for line, _ in info.value.problems]


QUESTION_IDS = ("dot-slash", "only-dots", "u2028-error-line-after-it", "tab-separated")
QUESTION_CASES = [case for case in (*SPELLING_CASES, *PARSE_CASES) if case.id in QUESTION_IDS]


@pytest.mark.parametrize("case", QUESTION_CASES, ids=[case.id for case in QUESTION_CASES])
def test_question_files_are_read_like_label_files_by_check_and_submit(trained_run, synthetic_data, tmp_path, case):
    root = tiny_root(tmp_path / "data", synthetic_data)
    questions = root / QUESTIONS_RELPATH
    questions.parent.mkdir()
    questions.write_text(case.text.replace(",nynnnnnn", ",?").replace(",nyn\n", ",?,?\n"), encoding="utf-8")
    words = "expected 3 columns" if case.id.startswith("u2028") else case.words
    refused(["check", str(root), "--no-images"], f"{questions}:{case.line}: ", words or "")
    refused(["submit", str(trained_run.run), str(questions), "--out", str(tmp_path / "answers.csv")],
            f"{questions}:{case.line}: ", words or "")  # fmt: skip
    assert not (tmp_path / "answers.csv").exists()
