"""Property-based tests of the readers of hand-written files: label, question, answer, split, schema and config.

Random bytes, and valid files with random edits (separators, quotes, NULs, line separators, BOMs, brackets, YAML
anchors spliced in at random places), must be read or refused with one of the errors the command line prints as
a message (`fashionattr.cli.USER_ERRORS`): never another exception, never a hang (each example has a deadline).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashionattr.cli import USER_ERRORS
from fashionattr.config import read_config_file
from fashionattr.data.labels import read_labels, read_questions
from fashionattr.data.split import read_split
from fashionattr.schema import FASHIONAI, load_schema
from fashionattr.submission import read_submission

PROPERTY_SETTINGS = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                             database=None)  # fmt: skip
"""About a second per reader on a shared 2-core machine; the deadline turns a hang into a failure."""

VALID = {
    "labels": "Images/coat_length_labels/a.jpg,coat_length_labels,nynnnnnn\n"
    "Images/sleeve_length_labels/b.jpg,sleeve_length_labels,nnmnynnnn\r\n"
    "./Images/pant_length_labels/c.jpg,pant_length_labels,ynnnnn\n",
    "questions": "Images/coat_length_labels/a.jpg,coat_length_labels,?\nImages/skirt_length_labels/b.jpg,"
    "skirt_length_labels,?\n",
    "answers": "Images/coat_length_labels/a.jpg,coat_length_labels,0.1;0.9;0;0;0;0;0;0\n"
    "Images/collar_design_labels/b.jpg,collar_design_labels,2e-1;0.2;0.2;0.2;.2\n",
    "split": "Images/coat_length_labels/a.jpg,coat_length_labels,train\nImages/coat_length_labels/b.jpg,"
    "coat_length_labels,val\n",
    "schema.json": '{"name": "mine", "attributes": [{"name": "coat_length_labels", "classes": ["A", "B"]}], '
    '"groupings": {"all": {"one": ["coat_length_labels"]}}}',
    "schema.yaml": "name: mine\nattributes:\n  - name: coat_length_labels\n    classes: [A, B, 'C']\n"
    "groupings:\n  all: {one: [coat_length_labels]}\n",
    "config.yaml": "epochs: 3\nlr: 1e-3\nattributes: [coat_length, sleeve_length]\ncache: off\n",
}

READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "labels": ("label.csv", lambda path: read_labels(path, FASHIONAI)),
    "questions": ("question.csv", lambda path: read_questions(path, FASHIONAI)),
    "answers": ("answers.csv", lambda path: read_submission(path, FASHIONAI)),
    "split": ("split.csv", read_split),
    "schema.json": ("schema.json", load_schema),
    "schema.yaml": ("schema.yaml", load_schema),
    "config.yaml": ("config.yaml", read_config_file),
}

PIECES = [",", ";", "\t", '"', "\n", "\r", "\r\n", "\x00", "\u2028", "\x85", "\ufeff", "/", "./", "..", "//", "y",
          "n", "m", "?", "0.5", "1_0", "nan", "-", "e", "[", "]", "{", "}", ":", ": ", "&a ", "*a", "!!python/name:x",
          "- ", "  ", "#", "é", "\udcff", "<<: *a", "'", "attributes", "name", "classes"]  # fmt: skip
"""Edits that matter to these formats; `\\udcff` writes a lone byte 0xff, which is not UTF-8."""


@st.composite
def mutated(draw: st.DrawFn, text: str) -> bytes:
    """`text` with a few random insertions, deletions and replacements of `PIECES`."""
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(PIECES))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        end = min(len(text), position + draw(st.integers(1, 8)))
        if action == "insert":
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[end:]
        else:
            text = text[:position] + piece + text[end:]
    return text.encode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


def read_or_refuse(folder: Path, reader: str, data: bytes) -> None:
    name, read = READERS[reader]
    path = folder / name
    path.write_bytes(data)
    with contextlib.suppress(*USER_ERRORS):
        read(path)


@pytest.mark.parametrize("reader", list(READERS))
def test_valid_files_are_read(folder, reader):
    name, read = READERS[reader]
    (folder / name).write_text(VALID[reader], encoding="utf-8")
    assert read(folder / name)


@pytest.mark.parametrize("reader", list(READERS))
def test_random_bytes_are_read_or_refused_as_user_errors(folder, reader):
    @PROPERTY_SETTINGS
    @given(data=st.binary(max_size=600))
    def check(data: bytes) -> None:
        read_or_refuse(folder, reader, data)

    check()


@pytest.mark.parametrize("reader", list(READERS))
def test_edited_valid_files_are_read_or_refused_as_user_errors(folder, reader):
    @PROPERTY_SETTINGS
    @given(data=mutated(VALID[reader]))
    def check(data: bytes) -> None:
        read_or_refuse(folder, reader, data)

    check()
