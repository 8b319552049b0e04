"""Networks: timm backbones under the seed study's names, one linear head per attribute, and the three layouts.

A layout says how attributes share backbones: `per-attribute` (one network per attribute, the seed study),
`multitask` (one backbone, a head per attribute) or `grouped` (one backbone per group of attributes, such as
design vs. length). Every model carries a JSON-friendly `spec` so a checkpoint can rebuild it without code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import safetensors.torch
import timm
import timm.data
import torch
from torch import Tensor, nn

from fashionattr.data.preprocessing import Preprocessing, resolve_preprocessing
from fashionattr.errors import UserError
from fashionattr.schema import Schema

log = logging.getLogger(__name__)

STUDY_ARCHS: tuple[str, ...] = ("resnet50", "resnet152", "se-resnet50", "se-resnet152", "vgg19_bn", "dpn131")
"""The six networks of the seed study, in the order of its result table."""

LAYOUTS = ("per-attribute", "multitask", "grouped")

# Study spellings that are not timm names. SE-ResNet152 maps to the legacy port because plain `seresnet152`
# has no ImageNet weights in timm.
_TIMM_ALIASES = {
    "se-resnet50": "seresnet50",
    "se-resnet152": "legacy_seresnet152",
    "seresnet152": "legacy_seresnet152",
}

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

# A weights file that fills less than this share of the backbone is the wrong file, not a partial fit.
MIN_LOADED_FRACTION = 0.9


def timm_model_name(arch: str) -> str:
    """The timm name for a study name (`se-resnet152` -> `legacy_seresnet152`) or any timm model name."""
    key = arch.strip().lower()
    name = _TIMM_ALIASES.get(key, key)
    if not timm.is_model(name):
        raise UserError(
            f"unknown architecture {arch!r}: use one of the study networks ({', '.join(STUDY_ARCHS)}) "
            "or any name that timm.list_models() prints"
        )
    return name


def create_backbone(
    arch: str, pretrained: bool = False, weights: str | Path | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """A timm network without its classifier, returning pooled features of size `feature_size(backbone)`.

    `weights` (a local file of the backbone's ImageNet weights) takes precedence over `pretrained` (the timm
    hub), so the same command works offline once the file is at hand.
    """
    name = timm_model_name(arch)
    use_hub = pretrained and weights is None
    try:
        backbone = timm.create_model(name, pretrained=use_hub, num_classes=0, drop_rate=drop_rate)
    except (OSError, RuntimeError) as exc:
        if not use_hub:
            raise
        raise UserError(
            f"cannot fetch pretrained weights for {arch!r} ({name}) from the timm hub: {exc}. "
            "Offline, download the weights elsewhere and pass them with --weights FILE"
        ) from None
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone


def feature_size(backbone: nn.Module) -> int:
    """Width of the pooled embedding; VGG's is its 4096-wide pre-logits layer, not `num_features`."""
    return int(getattr(backbone, "head_hidden_size", None) or cast(int, backbone.num_features))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a `.pth`/`.pt`/`.bin` or `.safetensors` file, without running code from it."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise UserError(f"{path}: weights must be a {', '.join(WEIGHT_SUFFIXES)} file; rename or convert it")
    if not path.is_file():
        raise UserError(f"{path}: weights file not found; check the --weights path")
    try:
        if path.suffix.lower() == ".safetensors":
            data: Any = safetensors.torch.load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many types for a corrupt or foreign file
        raise UserError(
            f"{path}: cannot read weights ({type(exc).__name__}: {exc}); is it a PyTorch weights file?"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise UserError(f"{path}: expected a state dict of tensors (optionally under 'state_dict' or 'model')")
    # Weights saved from a DistributedDataParallel wrapper carry a `module.` prefix.
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a file of ImageNet weights in timm's key naming, refusing one that does not fit the backbone.

    Classifier tensors and any other shape misfits are skipped, so a full ImageNet checkpoint loads into the
    headless backbone; but a file that covers under 90% of the parameters raises, because silently training
    from scratch would waste a run.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    param_sizes = {name: p.numel() for name, p in backbone.named_parameters()}
    loaded = sum(size for name, size in param_sizes.items() if name in fitting)
    total = sum(param_sizes.values())
    if total == 0 or loaded / total < MIN_LOADED_FRACTION:
        missing = [name for name in param_sizes if name not in fitting]
        raise UserError(
            f"{path}: these weights fit only {loaded / max(total, 1):.0%} of the backbone's parameters "
            f"(missing or mis-shaped: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
            "pass a weights file for this same architecture, in timm's key naming"
        )
    backbone.load_state_dict(fitting, strict=False)
    log.info(
        "loaded %d of %d tensors from %s (%.1f%% of parameters)", len(fitting), len(own), path, 100 * loaded / total
    )


def data_config(arch: str) -> dict[str, Any]:
    """Input size, interpolation and normalisation that an architecture's pretrained weights expect.

    Read from timm's pretrained config without building the network (dpn131 has its own mean and std).
    """
    name = timm_model_name(arch)
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})
    return {
        "input_size": [int(v) for v in config["input_size"]],
        "interpolation": str(config["interpolation"]),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
    }


def model_preprocessing(arch: str, img_size: int | None = None, interpolation: str | None = None) -> Preprocessing:
    """The preprocessing a model of `arch` gets: every command that trains, caches or benchmarks asks here."""
    return resolve_preprocessing(data_config(arch), img_size=img_size, interpolation=interpolation)


def _module_dict(modules: Mapping[str, nn.Module], what: str) -> nn.ModuleDict:
    """An `nn.ModuleDict`, with a user-facing error for names PyTorch cannot use as module keys."""
    for name in modules:
        if "." in name or not name:
            raise UserError(
                f"{what} name {name!r} cannot name a model part (empty or has '.'); rename it in the schema"
            )
    try:
        return nn.ModuleDict(modules)
    except KeyError as exc:
        raise UserError(f"a {what} name clashes with a PyTorch attribute ({exc}); rename it in the schema") from None


class MultiTaskNet(nn.Module):
    """One backbone shared by one linear head per attribute: one forward pass scores all its attributes."""

    spec: dict[str, Any]
    """How `create_model` built it (JSON-friendly); empty for a net built by hand."""

    def __init__(self, backbone: nn.Module, head_sizes: Mapping[str, int], drop_rate: float = 0.0) -> None:
        super().__init__()
        self.spec = {}
        if not head_sizes:
            raise ValueError("MultiTaskNet needs at least one head")
        self.backbone = backbone
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        width = feature_size(backbone)
        self.heads = _module_dict({name: nn.Linear(width, k) for name, k in head_sizes.items()}, "attribute")

    @property
    def attributes(self) -> list[str]:
        return list(self.heads.keys())

    @property
    def num_features(self) -> int:
        return feature_size(self.backbone)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled embedding (N, num_features), used for similar-garment search."""
        return self.backbone(x)

    def forward(self, x: Tensor, attribute_index: Tensor | None = None) -> dict[str, Tensor]:
        """Logits of every head for every image; `attribute_index` is accepted for the same call as `GroupedNet`."""
        features = self.dropout(self.forward_features(x))
        return {name: head(features) for name, head in self.heads.items()}


class GroupedNet(nn.Module):
    """One MultiTaskNet per group of attributes, so unrelated attributes (design vs. length) do not share features."""

    spec: dict[str, Any]

    def __init__(self, groups: Mapping[str, MultiTaskNet], attribute_order: Sequence[str]) -> None:
        super().__init__()
        self.spec = {}
        self.groups = _module_dict(groups, "group")
        owned = {name for net in groups.values() for name in net.attributes}
        self._order = [name for name in attribute_order if name in owned]
        self._group_position = {name: i for i, net in enumerate(groups.values()) for name in net.attributes}
        if len(self._order) != len(owned):
            raise ValueError(f"attribute_order misses heads: {sorted(owned - set(self._order))}")

    @property
    def attributes(self) -> list[str]:
        return list(self._order)

    @property
    def nets(self) -> list[MultiTaskNet]:
        """The groups' networks, in group order."""
        return [cast(MultiTaskNet, net) for net in self.groups.values()]

    @property
    def num_features(self) -> int:
        return sum(net.num_features for net in self.nets)

    def forward_features(self, x: Tensor) -> Tensor:
        return torch.cat([net.forward_features(x) for net in self.nets], dim=1)

    def forward(self, x: Tensor, attribute_index: Tensor | None = None) -> dict[str, Tensor]:
        """Logits per attribute. With `attribute_index` (each image's attribute, a position in `attributes`), every
        image goes through its own group's backbone only, as in training, where each image is labelled for one
        attribute: a step then costs about what a multitask step costs, and each backbone's batch-norm statistics
        come from its own group's images. Rows of other groups get zero logits, which the masked loss ignores.
        Without it, every image goes through every backbone (prediction wants every attribute).
        """
        if attribute_index is None:
            logits: dict[str, Tensor] = {}
            for net in self.nets:
                logits.update(net(x))
            return {name: logits[name] for name in self._order}
        group_of_attribute = torch.tensor([self._group_position[name] for name in self._order], device=x.device)
        group_of_row = group_of_attribute[attribute_index]
        routed: dict[str, Tensor] = {}
        for position, net in enumerate(self.nets):
            rows = (group_of_row == position).nonzero().flatten()
            if rows.numel() == 0:
                # Keep every parameter in the autograd graph (DistributedDataParallel needs that) at no cost.
                anchor = sum(p.view(-1)[0] for p in net.parameters()) * 0.0
                for name, head in net.heads.items():
                    routed[name] = x.new_zeros(x.shape[0], cast(nn.Linear, head).out_features) + anchor
                continue
            for name, value in net(x[rows]).items():
                routed[name] = value.new_zeros(x.shape[0], value.shape[1]).index_copy(0, rows, value)
        return {name: routed[name] for name in self._order}


def _select_attributes(schema: Schema, attributes: Sequence[str] | None) -> list[str]:
    """Full attribute names in schema order; short names (`coat_length`) are accepted."""
    try:
        return schema.resolve_names(None if attributes is None else list(attributes))
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; choose attributes from the schema {schema.name!r}") from None


def _plan_groups(schema: Schema, layout: str, selected: list[str], grouping: str) -> dict[str, list[str]]:
    """Which attributes each backbone serves: the model's `spec["groups"]`, one entry per backbone."""
    if layout == "per-attribute":
        if len(selected) != 1:
            raise UserError(
                f"layout 'per-attribute' builds a network for exactly one attribute, got {len(selected)}; "
                "pass a single attribute (training runs one such model per attribute)"
            )
        return {selected[0]: selected}
    if layout == "multitask":
        return {"all": selected}
    if layout == "grouped":
        try:
            partition = schema.grouping(grouping)
        except KeyError as exc:
            raise UserError(f"{exc.args[0]}; pick one of them with --grouping") from None
        groups = {group: [a for a in members if a in selected] for group, members in partition}
        groups = {group: members for group, members in groups.items() if members}
        placed = {a for members in groups.values() for a in members}
        unplaced = [a for a in selected if a not in placed]
        if unplaced:
            raise UserError(
                f"grouping {grouping!r} of schema {schema.name!r} puts no group around {', '.join(unplaced)}; "
                "add them to a group in the schema file or leave them out of the selection"
            )
        return {group: [a for a in selected if a in members] for group, members in groups.items()}
    raise UserError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")


def _build(
    timm_name: str,
    layout: str,
    groups: Mapping[str, list[str]],
    head_sizes: Mapping[str, int],
    pretrained: bool,
    weights: str | Path | None,
    drop_rate: float,
) -> MultiTaskNet | GroupedNet:
    nets = {
        group: MultiTaskNet(
            create_backbone(timm_name, pretrained=pretrained, weights=weights),
            {a: head_sizes[a] for a in members},
            drop_rate=drop_rate,
        )
        for group, members in groups.items()
    }
    if layout == "grouped":
        return GroupedNet(nets, attribute_order=list(head_sizes))
    (net,) = nets.values()
    return net


def create_model(
    arch: str,
    schema: Schema,
    layout: str = "multitask",
    attributes: Sequence[str] | None = None,
    grouping: str = "upper-lower",
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_rate: float = 0.0,
) -> MultiTaskNet | GroupedNet:
    """A network for `schema`'s attributes (all, or the selected ones) in one of `LAYOUTS`.

    `drop_rate` is applied once, just before the heads, so it means the same for every architecture.
    The returned model's `spec` attribute records all `model_from_spec` needs to rebuild it.
    """
    timm_name = timm_model_name(arch)
    selected = _select_attributes(schema, attributes)
    groups = _plan_groups(schema, layout, selected, grouping)
    head_sizes = {a: schema.attribute(a).num_classes for a in selected}
    model = _build(timm_name, layout, groups, head_sizes, pretrained, weights, drop_rate)
    model.spec = {
        "arch": arch,
        "timm_name": timm_name,
        "layout": layout,
        "grouping": grouping if layout == "grouped" else None,
        "groups": {group: list(members) for group, members in groups.items()},
        "attributes": list(selected),
        "head_sizes": head_sizes,
        "drop_rate": float(drop_rate),
        "data_config": data_config(timm_name),
    }
    return model


def model_from_spec(spec: Mapping[str, Any], schema: Schema) -> MultiTaskNet | GroupedNet:
    """Rebuild a model's architecture (random weights) from its `spec`, checking it agrees with `schema`."""
    try:
        arch, layout, groups, head_sizes = spec["arch"], spec["layout"], spec["groups"], spec["head_sizes"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"model spec lacks {exc}; the checkpoint is incomplete or from another program") from None
    if layout not in LAYOUTS:
        raise UserError(f"model spec has unknown layout {layout!r}; expected one of: {', '.join(LAYOUTS)}")
    for name, size in head_sizes.items():
        if name not in schema or schema.attribute(name).num_classes != size:
            raise UserError(
                f"model head {name!r} ({size} classes) does not match schema {schema.name!r}; "
                "use the schema the model was trained with"
            )
    timm_name = spec.get("timm_name") or timm_model_name(arch)
    model = _build(
        timm_model_name(timm_name),
        layout,
        {group: list(members) for group, members in groups.items()},
        {name: int(size) for name, size in head_sizes.items()},
        pretrained=False,
        weights=None,
        drop_rate=float(spec.get("drop_rate", 0.0)),
    )
    model.spec = dict(spec)
    return model
