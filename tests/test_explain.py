"""Heatmaps: they peak on the evidence, work for every layout and study network, write files a person can look at,
refuse bad input in one line, and the pointing game scores them against the synthetic part boxes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fashionattr.checkpoint import save_checkpoint
from fashionattr.cli import main
from fashionattr.data.labels import LabelRecord
from fashionattr.data.parts import PartRow
from fashionattr.data.preprocessing import Preprocessing
from fashionattr.explain.cam import Explainer, default_layer, feature_stages
from fashionattr.explain.pointing import TOLERANCE, covered_share, letterboxed_boxes, peak_inside, photo_region, play
from fashionattr.inference.torch_backend import LoadedModel
from fashionattr.models.backbones import model_preprocessing
from fashionattr.models.layouts import STUDY_ARCHS
from fashionattr.models.networks import MultiTaskNet, create_model
from fashionattr.run_dir import RunDir
from fashionattr.schema import FASHIONAI
from helpers import PER_ATTRIBUTE, TrainedRun

SKIRT = "skirt_length_labels"


class Brightness(nn.Module):
    """A backbone whose one feature is the mean brightness: the evidence for a class is wherever the image is bright."""

    num_features = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        nn.init.constant_(self.conv.weight, 1.0 / 27)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def brightness_explainer(size: int) -> Explainer:
    net = MultiTaskNet(Brightness(), {SKIRT: 6})
    with torch.no_grad():
        net.heads[SKIRT].weight.zero_()
        net.heads[SKIRT].weight[1] = 1.0
        net.heads[SKIRT].bias.zero_()
    preprocessing = Preprocessing(img_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return Explainer([LoadedModel(net, preprocessing, [SKIRT], Path("brightness"))], FASHIONAI)


def test_heatmap_peaks_where_the_evidence_is_in_the_original_picture(tmp_path: Path) -> None:
    """A bright square in a portrait photo: after letterboxing, the map's peak falls in the square's mapped box."""
    photo = np.zeros((90, 60, 3), dtype=np.uint8)  # portrait: letterboxed with bars left and right
    square = (10.0, 60.0, 26.0, 76.0)  # x0, y0, x1, y1 in the photo's pixels
    photo[60:76, 10:26] = 255
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    explainer = brightness_explainer(size=48)
    [heatmap] = explainer.explain([explainer.load(path)], SKIRT)
    assert heatmap.cam.shape == (48, 48) and heatmap.predicted_index == 1
    boxes = letterboxed_boxes([PartRow("photo.png", SKIRT, "square", square)], (60, 90), explainer.inputs[0])
    assert boxes[0] == pytest.approx((8 + 10 * 48 / 90, 60 * 48 / 90, 8 + 26 * 48 / 90, 76 * 48 / 90))
    assert peak_inside(heatmap.peak, boxes), (heatmap.peak, boxes)
    elsewhere = letterboxed_boxes([PartRow("photo.png", SKIRT, "top", (0.0, 0.0, 60.0, 40.0))], (60, 90),
                                  explainer.inputs[0])  # fmt: skip
    assert not peak_inside(heatmap.peak, elsewhere)
    # A random peak is drawn over the photo (32 x 48 after letterboxing), not over the padding beside it.
    assert covered_share(boxes, photo_region((60, 90), explainer.inputs[0])) == pytest.approx(8.5**2 / (32 * 48),
                                                                                              abs=0.01)  # fmt: skip


def test_a_rotated_photos_part_box_lands_on_the_part(tmp_path: Path) -> None:
    """A portrait stored on its side with an EXIF rotation: its part boxes are in the upright photo's pixels, as the
    model sees it, so the peak on the bright part must be a hit, and the baseline covers the upright photo."""
    upright = np.zeros((90, 60, 3), dtype=np.uint8)  # as shown: 60 wide, 90 high
    square = (40.0, 10.0, 56.0, 26.0)
    upright[10:26, 40:56] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show"
    Image.fromarray(upright).rotate(90, expand=True).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    explainer = brightness_explainer(size=96)
    record = LabelRecord("turned.jpg", SKIRT, 1)
    parts = {("turned.jpg", SKIRT): [PartRow("turned.jpg", SKIRT, "square", square)]}
    game = play(explainer, tmp_path, [record], parts, "test", "explain")
    entry = game.attributes[SKIRT]
    assert (entry.correct, entry.hits) == (1, 1)
    margin = TOLERANCE * 96
    assert entry.chance == pytest.approx((16 * 96 / 90 + 2 * margin) ** 2 / (64 * 96), abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("arch", STUDY_ARCHS)
def test_every_study_network_gives_a_map_per_attribute(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, FASHIONAI, attributes=["coat_length_labels", "neck_design_labels"]).eval()
    loaded = LoadedModel(model, model_preprocessing(arch, 64), list(model.attributes), Path(arch))
    explainer = Explainer([loaded], FASHIONAI)
    image = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)]
    for attribute in model.attributes:
        [heatmap] = explainer.explain([image], attribute, class_index=2)
        assert heatmap.class_index == 2 and heatmap.cam.shape == (64, 64)
        assert heatmap.cam.min() >= 0.0 and heatmap.cam.max() <= 1.0 + 1e-6
    [layer] = explainer.layers_for("coat_length_labels")
    assert layer in feature_stages(model.attribute_backbone(model.attributes[0])), layer


def test_default_layer_is_the_deepest_stage_fine_enough_to_point_at_a_part() -> None:
    backbone = create_model("test_resnet", FASHIONAI).backbone
    assert default_layer(backbone, 96) == "layer2"  # 12x12; layer3 would be 6x6
    assert default_layer(backbone, 384) == "layer4"  # 12x12 at stride 32
    assert default_layer(brightness_explainer(48).models[0].model.backbone, 48) == "conv"  # no timm stages: final map


def photos(data: Path, attribute: str, count: int) -> list[Path]:
    return sorted((data / "Images" / attribute).glob("*.jpg"))[:count]


def read_index(out: Path) -> list[dict[str, str]]:
    with open(out / "heatmaps.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_explain_a_multitask_run_writes_a_heatmap_per_image_and_attribute(trained_run: TrainedRun, tmp_path: Path):
    images = photos(trained_run.data, "coat_length_labels", 2)
    out = tmp_path / "heatmaps"
    assert main(["explain", str(trained_run.run), *map(str, images), "--out", str(out), "--device", "cpu"]) == 0
    rows = read_index(out)
    assert len(rows) == 2 * len(FASHIONAI)
    assert {row["attribute"] for row in rows} == set(FASHIONAI.names)
    for row in rows:
        with Image.open(out / row["file"]) as picture:  # the 32 px input enlarged 8 times, with caption and scale
            assert picture.width >= 256 and picture.height > picture.width and picture.mode == "RGB"
            assert_ends_with_the_colour_scale(np.asarray(picture))
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 8 * 256 and sheet.height > 2 * 256
        assert_ends_with_the_colour_scale(np.asarray(sheet))


def assert_ends_with_the_colour_scale(picture: np.ndarray) -> None:
    """Near the bottom, a row runs from the scale's dark blue (low) to its dark red (high)."""
    for row in picture[::-1][:60]:
        coloured = row[(row.max(axis=1).astype(int) - row.min(axis=1)) > 60]
        if len(coloured) > 100:
            first, last = coloured[0].astype(int), coloured[-1].astype(int)
            assert first[2] > first[0] + 60 and last[0] > last[2] + 60, (first, last)
            return
    raise AssertionError("no colour scale at the bottom of the picture")


def test_contact_sheet_captions_get_the_room_they_need() -> None:
    """A long caption wraps onto more lines and its row grows by them, instead of running into the next row."""
    from fashionattr.explain.pictures import contact_sheet

    tile = np.zeros((64, 64, 3), np.uint8)
    short = contact_sheet([("a", [(tile, "Skirt length: Knee Length 18%")])] * 2, tile=128)
    long = contact_sheet([("a", [(tile, "Neckline design: Sweat Heart Neck 97% (chosen) and more words")])] * 2,
                         tile=128)  # fmt: skip
    assert long.shape[0] >= short.shape[0] + 2 * 14  # a line more in each of the two rows, 14 px type at least


def test_explain_a_per_attribute_folder(trained_per_attribute_run: TrainedRun, tmp_path: Path) -> None:
    image = photos(trained_per_attribute_run.data, "sleeve_length_labels", 1)[0]
    out = tmp_path / "heatmaps"
    assert main(["explain", str(trained_per_attribute_run.run), str(image), "--out", str(out), "--device", "cpu"]) == 0
    assert {row["attribute"] for row in read_index(out)} == set(PER_ATTRIBUTE)


def test_explain_a_grouped_model_for_a_chosen_class(synthetic_data: Path, tmp_path: Path) -> None:
    model = create_model("test_resnet", FASHIONAI, layout="grouped", grouping="design-length")
    preprocessing = model_preprocessing("test_resnet", 48)
    checkpoint = tmp_path / "grouped.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "spec": model.spec, "schema": FASHIONAI.to_dict(),
                                 "preprocessing": preprocessing.to_dict(), "attributes": FASHIONAI.names})  # fmt: skip
    image = photos(synthetic_data, "coat_length_labels", 1)[0]
    out = tmp_path / "heatmaps"
    assert main(["explain", str(checkpoint), str(image), "--attribute", "coat_length", "--class", "knee length",
                 "--out", str(out), "--method", "gradcam++", "--device", "cpu"]) == 0  # fmt: skip
    [row] = read_index(out)
    assert row["attribute"] == "coat_length_labels" and row["class"] == "Knee Length"
    design = tmp_path / "design"
    assert main(["explain", str(checkpoint), str(image), "--attribute", "neck_design", "--out", str(design),
                 "--layer", "layer3", "--device", "cpu"]) == 0  # fmt: skip
    assert read_index(design)[0]["attribute"] == "neck_design_labels"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attribute", "hat_size"], "hat_size"),
        (["--attribute", "coat_length", "--class", "Very Long"], "no class 'Very Long'"),
        (["--class", "Knee Length"], "--attribute"),
        (["--layer", "layer9"], "no layer 'layer9'"),
        (["NOT_AN_IMAGE"], "not-an-image.jpg"),
        (["--pointing-game", "--split", "test", "--data", "NOWHERE"], "NOWHERE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained_run: TrainedRun, tmp_path: Path, capsys, extra, message) -> None:
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"plain text, not a picture")
    image = str(photos(trained_run.data, "coat_length_labels", 1)[0])
    extra = [str(bad) if e == "NOT_AN_IMAGE" else str(tmp_path / "nowhere") if e == "NOWHERE" else e for e in extra]
    images = [] if "--pointing-game" in extra else [image]
    assert main(["explain", str(trained_run.run), *images, *extra, "--out", str(tmp_path / "o"), "--device",
                 "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err and message.replace("NOWHERE", "nowhere") in err, err


def test_pointing_game_scores_the_part_boxes_and_joins_the_report(trained_run: TrainedRun, tmp_path: Path, capsys):
    run = RunDir(tmp_path / "run")
    shutil.copytree(trained_run.run, run.path)
    assert main(["explain", str(run.path), "--pointing-game", "--split", "test", "--device", "cpu"]) == 0
    game = json.loads(run.pointing_game.read_text())
    assert game["split"] == "test" and game["method"] == "layercam" and game["layers"] == ["act1"]  # 16x16 at 32 px
    assert set(game["attributes"]) == set(FASHIONAI.names)
    for name, entry in game["attributes"].items():
        # Tests/ holds one image per class; every class but Invisible shows its part.
        assert entry["images"] == FASHIONAI.attribute(name).num_classes - 1
        assert 0 <= entry["hits"] <= entry["correct"] <= entry["images"]
    assert game["attributes"]["sleeve_length_labels"]["part"] == "sleeve_end"
    assert "## Where the model looks" in run.report.read_text()
    assert "pointing game %" in capsys.readouterr().out
