"""Length-safe augmentation: the letterboxed frame never leaves the picture, padding is the letterbox's, presets."""

from __future__ import annotations

import pytest
import torch
import yaml

from fashionattr.checkpoint import augmentation_of, load_checkpoint
from fashionattr.cli import main
from fashionattr.config import resolve_config
from fashionattr.data.augmentation import (
    AUGMENTATION_PRESETS,
    Augmentation,
    augment_batch,
    random_affine,
    resolve_augmentation,
)
from fashionattr.errors import UserError
from fashionattr.inference import Predictor

DRAWS = 20_000
TOLERANCE = 1e-5


def frame_corners_in_output(theta: torch.Tensor) -> torch.Tensor:
    """Where the input frame's corners (+-1, +-1) land in the output: solve theta[:, :, :2] x + t = corner."""
    corners = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    linear, shift = theta[:, :, :2].double(), theta[:, :, 2].double()
    inverse = torch.linalg.inv(linear)  # (n,2,2)
    return torch.einsum("nij,nkj->nki", inverse, corners.double()[None] - shift[:, None, :])


@pytest.mark.parametrize(
    "augmentation",
    [*AUGMENTATION_PRESETS.values(), Augmentation(zoom=(0.5, 1.0), shift=1.0), Augmentation(zoom=(0.99, 1.0))],
    ids=[*AUGMENTATION_PRESETS, "strong-zoom", "no-zoom"],
)
def test_the_letterboxed_frame_never_leaves_the_picture(augmentation: Augmentation) -> None:
    """Over many random draws, every corner of the input frame stays inside the output: no hem is ever cut."""
    theta = random_affine(DRAWS, augmentation, torch.Generator().manual_seed(1))
    corners = frame_corners_in_output(theta)
    assert corners.abs().max() <= 1.0 + TOLERANCE
    if augmentation.zoom[0] < 1.0 and augmentation.shift > 0:
        # The shift really uses the room the zoom-out leaves: some draws come close to an edge.
        assert corners.abs().amax(dim=(1, 2)).max() > 0.99


def test_content_at_the_edges_survives_and_what_comes_into_view_is_letterbox_padding() -> None:
    """A frame whose border pixels are bright keeps all of them after any draw, and the new margin is the pad."""
    images = torch.full((64, 3, 48, 48), 100.0)
    images[:, :, -2:, :] = 250.0  # the bottom rows: a hem drawn right at the edge of the letterbox
    augmentation = Augmentation(flip=True, zoom=(0.7, 0.9), shift=1.0, color_jitter=0.0)
    out = augment_batch(images, augmentation, torch.Generator().manual_seed(0), pad_value=17)
    # Zoomed out by at most 0.9: each output has a margin of pad on at least one side, never black.
    border = torch.cat([out[:, :, 0, :], out[:, :, -1, :], out[:, :, :, 0], out[:, :, :, -1]], dim=2)
    assert torch.isclose(border, torch.tensor(17.0), atol=1.0).any(dim=(1, 2)).all()
    assert out.min() >= 17.0 - 1e-3  # nothing darker than the pad came in (grid_sample's own fill is 0)
    # The bright bottom rows are still there in every image (blurred by the resampling, not cut).
    assert (out.amax(dim=(1, 2, 3)) > 200.0).all()


def test_flip_off_never_mirrors() -> None:
    images = torch.zeros(256, 3, 16, 16)
    images[:, :, :, :4] = 255.0  # bright on the left
    out = augment_batch(images, resolve_augmentation("no-flip", color_jitter=0.0), torch.Generator().manual_seed(3), 0)
    assert (out[:, :, :, :8].mean(dim=(1, 2, 3)) > out[:, :, :, 8:].mean(dim=(1, 2, 3))).all()
    flipped = augment_batch(
        images, resolve_augmentation("standard", color_jitter=0.0), torch.Generator().manual_seed(3), 0
    )
    assert (flipped[:, :, :, 8:].mean(dim=(1, 2, 3)) > flipped[:, :, :, :8].mean(dim=(1, 2, 3))).any()


def test_presets_and_settings_resolve_and_are_checked() -> None:
    assert resolve_augmentation("standard", flip=False) == AUGMENTATION_PRESETS["no-flip"]
    assert resolve_augmentation("none").is_identity
    assert resolve_augmentation("standard", zoom=[0.9, 1.0]).zoom == (0.9, 1.0)
    with pytest.raises(UserError, match="unknown augmentation preset"):
        resolve_augmentation("wild")
    with pytest.raises(UserError, match="zoom out only"):
        resolve_augmentation("standard", zoom=(0.9, 1.2))
    with pytest.raises(UserError, match="shift"):
        resolve_augmentation("standard", shift=1.5)
    config = resolve_config(None, {"data": "d", "augment": "no-flip", "zoom": "0.8,0.95", "color_jitter": 0.1})
    assert (config.flip, config.zoom, config.shift, config.color_jitter) == (False, [0.8, 0.95], 1.0, 0.1)
    with pytest.raises(UserError, match="MIN,MAX"):
        resolve_config(None, {"data": "d", "zoom": "0.8"})


def test_the_preset_reaches_config_yaml_and_the_checkpoint_and_guards_flip_tta(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    quick = ["--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "8", "--workers", "0", "--no-progress"]
    code = main(["train", str(synthetic_data), "--out", str(out), "--arch", "test_resnet", "--img-size", "32",
                 *quick, "--augment", "no-flip", "--zoom", "0.9,1", "--attributes", "coat_length"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["augment"], saved["flip"], saved["zoom"], saved["shift"]) == ("no-flip", False, [0.9, 1.0], 1.0)
    assert augmentation_of(load_checkpoint(out)) == Augmentation(flip=False, zoom=(0.9, 1.0))
    with pytest.raises(UserError, match="trained without flips"):
        Predictor.from_path(out, device="cpu", tta=True)
