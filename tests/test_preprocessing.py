"""One owner for input pixels: every path that feeds a model sees the same uint8 image, and answers agree.

Training's dataset, the image cache, the `Predictor` (predict, submit, catalogue) and the service all decode and
letterbox through `load_letterboxed`; `evaluate --save-predictions`, `submit` and `submit` on the exported ONNX
model then give the same probabilities for the same images.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionattr.cli import main
from fashionattr.data.cache import build_cache, open_cache
from fashionattr.data.labels import label_string, read_labels
from fashionattr.data.preprocessing import Preprocessing, resolve_preprocessing
from fashionattr.data.torch_dataset import LabelledImages
from fashionattr.errors import UserError
from fashionattr.inference import Predictor
from fashionattr.inference.predictor import _ImageFiles
from fashionattr.inference.torch_backend import LoadedModel, TorchBackend
from fashionattr.models.networks import create_model
from fashionattr.schema import FASHIONAI
from fashionattr.serve.uploads import Upload, decode_uploads
from fashionattr.submission import read_submission

ATTRIBUTES = ["coat_length_labels", "collar_design_labels"]


def photo(seed: int, size: tuple[int, int] = (512, 682)) -> Image.Image:
    """A product-photo-like picture: smooth shading plus sharp shapes, so resampling differences would show."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) * 255 // (width + height))], axis=-1)
    pixels = (base + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)
    for _ in range(6):
        top, left = int(rng.integers(0, height - 60)), int(rng.integers(0, width - 60))
        pixels[top : top + 50, left : left + 50] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels)


def save(image: Image.Image, path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        image.save(path, format="PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(path, format="JPEG", quality=90)
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
        image.transpose(Image.Transpose.ROTATE_90).save(path, format="JPEG", quality=90, exif=exif.tobytes())
    else:
        image.save(path, format="JPEG", quality=90)


KINDS = ["jpeg", "png", "exif", "cmyk"]


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image of each kind (512x682 JPEG, PNG, EXIF-rotated JPEG, CMYK JPEG), labelled for coat length."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    rows = []
    for number, kind in enumerate(KINDS):
        rel = f"Images/coat_length_labels/{kind}.{'png' if kind == 'png' else 'jpg'}"
        save(photo(number), root / rel, kind)
        rows.append(f"{rel},coat_length_labels,{label_string(number, 8)}")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "label.csv").write_text("\n".join(rows) + "\n")
    return root


def test_every_path_sees_bit_identical_input_pixels(mixed_dataset: Path) -> None:
    preprocessing = Preprocessing(img_size=224, interpolation="bicubic")
    records = read_labels(mixed_dataset / "Annotations" / "label.csv", FASHIONAI)
    paths = [r.path for r in records]
    training = LabelledImages(mixed_dataset, records, FASHIONAI, ["coat_length_labels"], preprocessing)
    cache = build_cache(mixed_dataset, paths, preprocessing, workers=1, progress=False)
    cached = LabelledImages(mixed_dataset, records, FASHIONAI, ["coat_length_labels"], preprocessing, cache)
    model = create_model("test_resnet", FASHIONAI, attributes=["coat_length_labels"])
    predictor = Predictor(TorchBackend([LoadedModel(model, preprocessing, ["coat_length_labels"], Path("m"))]),
                          FASHIONAI)  # fmt: skip
    files = _ImageFiles([mixed_dataset / p for p in paths], predictor.inputs)
    for index, path in enumerate(paths):
        file = mixed_dataset / path
        reference = training[index]["image"]
        assert reference.shape == (3, 224, 224) and reference.dtype == torch.uint8
        assert torch.equal(cached[index]["image"], reference), f"cache differs for {path}"
        assert torch.equal(predictor.load(file)[0], reference), f"Predictor.load differs for {path}"
        assert torch.equal(files[index]["images"][0], reference), f"predict's loader differs for {path}"
        [upload] = asyncio.run(decode_uploads([Upload(path, file.read_bytes())], predictor.load, asyncio.Semaphore(1)))
        assert torch.equal(upload[0], reference), f"the service differs for {path}"
    # The EXIF-rotated photo arrives upright (portrait), like the plain one: same content box.
    exif, plain = training[KINDS.index("exif")]["image"], training[KINDS.index("jpeg")]["image"]
    assert (exif.float() - plain.float()).abs().mean() < 8


def test_preprocessing_is_resolved_from_the_model_config_with_overrides() -> None:
    config = {"input_size": [3, 288, 288], "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.25] * 3}
    resolved = resolve_preprocessing(config)
    assert (resolved.img_size, resolved.interpolation, resolved.mean) == (288, "bicubic", (0.5, 0.5, 0.5))
    assert resolve_preprocessing(config, img_size=96, interpolation="bilinear").describe() == "96 px, bilinear"
    assert Preprocessing.from_dict(resolved.to_dict()) == resolved
    legacy = {"img_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    assert Preprocessing.from_dict(legacy).pad_value == 0  # checkpoints from before the pad was recorded
    with pytest.raises(UserError, match="interpolation"):
        Preprocessing(interpolation="cubic-spline")


@pytest.fixture(scope="module")
def tall_jpeg_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run at 224 px on 512x682 JPEGs (two attributes, a split of its own), trained for one step."""
    root = tmp_path_factory.mktemp("tall") / "data"
    rows = []
    for number in range(48):
        attribute = ATTRIBUTES[number % 2]
        classes = FASHIONAI.attribute(attribute).num_classes
        rel = f"Images/{attribute}/{number:03d}.jpg"
        save(photo(100 + number), root / rel, "jpeg")
        rows.append(f"{rel},{attribute},{label_string(number % classes, classes)}")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "label.csv").write_text("\n".join(rows) + "\n")
    run = root.parent / "run"
    assert main(["train", str(root), "--out", str(run), "--arch", "test_resnet", "--img-size", "224",
                 "--attributes", ",".join(ATTRIBUTES), "--epochs", "1", "--max-steps-per-epoch", "1",
                 "--batch-size", "8", "--workers", "0", "--no-progress", "--cache", "off"]) == 0  # fmt: skip
    return root, run


def probabilities(path: Path) -> dict[tuple[str, str], np.ndarray]:
    return {(p, a): v for p, a, v in read_submission(path, FASHIONAI)}


def test_evaluate_submit_and_onnx_give_the_same_probabilities(tall_jpeg_run, tmp_path, capsys) -> None:
    root, run = tall_jpeg_run
    evaluated = tmp_path / "evaluate.csv"
    assert main(["evaluate", str(run), "--save-predictions", str(evaluated), "--workers", "0"]) == 0
    expected = probabilities(evaluated)
    assert len(expected) == sum(1 for line in (run / "split.csv").read_text().splitlines() if line.endswith(",val"))

    questions = root / "Tests" / "question.csv"
    questions.parent.mkdir()
    questions.write_text("".join(f"{path},{attribute},?\n" for path, attribute in expected))
    torch_answers, onnx_answers, model = tmp_path / "torch.csv", tmp_path / "onnx.csv", tmp_path / "model.onnx"
    common = ["--workers", "0", "--batch-size", "5"]
    assert main(["submit", str(run), str(questions), "--out", str(torch_answers), *common]) == 0
    assert main(["export", str(run), "--out", str(model)]) == 0
    assert main(["submit", str(model), str(questions), "--out", str(onnx_answers), *common]) == 0
    capsys.readouterr()
    for answers, tolerance in ((torch_answers, 1e-5), (onnx_answers, 1e-4)):
        got = probabilities(answers)
        assert got.keys() == expected.keys()
        worst = max(float(np.abs(got[key] - expected[key]).max()) for key in expected)
        assert worst <= tolerance, f"{answers.name}: differs from evaluate by {worst:.2e}"


def test_prepare_builds_the_cache_train_reads_and_a_mismatch_is_explained(synthetic_data, tmp_path, capsys):
    common = ["--arch", "test_resnet", "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "8",
              "--workers", "0", "--no-progress", "--attributes", "skirt_length"]  # fmt: skip
    assert main(["prepare", str(synthetic_data), "--size", "40", "--arch", "test_resnet", "--workers", "1"]) == 0
    out = tmp_path / "matching"
    assert main(["train", str(synthetic_data), "--out", str(out), "--img-size", "40", *common]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["image_cache"] and summary["image_cache"].endswith("letterbox-40-bilinear")
    assert "note:" not in capsys.readouterr().out

    out = tmp_path / "mismatching"
    assert main(["train", str(synthetic_data), "--out", str(out), "--img-size", "40", "--interpolation", "bicubic",
                 *common]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    [note] = [line for line in printed.splitlines() if line.startswith("note:")]
    assert "letterbox-40-bilinear" in note and "letterbox-40-bicubic" in note
    assert f"fashionattr prepare {synthetic_data} --size 40 --interpolation bicubic" in note
    assert json.loads((out / "summary.json").read_text())["image_cache"] is None
    # The command the note gives builds exactly the cache that run reads.
    assert main(["prepare", str(synthetic_data), "--size", "40", "--interpolation", "bicubic", "--workers", "1"]) == 0
    records = read_labels(synthetic_data / "Annotations" / "label.csv", FASHIONAI)
    paths = [r.path for r in records if r.attribute == "skirt_length_labels"]
    assert open_cache(synthetic_data, paths, Preprocessing(img_size=40, interpolation="bicubic")) is not None


def test_a_photo_decoded_in_memory_matches_the_file(mixed_dataset: Path) -> None:
    """Bytes (an upload) and the path of the same file go through the same decoder: no difference at all."""
    preprocessing = Preprocessing(img_size=96)
    path = mixed_dataset / "Images" / "coat_length_labels" / "jpeg.jpg"
    buffer = io.BytesIO(path.read_bytes())
    from fashionattr.data.preprocessing import load_letterboxed

    assert np.array_equal(load_letterboxed(buffer.getvalue(), preprocessing), load_letterboxed(path, preprocessing))


def test_an_augmentation_recorded_before_a_field_existed_still_loads() -> None:
    """A checkpoint keeps the augmentation it was trained with; one written before a setting was added loads with
    that setting's default, and every setting it does record is kept."""
    from fashionattr.data.augmentation import Augmentation

    recorded = Augmentation(flip=False, zoom=(0.9, 1.0), shift=0.5, color_jitter=0.1).to_dict()
    assert Augmentation.from_dict(recorded) == Augmentation(flip=False, zoom=(0.9, 1.0), shift=0.5, color_jitter=0.1)
    older = {key: value for key, value in recorded.items() if key != "color_jitter"}
    assert Augmentation.from_dict(older) == Augmentation(flip=False, zoom=(0.9, 1.0), shift=0.5)
    newer = {**recorded, "a_setting_of_a_later_version": 3}
    assert Augmentation.from_dict(newer) == Augmentation.from_dict(recorded)
