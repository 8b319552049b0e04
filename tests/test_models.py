"""Backbone factory, heads and layouts: every study network builds, runs, and rebuilds from its spec."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from torch import nn

from fashionattr.errors import UserError
from fashionattr.models import backbones
from fashionattr.models.backbones import create_backbone, data_config, model_preprocessing, timm_model_name
from fashionattr.models.layouts import LAYOUTS, STUDY_ARCHS
from fashionattr.models.networks import AttributeNet, GroupedNet, MultiTaskNet, create_model, model_from_spec
from fashionattr.schema import FASHIONAI

SMALL_ARCH = "resnet18"


@functools.cache
def study_model(arch: str) -> nn.Module:
    """One multitask model per study network for the whole module: building the big ones dominates test time."""
    return create_model(arch, FASHIONAI, layout="multitask")


def forward_backward(model: nn.Module) -> dict[str, torch.Tensor]:
    """One training step's worth of work on a tiny batch; returns the logits."""
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(torch.randn(2, 3, 64, 64))
    sum(out.float().sum() for out in logits.values()).backward()
    return logits


def assert_heads(model: nn.Module, logits: dict[str, torch.Tensor], attributes: list[str]) -> None:
    assert list(logits) == attributes == model.attributes
    for name in attributes:
        assert logits[name].shape == (2, FASHIONAI.attribute(name).num_classes)
        assert torch.isfinite(logits[name]).all()


def test_study_names_map_to_timm_models() -> None:
    assert [timm_model_name(a) for a in STUDY_ARCHS] == [
        "resnet50",
        "resnet152",
        "seresnet50",
        "legacy_seresnet152",
        "vgg19_bn",
        "dpn131",
    ]
    assert timm_model_name("seresnet50") == "seresnet50"
    assert timm_model_name("seresnet152") == "legacy_seresnet152"
    assert timm_model_name("SE-ResNet50") == "seresnet50"
    assert timm_model_name("test_resnet") == "test_resnet"


def test_unknown_architecture_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"unknown architecture 'resnet9000'.*se-resnet152.*timm.list_models"):
        timm_model_name("resnet9000")


@pytest.mark.parametrize("arch", STUDY_ARCHS)
def test_study_network_multitask_trains_all_heads(arch: str) -> None:
    model = study_model(arch)
    assert isinstance(model, MultiTaskNet)
    logits = forward_backward(model)
    assert_heads(model, logits, FASHIONAI.names)
    for name, head in model.heads.items():
        assert head.out_features == FASHIONAI.attribute(name).num_classes
        assert head.weight.grad is not None
    assert model.features_and_logits(torch.randn(2, 3, 64, 64))[0].shape == (2, model.num_features)
    assert model.spec["timm_name"] == timm_model_name(arch)


@pytest.mark.parametrize("arch", STUDY_ARCHS)
def test_study_network_per_attribute_has_one_head(arch: str) -> None:
    # Reuse the cached backbone: what per-attribute adds is the single head, which create_model builds the same way.
    backbone = study_model(arch).backbone
    model = MultiTaskNet(backbone, {"neck_design_labels": 5})
    logits = forward_backward(model)
    assert_heads(model, logits, ["neck_design_labels"])


@pytest.mark.parametrize("attribute", ["sleeve_length", "skirt_length_labels"])
def test_per_attribute_layout_builds_one_head(attribute: str) -> None:
    model = create_model(SMALL_ARCH, FASHIONAI, layout="per-attribute", attributes=[attribute])
    full_name = FASHIONAI.attribute(attribute).name
    assert_heads(model, forward_backward(model), [full_name])
    assert model.spec["groups"] == {full_name: [full_name]}


def test_per_attribute_layout_needs_exactly_one_attribute() -> None:
    with pytest.raises(UserError, match="exactly one attribute, got 8"):
        create_model(SMALL_ARCH, FASHIONAI, layout="per-attribute")


@pytest.mark.parametrize(
    ("grouping", "groups"),
    [
        ("upper-lower", {"upper": 6, "lower": 2}),
        ("design-length", {"design": 4, "length": 4}),
    ],
)
def test_grouped_layout_has_one_backbone_per_group(grouping: str, groups: dict[str, int]) -> None:
    model = create_model(SMALL_ARCH, FASHIONAI, layout="grouped", grouping=grouping)
    assert isinstance(model, GroupedNet)
    assert {g: len(net.attributes) for g, net in model.groups.items()} == groups
    assert_heads(model, forward_backward(model), FASHIONAI.names)
    assert model.features_and_logits(torch.randn(2, 3, 64, 64))[0].shape == (2, 2 * 512)
    for net in model.groups.values():
        assert all(p.grad is not None for p in net.parameters())


def test_grouped_layout_drops_empty_groups_of_a_selection() -> None:
    model = create_model("test_resnet", FASHIONAI, layout="grouped", attributes=["coat_length", "collar_design"])
    assert model.spec["groups"] == {"upper": ["coat_length_labels", "collar_design_labels"]}
    model = create_model(
        "test_resnet", FASHIONAI, layout="grouped", grouping="design-length", attributes=["skirt_length", "neck_design"]
    )
    assert model.spec["groups"] == {"design": ["neck_design_labels"], "length": ["skirt_length_labels"]}
    assert list(model(torch.randn(1, 3, 64, 64))) == ["skirt_length_labels", "neck_design_labels"]


def test_bad_layout_grouping_or_attribute_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown layout 'two-headed'"):
        create_model("test_resnet", FASHIONAI, layout="two-headed")
    with pytest.raises(UserError, match="no grouping 'left-right'"):
        create_model("test_resnet", FASHIONAI, layout="grouped", grouping="left-right")
    with pytest.raises(UserError, match="unknown attribute 'hat_colour'"):
        create_model("test_resnet", FASHIONAI, attributes=["hat_colour"])


def test_preprocessing_comes_from_the_pretrained_config() -> None:
    dpn, resnet = data_config("dpn131"), data_config("resnet50")
    assert dpn["mean"] != resnet["mean"]
    assert dpn["std"] != resnet["std"]
    assert resnet["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert dpn["input_size"] == [3, 224, 224]
    assert isinstance(dpn["interpolation"], str)
    json.dumps(study_model("dpn131").spec)  # the spec must be JSON-friendly
    # The user's size and resampling win; the normalisation always comes from the weights.
    chosen = model_preprocessing("dpn131", img_size=96, interpolation="bilinear")
    assert (chosen.img_size, chosen.interpolation) == (96, "bilinear")
    assert list(chosen.mean) == pytest.approx(dpn["mean"])
    assert model_preprocessing("resnet50").interpolation == "bicubic"  # timm's config for resnet50
    assert model_preprocessing("resnet50").img_size == 224


@pytest.mark.parametrize("layout", LAYOUTS)
def test_model_from_spec_rebuilds_the_same_architecture(layout: str) -> None:
    attributes = ["pant_length"] if layout == "per-attribute" else None
    model = create_model("test_resnet", FASHIONAI, layout=layout, attributes=attributes, drop_rate=0.1)
    spec = json.loads(json.dumps(model.spec))
    rebuilt = model_from_spec(spec, FASHIONAI)
    assert type(rebuilt) is type(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert rebuilt.attributes == model.attributes
    rebuilt.load_state_dict(model.state_dict())


def test_model_from_spec_refuses_another_schema() -> None:
    spec = create_model("test_resnet", FASHIONAI, layout="multitask").spec
    spec["head_sizes"]["coat_length_labels"] = 3
    with pytest.raises(UserError, match="does not match schema 'fashionai'"):
        model_from_spec(spec, FASHIONAI)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_loads_into_a_new_model(tmp_path: Path, suffix: str, caplog: pytest.LogCaptureFixture) -> None:
    source = timm.create_model(SMALL_ARCH, num_classes=1000)  # a full ImageNet-shaped checkpoint, classifier included
    path = tmp_path / f"imagenet{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    with caplog.at_level(logging.INFO, logger="fashionattr.models.backbones"):
        model = create_model(SMALL_ARCH, FASHIONAI, layout="multitask", weights=path)
    assert "loaded" in caplog.text
    for name, tensor in model.backbone.state_dict().items():
        torch.testing.assert_close(tensor, source.state_dict()[name], rtol=0, atol=0)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    with pytest.raises(UserError, match=r"wrong\.pth: these weights fit only .*layer1\.0\.conv1\.weight"):
        create_backbone(SMALL_ARCH, weights=path)


def test_unreadable_weights_are_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        create_backbone("test_resnet", weights=tmp_path / "missing.pth")
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(UserError, match="must be a"):
        create_backbone("test_resnet", weights=tmp_path / "weights.txt")
    (tmp_path / "garbage.pth").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot read weights"):
        create_backbone("test_resnet", weights=tmp_path / "garbage.pth")


def test_hub_failure_says_to_use_a_weights_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> nn.Module:
        raise OSError("Name or service not known")

    monkeypatch.setattr(backbones.timm, "create_model", offline)
    with pytest.raises(UserError, match="--weights FILE"):
        create_backbone("resnet50", pretrained=True)


def test_drop_rate_adds_dropout_before_heads() -> None:
    model = create_model("test_resnet", FASHIONAI, drop_rate=0.5)
    assert isinstance(model.dropout, nn.Dropout)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x)["coat_length_labels"], model(x)["coat_length_labels"])


def test_grouped_training_sends_each_image_through_its_own_groups_backbone_only() -> None:
    torch.manual_seed(0)
    model = create_model("test_resnet", FASHIONAI, layout="grouped", grouping="design-length").eval()
    seen: dict[str, list[int]] = {}
    for name, net in model.groups.items():
        net.backbone.register_forward_hook(
            lambda _m, args, _o, name=name: seen.setdefault(name, []).append(len(args[0]))
        )
    attributes = model.attributes
    images = torch.randn(6, 3, 32, 32)
    design = [attributes.index("collar_design_labels"), attributes.index("neck_design_labels")]
    attribute_index = torch.tensor([design[0], design[1], design[0], attributes.index("pant_length_labels"),
                                    attributes.index("skirt_length_labels"), design[1]])  # fmt: skip
    routed = model(images, attribute_index)
    assert sorted(seen.items()) == [("design", [4]), ("length", [2])]
    full = model(images)  # prediction: every image through every backbone
    for row, position in enumerate(attribute_index.tolist()):
        name = attributes[position]
        torch.testing.assert_close(routed[name][row], full[name][row])
    # A batch with no image of a group still keeps that group's parameters in the graph (DDP needs that).
    only_design = torch.tensor([design[0]] * 3)
    logits = model.train()(images[:3], only_design)
    sum(value.sum() for value in logits.values()).backward()
    assert all(p.grad is not None for p in model.groups["length"].parameters())


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_implements_the_network_interface(layout: str) -> None:
    """What training, inference, export, heatmaps and the optimiser rely on, for every layout in the table."""
    torch.manual_seed(0)
    attributes = ["collar_design_labels"] if LAYOUTS[layout].one_model_per_attribute else None
    model = create_model("test_resnet", FASHIONAI, layout=layout, attributes=attributes).eval()
    assert isinstance(model, AttributeNet)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features, logits = model.features_and_logits(images)
        plain = model(images)
    assert features.shape == (3, model.num_features)
    assert list(logits) == model.attributes == list(plain)
    for name in model.attributes:
        torch.testing.assert_close(logits[name], plain[name])
        with torch.no_grad():
            torch.testing.assert_close(model.attribute_network(name)(images), plain[name])
        backbone = model.attribute_backbone(name)
        assert any(backbone is module for module in model.modules())
    roles = {id(parameter): role for _, parameter, role in model.named_parameter_roles()}
    assert set(roles) == {id(parameter) for parameter in model.parameters()}
    backbone_ids = {id(p) for name in model.attributes for p in model.attribute_backbone(name).parameters()}
    assert {pid for pid, role in roles.items() if role == "backbone"} == backbone_ids


def test_unknown_layout_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown layout 'shared'; choose one of: per-attribute, multitask, grouped"):
        create_model("test_resnet", FASHIONAI, layout="shared")
