"""Named recipes: listed, resolved with the documented values, overridden by options, recorded in config.yaml."""

from __future__ import annotations

import pytest
import yaml

from fashionattr.cli import build_parser, main
from fashionattr.commands.grid import grid_plan
from fashionattr.config import resolve_config
from fashionattr.errors import UserError
from fashionattr.models.layouts import STUDY_ARCHS
from fashionattr.recipes import load_recipe, recipe_names


def test_recipes_lists_every_shipped_recipe_one_line_each(capsys):
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()
    assert {"cpu-demo", "fashionai", "seed-study"} <= set(recipe_names())  # the ones the README and demo name
    assert main(["recipes", "fashionai"]) == 0
    shown = capsys.readouterr().out
    assert "# cost:" in shown and "img_size: 448" in shown
    assert main(["recipes", "nonesuch"]) == 2
    assert "unknown recipe 'nonesuch'" in capsys.readouterr().err


def test_fashionai_resolves_to_its_documented_values_and_options_still_win(tmp_path):
    config = resolve_config(None, {"recipe": "fashionai", "data": "DATA"})
    assert (config.arch, config.layout, config.img_size, config.pretrained) == ("inception_resnet_v2", "multitask",
                                                                              448, True)  # fmt: skip
    assert (config.maybe_weight, config.ema_decay, config.tta, config.select_metric) == (0.3, 0.9998, True, "map")
    assert config.backbone_lr_scale == 0.1
    assert (config.flip, config.zoom) == (True, [0.85, 1.0])  # the augmentation preset, resolved
    given = tmp_path / "mine.yaml"
    given.write_text("epochs: 3\nrecipe: fashionai\n")
    config = resolve_config(given, {"data": "DATA", "img_size": 320})
    assert (config.recipe, config.epochs, config.img_size, config.arch) == ("fashionai", 3, 320, "inception_resnet_v2")
    with pytest.raises(UserError, match="unknown recipe"):
        resolve_config(None, {"recipe": "fast", "data": "DATA"})


def test_grid_with_the_seed_study_recipe_is_the_study(synthetic_data):
    args = build_parser().parse_args(["grid", str(synthetic_data), "--recipe", "seed-study"])
    base, archs, layouts = grid_plan(args)
    assert archs == list(STUDY_ARCHS) and layouts == ["per-attribute"]
    assert (base.layout, base.pretrained, base.img_size, base.optimizer, base.epochs) == ("per-attribute", True, 224,
                                                                                           "sgd", 50)  # fmt: skip
    assert (base.val_fraction, base.maybe_weight, base.ema_decay) == (0.2, 0.0, None)
    assert base.backbone_lr_scale == 1.0
    args = build_parser().parse_args(["grid", str(synthetic_data), "--recipe", "seed-study", "--archs", "resnet50"])
    assert grid_plan(args)[1] == ["resnet50"]


def test_every_shipped_recipe_resolves():
    for name in recipe_names():
        recipe = load_recipe(name)
        assert recipe.description and recipe.cost
        resolve_config(None, {"recipe": name, "data": "DATA"})


def test_config_yaml_records_the_recipe_and_every_resolved_value(synthetic_data, tmp_path, capsys):
    out = tmp_path / "run"
    quick = ["--img-size", "32", "--epochs", "1", "--max-steps-per-epoch", "1", "--attributes", "pant_length"]
    code = main(["train", str(synthetic_data), "--recipe", "cpu-demo", "--out", str(out), *quick, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["recipe"] == "cpu-demo" and saved["arch"] == "test_resnet" and saved["img_size"] == 32
    assert saved["lr"] == load_recipe("cpu-demo").settings["lr"]
    assert {"flip", "zoom", "shift", "color_jitter", "ema_decay", "maybe_weight"} <= set(saved)
