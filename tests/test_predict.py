"""`fashionattr predict` and the Predictor behind it: formats, corrupt files, thresholds, TTA, per-attribute folders.

Hostile inputs: every file of the image corpus (tests/corpus.py) is answered or named with its reason (exit 1, no
traceback), a file name that is not UTF-8 is printed as its bytes, and special files (a FIFO, a socket, a link to a
device) are named without being opened, by `predict` and by `submit`, which answers such a question uniformly.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from corpus import NON_UTF8_NAME, special_file
from corpus import row as label_row
from fashionattr.cli import main
from fashionattr.data.images import ImageError
from fashionattr.errors import UserError
from fashionattr.inference import Predictor
from fashionattr.schema import FASHIONAI
from helpers import PER_ATTRIBUTE, TrainedRun, assert_no_traceback, cli_command, hide_skirt_length, refused

QUICK = ["--workers", "0", "--batch-size", "2"]
GOOD_IMAGES = 3


@pytest.fixture
def image_folder(trained_run: TrainedRun, tmp_path: Path) -> Path:
    """Three real images (one in a sub-folder, found recursively) and a corrupt `broken.jpg`."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    sources = sorted((trained_run.data / "Images" / "coat_length_labels").glob("*.jpg"))[:GOOD_IMAGES]
    for index, source in enumerate(sources):
        shutil.copy(source, (folder / "more" if index == 0 else folder) / source.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def read_json(text: str) -> list[dict]:
    return json.loads(text)


def test_json_predicts_every_image_and_reports_the_corrupt_one(trained_run, image_folder, capsys):
    code = main(["predict", str(trained_run.run), str(image_folder), "--format", "json", *QUICK])
    out, err = capsys.readouterr()
    assert code == 1
    entries = read_json(out)
    assert len(entries) == GOOD_IMAGES + 1
    errors = [e for e in entries if "error" in e]
    assert [Path(e["source"]).name for e in errors] == ["broken.jpg"]
    assert "broken.jpg" in err
    for entry in (e for e in entries if "error" not in e):
        assert list(entry["attributes"]) == FASHIONAI.names
        for name, answer in entry["attributes"].items():
            classes = FASHIONAI.attribute(name).classes
            assert answer["value"] == (classes[answer["index"]] if answer["applies"] else None)
            assert 0.0 <= answer["applicability"] <= 1.0
            assert list(answer["probabilities"]) == list(classes)
            assert math.isclose(sum(answer["probabilities"].values()), 1.0, abs_tol=1e-5)
            assert answer["confidence"] == max(answer["probabilities"].values())


def test_csv_to_a_file_with_top_k_and_selected_attributes(trained_run, image_folder, tmp_path, capsys):
    out_file = tmp_path / "tags.csv"
    code = main(["predict", str(trained_run.checkpoint), str(image_folder), "--out", str(out_file), "--top-k", "2",
                 "--attributes", "coat_length,sleeve_length_labels", *QUICK])  # fmt: skip
    assert code == 1
    assert f"wrote {GOOD_IMAGES + 1} prediction(s)" in capsys.readouterr().err
    rows = list(csv.DictReader(out_file.open(newline="")))
    assert list(rows[0]) == ["path", "attribute", "value", "confidence", "applies", "applicability", "probabilities",
                             "error"]  # fmt: skip
    good = [r for r in rows if not r["error"]]
    assert len(good) == GOOD_IMAGES * 2
    assert {r["attribute"] for r in good} == {"coat_length_labels", "sleeve_length_labels"}
    for row in good:
        probabilities = json.loads(row["probabilities"])
        top = max(probabilities, key=probabilities.get)
        assert len(probabilities) == 2 and row["value"] == (top if row["applies"] == "true" else "n/a")
        assert float(row["confidence"]) == pytest.approx(max(probabilities.values()), abs=1e-6)
    [bad] = [r for r in rows if r["error"]]
    assert bad["path"].endswith("broken.jpg") and bad["error"]


def test_table_is_aligned_and_shows_errors(trained_run, image_folder, capsys):
    code = main(["predict", str(trained_run.run), str(image_folder), "--format", "table", *QUICK])
    out, err = capsys.readouterr()
    assert code == 1 and "broken.jpg" in err
    lines = out.splitlines()
    assert sum(1 for line in lines if line.strip().startswith("error:")) == 1
    attribute_lines = [line for line in lines if line.startswith("  ") and "error:" not in line]
    assert len(attribute_lines) == GOOD_IMAGES * len(FASHIONAI)
    # The confidence column ends at the same place on every line, across images.
    assert len({line.index("%") for line in attribute_lines}) == 1
    assert "tqdm" not in err and "img/s" not in err  # no progress bar for a table on stdout


def test_min_confidence_above_one_makes_every_applying_answer_uncertain(trained_run, image_folder, capsys):
    code = main(["predict", str(trained_run.run), str(image_folder / "more"), "--format", "jsonl",
                 "--min-confidence", "1", *QUICK])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0
    [entry] = [json.loads(line) for line in out.splitlines()]
    answers = entry["attributes"].values()
    assert all(a["value"] is None and a["uncertain"] == a["applies"] for a in answers)

    main(["predict", str(trained_run.run), str(image_folder / "more"), "--min-confidence", "1", *QUICK])
    table = capsys.readouterr().out
    assert table.count("uncertain") == sum(a["applies"] for a in answers)
    assert table.count("n/a") == sum(not a["applies"] for a in answers)


def test_the_applicability_threshold_decides_which_tags_are_shown(trained_run, image_folder, capsys):
    """0 shows every attribute whose top class is not `Invisible`; 1 hides every tag a score under 1 decides."""
    answers = {}
    for threshold in ("0", "0.5", "1"):
        code = main(["predict", str(trained_run.run), str(image_folder / "more"), "--format", "jsonl",
                     "--applicability-threshold", threshold, *QUICK])  # fmt: skip
        assert code == 0
        [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        answers[threshold] = entry["attributes"]
    invisible = {name: "Invisible" in FASHIONAI.attribute(name).classes for name in answers["0"]}
    for name, answer in answers["0"].items():
        top = FASHIONAI.attribute(name).classes[answer["index"]]
        assert answer["applies"] == (top != "Invisible" or not invisible[name]), name
        assert answers["0.5"][name]["applies"] == (answer["applies"] and answer["applicability"] >= 0.5)
        assert answers["1"][name]["applies"] == (answer["applies"] and answer["applicability"] >= 1.0)
        assert answers["1"][name]["probabilities"] == answer["probabilities"]  # only the decision moves


def test_tta_averages_the_image_and_its_mirror(trained_run, image_folder, tmp_path, capsys):
    image = Image.open(next(image_folder.glob("*.jpg"))).convert("RGB")
    image.save(tmp_path / "image.png")  # lossless: the file and its mirror hold exactly these pixels
    ImageOps.mirror(image).save(tmp_path / "mirror.png")
    plain = Predictor.from_path(trained_run.run, device="cpu", calibrated=False)
    both = list(plain.predict_paths([tmp_path / "image.png", tmp_path / "mirror.png"], workers=0))
    tta = Predictor.from_path(trained_run.run, device="cpu", tta=True, calibrated=False)
    [averaged] = tta.predict_paths([tmp_path / "image.png"], workers=0)
    for name, result in averaged.attributes.items():
        expected = (np.array(list(both[0].attributes[name].probabilities.values()))
                    + np.array(list(both[1].attributes[name].probabilities.values()))) / 2  # fmt: skip
        np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-5)

    code = main(["predict", str(trained_run.run), str(image_folder / "more"), "--tta", "--format", "json", *QUICK])
    assert code == 0 and len(read_json(capsys.readouterr().out)) == 1


def test_per_attribute_folder_predicts_as_one_model(trained_per_attribute_run, image_folder, capsys):
    folder = trained_per_attribute_run.run
    code = main(["predict", str(folder), str(image_folder), "--format", "json", *QUICK])
    assert code == 1
    entries = [e for e in read_json(capsys.readouterr().out) if "error" not in e]
    assert len(entries) == GOOD_IMAGES
    assert all(list(e["attributes"]) == PER_ATTRIBUTE for e in entries)

    # Each attribute's answer is exactly what its own run directory says.
    for name in PER_ATTRIBUTE:
        single = Predictor.from_path(folder / FASHIONAI.attribute(name).short_name, device="cpu")
        predictions = single.predict_paths([e["source"] for e in entries], workers=0)
        for entry, prediction in zip(entries, predictions, strict=True):
            assert not isinstance(prediction, Exception)
            expected = list(prediction.attributes[name].probabilities.values())
            np.testing.assert_allclose(list(entry["attributes"][name]["probabilities"].values()), expected, atol=1e-6)


def test_embeddings_are_unit_length_and_do_not_change_probabilities(trained_per_attribute_run, image_folder):
    predictor = Predictor.from_path(trained_per_attribute_run.run, device="cpu")
    paths = sorted(image_folder.rglob("*.jpg"))
    with_embedding = list(predictor.predict_paths(paths, batch_size=2, workers=0, embed=True))
    without = list(predictor.predict_paths(paths, batch_size=2, workers=0))
    for a, b in zip(with_embedding, without, strict=True):
        if isinstance(a, ImageError):
            assert a.reason == b.reason
            continue
        assert a.embedding is not None and a.embedding.ndim == 1
        assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-5)
        assert a.attributes["coat_length_labels"].probabilities == b.attributes["coat_length_labels"].probabilities


def test_usage_errors_exit_2(trained_run, trained_per_attribute_run, tmp_path, capsys):
    assert main(["predict", str(trained_run.run), str(tmp_path), *QUICK]) == 2
    assert "no image files" in capsys.readouterr().err
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert main(["predict", str(trained_run.run), str(tmp_path), "--attributes", "hat_colour", *QUICK]) == 2
    assert "hat_colour" in capsys.readouterr().err
    predictor = Predictor.from_path(trained_per_attribute_run.run, device="cpu")
    assert predictor.with_attributes("coat_length").attributes == ["coat_length_labels"]
    with pytest.raises(UserError, match="does not predict skirt_length_labels"):
        predictor.with_attributes(["skirt_length", "coat_length"])


def test_an_attribute_that_does_not_apply_is_null_in_json_and_n_a_in_tables(trained_run, image_folder, capsys,
                                                                             monkeypatch):  # fmt: skip
    """A close-up has no skirt length: JSON says value null and applies false, the table and CSV print n/a."""
    hide_skirt_length(monkeypatch)
    main(["predict", str(trained_run.run), str(image_folder / "more"), "--format", "jsonl", *QUICK])
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    skirt = entry["attributes"]["skirt_length_labels"]
    assert skirt["value"] is None and skirt["applies"] is False and skirt["uncertain"] is False
    main(["predict", str(trained_run.run), str(image_folder / "more"), *QUICK])
    [line] = [line for line in capsys.readouterr().out.splitlines() if "skirt_length_labels" in line]
    assert line.split()[1] == "n/a"
    main(["predict", str(trained_run.run), str(image_folder / "more"), "--format", "csv", *QUICK])
    rows = {row["attribute"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["skirt_length_labels"]["value"] == "n/a" and rows["skirt_length_labels"]["applies"] == "false"
    coat = entry["attributes"]["coat_length_labels"]
    assert rows["coat_length_labels"]["applies"] == str(coat["applies"]).lower()
    assert rows["coat_length_labels"]["value"] == (coat["value"] or "n/a")


# --- hostile files ----------------------------------------------------------------------------------------------


def test_predict_answers_the_good_and_names_each_bad_file(trained_run: TrainedRun, corpus, capsys):
    folder, cases = corpus
    code = main(["predict", str(trained_run.run), str(folder), "--format", "json", "--workers", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert_no_traceback(err)
    entries = {Path(entry["source"]).name: entry for entry in json.loads(out)}
    assert set(entries) == set(cases)  # the symlink loop's partner is not an image name; the loop itself is
    for name, case in cases.items():
        if case.good:
            assert "error" not in entries[name] and len(entries[name]["attributes"]) == 8, name
        else:
            assert case.reason in entries[name]["error"], (name, entries[name])
            assert name in err


def test_predict_prints_a_non_utf8_file_name_as_its_bytes(trained_run: TrainedRun, corpus, tmp_path):
    folder, _ = corpus
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # a strict UTF-8 stdout, as under many locales
    argv = cli_command("predict", trained_run.run, folder, "--workers", "0")
    result = subprocess.run(argv, capture_output=True, timeout=180, env=env)
    assert result.returncode == 1, result.stderr.decode(errors="replace")[-2000:]
    assert_no_traceback(result.stderr.decode(errors="replace"))
    assert NON_UTF8_NAME in result.stdout
    out_file = tmp_path / "tags.csv"
    assert main(["predict", str(trained_run.run), str(folder), "-o", str(out_file), "--workers", "0"]) == 1
    assert NON_UTF8_NAME in out_file.read_bytes()


@pytest.mark.timeout(180)
def test_predict_and_submit_answer_the_rest_and_name_each_special_file(trained_run: TrainedRun, special, tmp_path,
                                                                       capsys):  # fmt: skip
    folder, cases = special
    code = main(["predict", str(trained_run.run), str(folder), str(folder / "fifo.jpg"), "--format", "json",
                 "--workers", "0"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert_no_traceback(err)
    entries = json.loads(out)
    listed = [Path(entry["source"]).name for entry in entries]
    assert sorted(listed) == sorted([*(n for n in cases if n != "folder.jpg"), "fifo.jpg"])  # a folder is searched
    for entry in entries:
        assert cases[Path(entry["source"]).name].reason in entry["error"], entry
    # submit: a question whose image is a FIFO is answered uniformly and named; the good one is predicted
    root = tmp_path / "data"
    (root / "Tests").mkdir(parents=True)
    shutil.copytree(trained_run.data / "Images" / "coat_length_labels", root / "Images" / "coat_length_labels")
    good = sorted((root / "Images" / "coat_length_labels").glob("*.jpg"))[0].name
    special_file(root / "Images" / "coat_length_labels" / "fifo.jpg", "fifo")
    questions = root / "Tests" / "question.csv"
    questions.write_text(label_row(f"Images/coat_length_labels/{good}", label="?")
                         + label_row("Images/coat_length_labels/fifo.jpg", label="?"))  # fmt: skip
    answers = tmp_path / "answers.csv"
    err = refused(["submit", str(trained_run.run), str(questions), "--out", str(answers), "--workers", "0"],
                  "fifo.jpg: is a named pipe (FIFO)", code=1)  # fmt: skip
    lines = answers.read_text().splitlines()
    assert len(lines) == 2 and lines[1].endswith(";".join(["0.125"] * 8)), (lines, err)
