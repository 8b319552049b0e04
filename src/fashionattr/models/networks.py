"""Networks: one linear head per attribute on timm backbones, built in one of the layouts.

Every network is an `AttributeNet`: training, inference, export, heatmaps and the optimiser ask it for its logits,
its features, the part that answers one attribute and its parameters by role, and never look inside it. Every model
carries a JSON-friendly `spec` so a checkpoint can rebuild it without code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from fashionattr.errors import UserError
from fashionattr.models.backbones import create_backbone, data_config, feature_size, timm_model_name
from fashionattr.models.layouts import LAYOUTS, layout_of
from fashionattr.schema import Schema


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


class Logits(dict[str, Tensor]):
    """Each attribute's logits, by attribute name; `applicability` holds the applicability head's logits (N, A), one
    column per attribute in `AttributeNet.attributes` order, for networks that have that head (else None)."""

    applicability: Tensor | None = None


def _logits(values: Mapping[str, Tensor], applicability: Tensor | None) -> Logits:
    logits = Logits(values)
    logits.applicability = applicability
    return logits


class AttributeNet(nn.Module):
    """What every network of the project offers; code outside this module uses only these members.

    `forward(x, attribute_index)` gives `Logits` per attribute; with `attribute_index` (each image's own attribute,
    a position in `attributes`) a network may answer only each image's own attribute, as training needs.
    """

    def forward(self, x: Tensor, attribute_index: Tensor | None = None) -> Logits:
        raise NotImplementedError

    spec: dict[str, Any]
    """How `create_model` built it (JSON-friendly); empty for a net built by hand."""

    @property
    def attributes(self) -> list[str]:
        """The attributes it answers, in schema order."""
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        """Width of the embedding `features_and_logits` returns."""
        raise NotImplementedError

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The pooled embedding (N, num_features) and every attribute's logits, from one pass of each backbone."""
        raise NotImplementedError

    def attribute_network(self, attribute: str) -> nn.Module:
        """A module from normalised images to `attribute`'s logits (N, K) that runs only the backbone answering it."""
        raise NotImplementedError

    def attribute_backbone(self, attribute: str) -> nn.Module:
        """The backbone whose layers hold `attribute`'s evidence (heatmaps read their maps from it)."""
        raise NotImplementedError

    def named_parameter_roles(self) -> Iterator[tuple[str, nn.Parameter, str]]:
        """(name, parameter, role) for every parameter, role `backbone` or `head` (the optimiser scales by role)."""
        raise NotImplementedError

    def applicability_head(self) -> nn.Linear | None:
        """The linear layer on the pooled features that training teaches which attributes an image shows (one output
        per attribute), or None for a network without one."""
        return None


class _HeadOnBackbone(nn.Module):
    """One attribute's head on its backbone: the single-output network a heatmap method needs."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class MultiTaskNet(AttributeNet):
    """One backbone shared by one linear head per attribute: one forward pass scores all its attributes."""

    def __init__(self, backbone: nn.Module, head_sizes: Mapping[str, int], drop_rate: float = 0.0,
                 applicability: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.spec = {}
        if not head_sizes:
            raise ValueError("MultiTaskNet needs at least one head")
        self.backbone = backbone
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        width = feature_size(backbone)
        self.heads = _module_dict({name: nn.Linear(width, k) for name, k in head_sizes.items()}, "attribute")
        self.applicability = nn.Linear(width, len(head_sizes)) if applicability else None

    @property
    def attributes(self) -> list[str]:
        return list(self.heads.keys())

    @property
    def num_features(self) -> int:
        return feature_size(self.backbone)

    def forward(self, x: Tensor, attribute_index: Tensor | None = None) -> Logits:
        """Logits of every head for every image; `attribute_index` is accepted for the same call as `GroupedNet`."""
        return self.features_and_logits(x)[1]

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Logits]:
        features = self.backbone(x)
        dropped = self.dropout(features)
        applicability = self.applicability(features) if self.applicability is not None else None
        return features, _logits({name: head(dropped) for name, head in self.heads.items()}, applicability)

    def applicability_head(self) -> nn.Linear | None:
        return self.applicability

    def attribute_network(self, attribute: str) -> nn.Module:
        return _HeadOnBackbone(self.backbone, self.heads[attribute])

    def attribute_backbone(self, attribute: str) -> nn.Module:
        self.heads[attribute]
        return self.backbone

    def named_parameter_roles(self) -> Iterator[tuple[str, nn.Parameter, str]]:
        for name, parameter in self.named_parameters():
            yield name, parameter, "backbone" if name.startswith("backbone.") else "head"


class GroupedNet(AttributeNet):
    """One MultiTaskNet per group of attributes, so unrelated attributes (design vs. length) do not share features."""

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

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Logits]:
        features: list[Tensor] = []
        logits: dict[str, Tensor] = {}
        for net in self.nets:
            pooled, net_logits = net.features_and_logits(x)
            features.append(pooled)
            logits.update(net_logits)
        return torch.cat(features, dim=1), _logits({name: logits[name] for name in self._order}, None)

    def _net_for(self, attribute: str) -> MultiTaskNet:
        return self.nets[self._group_position[attribute]]

    def attribute_network(self, attribute: str) -> nn.Module:
        return self._net_for(attribute).attribute_network(attribute)

    def attribute_backbone(self, attribute: str) -> nn.Module:
        return self._net_for(attribute).attribute_backbone(attribute)

    def named_parameter_roles(self) -> Iterator[tuple[str, nn.Parameter, str]]:
        for group, net in self.groups.items():
            for name, parameter, role in cast(MultiTaskNet, net).named_parameter_roles():
                yield f"groups.{group}.{name}", parameter, role

    def forward(self, x: Tensor, attribute_index: Tensor | None = None) -> Logits:  # type: ignore[override]
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
            return _logits({name: logits[name] for name in self._order}, None)
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
        return _logits({name: routed[name] for name in self._order}, None)


def _select_attributes(schema: Schema, attributes: Sequence[str] | None) -> list[str]:
    """Full attribute names in schema order; short names (`coat_length`) are accepted."""
    try:
        return schema.resolve_names(None if attributes is None else list(attributes))
    except KeyError as exc:
        raise UserError(f"{exc.args[0]}; choose attributes from the schema {schema.name!r}") from None


def _plan_groups(schema: Schema, layout: str, selected: list[str], grouping: str) -> dict[str, list[str]]:
    """Which attributes each backbone serves: the model's `spec["groups"]`, one entry per backbone."""
    if layout_of(layout).one_model_per_attribute:
        if len(selected) != 1:
            raise UserError(
                f"layout 'per-attribute' builds a network for exactly one attribute, got {len(selected)}; "
                "pass a single attribute (training runs one such model per attribute)"
            )
        return {selected[0]: selected}
    if layout_of(layout).uses_grouping:
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
    return {"all": selected}


def _build(
    timm_name: str,
    layout: str,
    groups: Mapping[str, list[str]],
    head_sizes: Mapping[str, int],
    pretrained: bool,
    weights: str | Path | None,
    drop_rate: float,
    applicability: bool = False,
) -> AttributeNet:
    nets = {
        group: MultiTaskNet(
            create_backbone(timm_name, pretrained=pretrained, weights=weights),
            {a: head_sizes[a] for a in members},
            drop_rate=drop_rate,
            applicability=applicability,
        )
        for group, members in groups.items()
    }
    if layout_of(layout).uses_grouping:
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
    applicability_head: bool = True,
) -> AttributeNet:
    """A network for `schema`'s attributes (all, or the selected ones) in one of `LAYOUTS`.

    `drop_rate` is applied once, just before the heads, so it means the same for every architecture.
    `applicability_head` adds the head training teaches which attributes an image shows, in layouts whose backbone
    sees every attribute's images (`Layout.learns_applicability`). The returned model's `spec` attribute records all
    `model_from_spec` needs to rebuild it.
    """
    timm_name = timm_model_name(arch)
    selected = _select_attributes(schema, attributes)
    groups = _plan_groups(schema, layout, selected, grouping)
    head_sizes = {a: schema.attribute(a).num_classes for a in selected}
    with_head = applicability_head and layout_of(layout).learns_applicability and len(selected) > 1
    model = _build(timm_name, layout, groups, head_sizes, pretrained, weights, drop_rate, with_head)
    model.spec = {
        "arch": arch,
        "timm_name": timm_name,
        "layout": layout,
        "grouping": grouping if layout_of(layout).uses_grouping else None,
        "groups": {group: list(members) for group, members in groups.items()},
        "attributes": list(selected),
        "head_sizes": head_sizes,
        "drop_rate": float(drop_rate),
        "data_config": data_config(timm_name),
        "applicability_head": with_head,
    }
    return model


def model_from_spec(spec: Mapping[str, Any], schema: Schema) -> AttributeNet:
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
        applicability=bool(spec.get("applicability_head", False)),  # checkpoints from before the head have none
    )
    model.spec = dict(spec)
    return model
