"""Label review: switched labels are found from out-of-sample probabilities, `m` labels are respected, a person's
decisions go to the corrections file (the label file is never touched) and every reader of the labels applies them,
cross-validation reviews every training row once, mistakes in the options are one-line errors, and review.json is
strict JSON even where a score is undefined."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionattr.cli import main
from fashionattr.data.dataset import DatasetRoot
from fashionattr.data.labels import LabelRecord, label_string, read_labels
from fashionattr.metrics import AttributePredictions
from fashionattr.review import OutOfSample, find_issues
from fashionattr.schema import FASHIONAI
from helpers import TrainedRun, draw_pattern, make_review_folder, strict_loads

NOISE = 0.05
QUICK = ["--workers", "0", "--device", "cpu"]


def stripes_dataset(root: Path, per_class: int = 120, seed: int = 0) -> Path:
    """Stripe direction in random colours (learnt in a few epochs), 5% of the labels switched to another class.

    The true labels of the switched rows go to `flipped.csv`, as `synth --label-noise` records them.
    """
    rng = np.random.default_rng(seed)
    (root / "Annotations").mkdir(parents=True)
    (root / "schema.json").write_text(json.dumps({"name": "stripes", "attributes": [
        {"name": "direction", "classes": ["horizontal", "vertical", "diagonal"]}]}))  # fmt: skip
    rows, truth = [], []
    for target in range(3):
        for i in range(per_class):
            image = Image.new("RGB", (40, 40), tuple(int(v) for v in rng.integers(0, 256, 3)))
            draw_pattern(image, target, int(rng.integers(3, 6)), tuple(int(v) for v in rng.integers(0, 256, 3)))
            path = f"Images/direction/{target}_{i}.jpg"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / path, quality=90)
            given = target
            if rng.random() < NOISE:
                given = (target + 1 + int(rng.integers(2))) % 3
                truth.append(f"{path},direction,{label_string(target, 3)}\n")
            rows.append(f"{path},direction,{label_string(given, 3)}\n")
    (root / "Annotations" / "label.csv").write_text("".join(rows))
    (root / "flipped.csv").write_text("".join(truth))
    return root


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_switched_labels_are_found_as_candidates_and_the_label_file_is_untouched(tmp_path: Path, capsys) -> None:
    data = stripes_dataset(tmp_path / "stripes")
    labels = data / "Annotations" / "label.csv"
    before = digest(labels)
    run = tmp_path / "run"
    assert main(["train", str(data), "--arch", "test_resnet", "--img-size", "32", "--epochs", "6", "--batch-size",
                 "16", "--workers", "0", "--lr", "3e-3", "--val-fraction", "0.5", "--label-smoothing", "0",
                 "--cache", "build", "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    out, corrected = tmp_path / "review", tmp_path / "corrected.csv"
    assert main(["review", str(run), "--out", str(out), "--known-errors", str(data / "flipped.csv"),
                 "--write-corrected", str(corrected), *QUICK]) == 0  # fmt: skip
    score = json.loads((out / "review.json").read_text())["known_errors"]
    assert score["known_errors"] >= 8  # the switched rows that fell in the validation half
    assert score["precision_at_known"] >= 0.6, score
    assert score["precision"] >= 0.6 and score["recall"] >= 0.4, score
    printed = capsys.readouterr().out
    assert "precision" in printed and "candidates to check" in printed and "wrong" not in printed

    with open(out / "label_issues.csv", newline="") as handle:
        issues = list(csv.DictReader(handle))
    assert [float(row["score"]) for row in issues] == sorted((float(row["score"]) for row in issues), reverse=True)
    assert all(row["given"] != row["suggested"] for row in issues)
    page = (out / "review.html").read_text()
    assert page.count("data:image/jpeg;base64,") == len(issues) and issues[0]["path"] in page

    assert digest(labels) == before  # the label file under review is never modified
    # Nobody decided anything yet: the "corrected" copy is the label file as it is, not every suggestion applied.
    assert read_labels(corrected, DatasetRoot.open(data).schema) == read_labels(labels, DatasetRoot.open(data).schema)

    # A person who knows the truth works through the queue: accept a right suggestion, relabel a wrong one.
    from fashionattr.serve.responses import ReviewDecision
    from fashionattr.serve.review import ReviewQueueFile

    queue = ReviewQueueFile(out)
    schema = DatasetRoot.open(data).schema
    truth = {(r.path, r.attribute): r.target for r in read_labels(data / "flipped.csv", schema)}
    classes = schema.attribute("direction").classes
    for row in issues:
        true = truth.get((row["path"], row["attribute"]))
        if true is None:
            decision = ReviewDecision(path=row["path"], attribute=row["attribute"], decision="keep")
        elif classes[true] == row["suggested"]:
            decision = ReviewDecision(path=row["path"], attribute=row["attribute"], decision="accept")
        else:
            decision = ReviewDecision(path=row["path"], attribute=row["attribute"], decision="relabel",
                                      class_name=classes[true])  # fmt: skip
        queue.decide(decision)
    assert digest(labels) == before
    original = {(r.path, r.attribute): r.target for r in read_labels(labels, schema)}
    decided = {(r.path, r.attribute): r.target for r in DatasetRoot.open(data).read_labels()}
    wrong_before = sum(original[key] != target for key, target in truth.items())
    wrong_after = sum(decided[key] != target for key, target in truth.items())
    assert wrong_after < wrong_before


def reviewed(records: list[LabelRecord], probs: list[list[float]]) -> OutOfSample:
    schema = FASHIONAI.subset(["neck_design_labels"])
    k = schema.attribute("neck_design_labels").num_classes
    targets = np.array([r.target for r in records])
    predictions = AttributePredictions(np.array(probs), targets, np.zeros((len(records), k)))
    return OutOfSample(DatasetRoot(Path("."), FASHIONAI), schema, {"neck_design_labels": records},
                       {"neck_design_labels": predictions}, "made by hand")  # fmt: skip


def test_a_suggestion_the_label_marks_maybe_is_not_an_issue() -> None:
    confident = [[0.94, 0.03, 0.01, 0.01, 0.01], [0.01, 0.94, 0.03, 0.01, 0.01], [0.01, 0.03, 0.94, 0.01, 0.01]]
    records = [LabelRecord(f"clean{i}.jpg", "neck_design_labels", i % 3) for i in range(30)]
    probs = [confident[i % 3] for i in range(30)]
    doubtful = [0.03, 0.94, 0.01, 0.01, 0.01]  # the model sees class 1 where the label says 0
    plain = LabelRecord("plain.jpg", "neck_design_labels", 0)
    hedged = LabelRecord("hedged.jpg", "neck_design_labels", 0, maybe=(1,))
    issues = find_issues(reviewed([*records, plain, hedged], [*probs, doubtful, doubtful]))
    assert [issue.record.path for issue in issues] == ["plain.jpg"]
    classes = FASHIONAI.attribute("neck_design_labels").classes
    assert issues[0].given == classes[0] and issues[0].suggested == classes[1]


def test_cross_validation_reviews_every_training_row_once(trained_per_attribute_run: TrainedRun, tmp_path: Path):
    run = trained_per_attribute_run.run / "coat_length"  # one attribute's run: two short trainings
    out = tmp_path / "review"
    assert main(["review", str(run), "--split", "train", "--folds", "2", "--epochs", "1", "--out", str(out),
                 *QUICK]) == 0  # fmt: skip
    summary = json.loads((out / "review.json").read_text())
    training = [row for row in (run / "split.csv").read_text().splitlines() if row.endswith(",train")]
    assert summary["reviewed"] == len(training)
    assert "2-fold cross-validation" in summary["source"]
    for k in range(2):
        assert (out / "folds" / f"fold-{k}" / "best.pt").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "train"], "--folds"),
        (["--folds", "3"], "--split train"),
        (["--known-errors", "missing.csv"], "missing.csv"),
        (["--write-corrected", "LABELS"], "is the dataset's label file"),
    ],
)
def test_option_mistakes_are_one_line_and_exit_2(trained_run: TrainedRun, tmp_path: Path, capsys, extra, message):
    extra = [str(trained_run.data / "Annotations" / "label.csv") if e == "LABELS" else e for e in extra]
    before = digest(trained_run.data / "Annotations" / "label.csv")
    assert main(["review", str(trained_run.run), "--out", str(tmp_path / "r"), *extra, *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert digest(trained_run.data / "Annotations" / "label.csv") == before


@pytest.fixture
def dataset_copy(trained_run: TrainedRun, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(trained_run.data / "Annotations", copy / "Annotations")
    shutil.copytree(trained_run.data / "Images", copy / "Images")
    return copy


def test_decisions_are_kept_as_history_beside_the_labels_and_read_on_top_of_them(dataset_copy: Path, tmp_path):
    from fashionattr.review.issues import write_decided
    from fashionattr.serve.responses import ReviewDecision
    from fashionattr.serve.review import ReviewQueueFile

    labels = dataset_copy / "Annotations" / "label.csv"
    before = digest(labels)
    queue = ReviewQueueFile(make_review_folder(dataset_copy, tmp_path / "review"))
    first, second, third, fourth = (queue.candidates[n] for n in range(4))
    classes = [FASHIONAI.attribute(c.attribute).classes for c in (first, second, third, fourth)]
    given = {(r.path, r.attribute): r for r in read_labels(labels, FASHIONAI)}

    queue.decide(ReviewDecision(path=first.path, attribute=first.attribute, decision="accept"))
    relabelled = classes[1][-1] if classes[1][-1] != second.given else classes[1][-2]
    queue.decide(ReviewDecision(path=second.path, attribute=second.attribute, decision="relabel",
                                class_name=relabelled))  # fmt: skip
    queue.decide(ReviewDecision(path=third.path, attribute=third.attribute, decision="maybe",
                                class_name=third.suggested))  # fmt: skip
    answer = queue.decide(ReviewDecision(path=fourth.path, attribute=fourth.attribute, decision="keep"))
    assert answer.decided == 4 and queue.queue(0, 10, undecided=True).total == 0

    assert digest(labels) == before  # never edited in place
    history = (dataset_copy / "Annotations" / "corrections.csv").read_text().splitlines()
    assert history[0] == "time,path,attribute,label,decision" and len(history) == 5
    assert all(line[:4].isdigit() and line[10] == "T" and line.split(",")[0].endswith("Z") for line in history[1:])

    read = {(r.path, r.attribute): r for r in DatasetRoot.open(dataset_copy).read_labels()}
    assert classes[0][read[(first.path, first.attribute)].target] == first.suggested
    assert classes[1][read[(second.path, second.attribute)].target] == relabelled
    hedged = read[(third.path, third.attribute)]
    assert hedged.target == given[(third.path, third.attribute)].target
    assert classes[2].index(third.suggested) in hedged.maybe
    assert read[(fourth.path, fourth.attribute)] == given[(fourth.path, fourth.attribute)]

    # Deciding again replaces the decision; the history keeps both.
    queue.decide(ReviewDecision(path=first.path, attribute=first.attribute, decision="keep"))
    assert len((dataset_copy / "Annotations" / "corrections.csv").read_text().splitlines()) == 6
    again = {(r.path, r.attribute): r for r in DatasetRoot.open(dataset_copy).read_labels()}
    assert again[(first.path, first.attribute)] == given[(first.path, first.attribute)]

    exported = tmp_path / "decided.csv"
    assert write_decided(DatasetRoot.open(dataset_copy), exported) == 2  # the relabel and the 'm'
    assert read_labels(exported, FASHIONAI) == DatasetRoot.open(dataset_copy).read_labels()


def test_a_correction_of_a_row_the_labels_lack_is_refused_by_its_line(dataset_copy: Path, capsys) -> None:
    corrections = dataset_copy / "Annotations" / "corrections.csv"
    corrections.write_text("time,path,attribute,label,decision\n"
                           "2026-01-01T00:00:00Z,Images/nowhere.jpg,coat_length_labels,ynnnnnnn,relabel\n")  # fmt: skip
    assert main(["check", str(dataset_copy), "--no-images"]) == 2
    err = capsys.readouterr().err
    assert "corrections.csv:2" in err and "not a row of the label file" in err and "Traceback" not in err


def test_review_json_is_strict_when_no_known_error_was_reviewed(tmp_path):
    """review.json held NaN (not JSON) when none of the known errors fell among the reviewed rows."""
    from fashionattr.io import write_json
    from fashionattr.review.issues import ReviewScore

    score = ReviewScore(reviewed=40, known=0, flagged=0, found=0, top_known=0, right_suggestion=0)
    write_json(tmp_path / "review.json", {"known_errors": score.to_dict()})
    entry = strict_loads((tmp_path / "review.json").read_text())["known_errors"]  # type: ignore[index]
    assert entry["precision"] is None and "no row was flagged" in entry["precision_note"]
    assert entry["recall"] is None and "no known error" in entry["recall_note"]
