"""Label and question readers: real-file tolerance and an error naming file and line for every bad row."""

import pytest

from fashionattr.data.labels import LabelFileError, format_rows, read_labels, read_questions
from fashionattr.schema import FASHIONAI

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
