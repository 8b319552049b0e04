"""The synthetic garment generator: FashionAI layout, determinism, the `m` rate, no colour shortcut, the command."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashionattr.cli import main
from fashionattr.data.labels import read_labels, read_questions
from fashionattr.data.parts import read_parts
from fashionattr.schema import FASHIONAI
from fashionattr.synthetic.generate import draw_preview, generate_dataset, render_sample
from fashionattr.synthetic.scenes import LENGTH_TABLES, PARTNERS, SCENES


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One mid-sized dataset shared by the layout, `m` rate and colour-shortcut tests."""
    root = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(root, per_class=40, size=128, seed=3, workers=2, progress=False)
    return root, summary


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tables_cover_the_schema() -> None:
    """Every class the drawing tables name exists in the schema, and every length class has a landmark."""
    assert set(SCENES) == set(FASHIONAI.names)
    for name, table in LENGTH_TABLES.items():
        assert set(table) == set(FASHIONAI.attribute(name).classes) - {"Invisible"}
    for name, partners in PARTNERS.items():
        classes = set(FASHIONAI.attribute(name).classes)
        assert set(partners) <= classes and set(partners.values()) <= classes


def test_render_sample_every_class() -> None:
    for attr in FASHIONAI:
        for target in range(attr.num_classes):
            image, maybe = render_sample(attr.name, target, np.random.default_rng(target), size=64)
            assert image.mode == "RGB" and image.width == 64 and image.height in (64, 85)
            assert target not in maybe and all(0 < m < attr.num_classes for m in maybe)
    with pytest.raises(ValueError):
        render_sample("skirt_length_labels", 6, np.random.default_rng(0))


def test_same_seed_same_files_different_seed_differs(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", per_class=2, size=64, seed=1, workers=2, progress=False)
    b = generate_dataset(tmp_path / "b", per_class=2, size=64, seed=1, workers=1, progress=False)
    c = generate_dataset(tmp_path / "c", per_class=2, size=64, seed=2, workers=1, progress=False)
    labels_a = Path(a["labels"]).read_bytes()
    assert labels_a == Path(b["labels"]).read_bytes()
    assert labels_a != Path(c["labels"]).read_bytes()
    rows = [line.split(",")[0] for line in labels_a.decode().splitlines()]
    for rel in rows[:: max(1, len(rows) // 6)]:
        assert _digest(tmp_path / "a" / rel) == _digest(tmp_path / "b" / rel)
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "a").rglob("*"))


def test_layout(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    records = read_labels(root / "Annotations" / "label.csv", FASHIONAI)
    for attr in FASHIONAI:
        targets = {r.target for r in records if r.attribute == attr.name}
        assert targets == set(range(attr.num_classes)), attr.name
    for rec in records[::97]:
        assert rec.path.startswith(f"Images/{rec.attribute}/") and rec.path.endswith(".jpg")
        assert len(Path(rec.path).stem) == 32
        with Image.open(root / rec.path) as image:
            image.load()
            assert image.format == "JPEG" and image.mode == "RGB" and image.width == 128
    questions = read_questions(root / "Tests" / "question.csv", FASHIONAI)
    answers = read_labels(root / "Tests" / "answers.csv", FASHIONAI)
    assert [(q.path, q.attribute) for q in questions] == [(a.path, a.attribute) for a in answers]
    assert len(answers) == sum(4 * a.num_classes for a in FASHIONAI)  # 10% of 40 per class
    assert len(records) == summary["train"] == sum(36 * a.num_classes for a in FASHIONAI)
    assert not {r.path for r in records} & {a.path for a in answers}
    assert all((root / a.path).is_file() for a in answers)


def test_part_boxes_mark_the_labelled_part(dataset: tuple[Path, dict]) -> None:
    """Every visible part has a box inside its image; Invisible has none; a longer class's hem box sits lower."""
    root, _ = dataset
    for labels, parts in (("Annotations/label.csv", "Annotations/parts.csv"), ("Tests/answers.csv", "Tests/parts.csv")):
        records = read_labels(root / labels, FASHIONAI)
        boxes = read_parts(root / parts)
        for record in records:
            rows = boxes.get((record.path, record.attribute), [])
            assert bool(rows) == (record.target != 0), (record, rows)  # class 0 is Invisible
            if record.attribute == "sleeve_length_labels" and rows:
                assert len(rows) == 2  # both sleeve ends
        for rows in list(boxes.values())[::50]:
            with Image.open(root / rows[0].path) as image:
                width, height = image.size
            assert all(0 <= r.box[0] < r.box[2] <= width and 0 <= r.box[1] < r.box[3] <= height for r in rows)
    records = read_labels(root / "Annotations" / "label.csv", FASHIONAI)
    boxes = read_parts(root / "Annotations" / "parts.csv")
    skirt = FASHIONAI.attribute("skirt_length_labels")
    order = [skirt.class_index(name) for name in ("Short Length", "Knee Length", "Midi Length", "Ankle Length")]
    centres = []
    for target in order:
        rows = [boxes[(r.path, r.attribute)][0] for r in records if r.attribute == skirt.name and r.target == target]
        assert {row.part for row in rows} == {"hem"}
        centres.append(np.median([(row.box[1] + row.box[3]) / 2 for row in rows]))
    assert centres == sorted(centres), centres


def test_label_noise_switches_the_share_asked_for_and_records_the_truth(tmp_path: Path) -> None:
    two = ["skirt_length", "neck_design"]
    clean = generate_dataset(tmp_path / "clean", per_class=10, size=32, seed=4, workers=1, progress=False,
                             attributes=two)  # fmt: skip
    noisy = generate_dataset(tmp_path / "noisy", per_class=10, size=32, seed=4, workers=1, progress=False,
                             label_noise=0.1, attributes=two)  # fmt: skip
    truth = {(r.path, r.attribute): r for r in read_labels(clean["labels"], FASHIONAI)}
    given = read_labels(noisy["labels"], FASHIONAI)
    switched = {(r.path, r.attribute) for r in given if r.target != truth[(r.path, r.attribute)].target}
    assert len(switched) == noisy["flipped"] == round(0.1 * len(given))
    flipped = read_labels(tmp_path / "noisy" / "Annotations" / "flipped.csv", FASHIONAI)
    assert {(r.path, r.attribute) for r in flipped} == switched
    assert all(truth[(r.path, r.attribute)].target == r.target for r in flipped)
    assert {r.attribute for r in given} == {"skirt_length_labels", "neck_design_labels"}
    generate_dataset(tmp_path / "full", per_class=1, size=32, seed=4, workers=1, progress=False,
                     test_fraction=0.0)  # fmt: skip
    some = read_labels(tmp_path / "clean" / "Annotations" / "label.csv", FASHIONAI)[0]
    assert (tmp_path / "full" / some.path).read_bytes() == (tmp_path / "clean" / some.path).read_bytes()


def test_maybe_rate(dataset: tuple[Path, dict]) -> None:
    root, summary = dataset
    records = read_labels(root / "Annotations" / "label.csv", FASHIONAI)
    rate = sum(bool(r.maybe) for r in records) / len(records)
    assert 0.02 <= rate <= 0.05
    assert summary["m_rate"] == pytest.approx(rate)
    assert not any(0 in r.maybe for r in records)  # Invisible is never a 'maybe'


def _colour_histograms(root: Path, paths: list[str]) -> np.ndarray:
    """4x4x4 RGB histograms, normalised: what a classifier sees when it only looks at global colour."""
    features = []
    for rel in paths:
        with Image.open(root / rel) as image:
            arr = np.asarray(image.convert("RGB"), dtype=np.int64) // 64
        counts = np.bincount((arr[..., 0] * 16 + arr[..., 1] * 4 + arr[..., 2]).ravel(), minlength=64)
        features.append(counts / counts.sum())
    return np.asarray(features)


def _logistic_regression_cv(x: np.ndarray, y: np.ndarray, k: int, folds: int = 5) -> float:
    """Held-out accuracy of a softmax regression on standardised features, by k-fold cross-validation."""
    order = np.random.default_rng(0).permutation(len(y))
    accuracies = []
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        xtr, xte = (x[train] - mean) / std, (x[test] - mean) / std
        w, b, onehot = np.zeros((x.shape[1], k)), np.zeros(k), np.eye(k)[y[train]]
        for _ in range(300):
            z = xtr @ w + b
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            grad = (p - onehot) / len(train)
            w -= 0.5 * (xtr.T @ grad + 1e-2 * w)
            b -= 0.5 * grad.sum(0)
        accuracies.append(float(((xte @ w + b).argmax(1) == y[test]).mean()))
    return float(np.mean(accuracies))


def test_class_not_readable_from_global_colour(dataset: tuple[Path, dict]) -> None:
    """A colour-histogram classifier must do little better than chance: the class lives in shapes, not colours."""
    root, _ = dataset
    records = read_labels(root / "Annotations" / "label.csv", FASHIONAI)
    scores = {}
    for attr in FASHIONAI:
        rows = [r for r in records if r.attribute == attr.name]
        x = _colour_histograms(root, [r.path for r in rows])
        y = np.array([r.target for r in rows])
        scores[attr.short_name] = (_logistic_regression_cv(x, y, attr.num_classes), 1 / attr.num_classes)
    failing = {
        name: f"{acc:.2f} (chance {chance:.2f})" for name, (acc, chance) in scores.items() if acc > chance + 0.10
    }
    assert not failing, f"class readable from colour alone: {failing}"


def test_preview(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    draw_preview(out, per_class=1, size=48)
    with Image.open(out) as sheet:
        assert sheet.format == "PNG"
        assert sheet.width >= max(FASHIONAI.num_classes) * 48
        assert sheet.height >= len(FASHIONAI) * 48


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    assert main(["synth", "--out", str(out), "--per-class", "3", "--size", "64", "--workers", "1", "--quiet"]) == 0
    assert len(read_labels(out / "Annotations" / "label.csv", FASHIONAI)) == 3 * sum(FASHIONAI.num_classes)
    printed = capsys.readouterr().out
    assert "wrote" in printed and "Tests/ holds no question; give --per-class 5 or more" in printed
    preview = tmp_path / "p.png"
    assert main(["synth", "--preview", str(preview), "--size", "48"]) == 0 and preview.is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["synth"],
        ["synth", "--out", "x", "--per-class", "0"],
        ["synth", "--out", "x", "--size", "8"],
        ["synth", "--out", "x", "--test-fraction", "1.5"],
        ["synth", "--out", "x", "--per-class", "1", "--test-fraction", "0.9"],
        ["synth", "--preview", "sheet.jpg"],
    ],
)
def test_cli_bad_usage(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path / a) if a in ("x", "sheet.jpg") else a for a in argv]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err
