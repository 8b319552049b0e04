"""Class activation maps per attribute: where in the letterboxed photo the evidence for a class lies.

The CAM methods are the `grad-cam` package's (`pytorch_grad_cam`); they expect a model with one output tensor,
so `HeadLogits` exposes one attribute's head of a multitask or grouped network (and of a per-attribute run's
network) as such a model, taking the same uint8 letterbox every other path feeds the network. The layer a map
is read from is, by default, the deepest stage of the backbone whose map is still fine enough to point at a hem,
found by watching one forward pass at the model's input size, so every timm architecture works without a table
of layer names.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fashionattr.data.preprocessing import Preprocessing, normalize_batch
from fashionattr.distributed import pick_device
from fashionattr.engine import probabilities_from_logits
from fashionattr.errors import UserError
from fashionattr.explain.methods import DEFAULT_METHOD, METHODS
from fashionattr.inference.predictor import load_inputs
from fashionattr.inference.torch_backend import LoadedModel, distinct_inputs, load_models
from fashionattr.models.networks import AttributeNet
from fashionattr.schema import Schema

CAM_METHODS: dict[str, type[BaseCAM]] = {
    "layercam": LayerCAM,
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
}
"""The package's class for each of `methods.METHODS`."""
MIN_MAP_SIDE = 12
"""The default layer is the deepest stage whose map has at least this many positions across."""
PROBE_SIZE = 64
"""Smallest input of the forward pass that finds the final feature map: a map of 2x2 at stride 32."""


@dataclass
class Heatmap:
    """One attribute's map for one image: for which class, how sure the model is, and the map over its input."""

    attribute: str
    class_index: int
    class_name: str
    probability: float
    """The model's (calibrated, unless asked otherwise) probability of `class_index`."""
    predicted_index: int
    cam: np.ndarray
    """(S, S) float in 0..1 over the letterboxed input."""
    image: np.ndarray
    """(S, S, 3) uint8: the letterboxed input the network saw."""

    @property
    def peak(self) -> tuple[int, int]:
        """(x, y) of the map's maximum, in pixels of the letterboxed input."""
        row, column = np.unravel_index(int(np.argmax(self.cam)), self.cam.shape)
        return int(column), int(row)


class HeadLogits(nn.Module):
    """One attribute's logits from letterboxed pixels (N,3,S,S, 0-255): the single-output model a CAM method needs.

    Only the backbone that answers the attribute runs (one group of a grouped network).
    """

    def __init__(self, model: AttributeNet, attribute: str, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.network = model.attribute_network(attribute)
        self.preprocessing = preprocessing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(normalize_batch(images, self.preprocessing))


def spatial_outputs(backbone: nn.Module, size: int) -> list[tuple[str, tuple[int, int]]]:
    """(name, (H, W)) of every module whose output is a spatial map, in the order they finish, for one input of `size`.

    A container finishes after its children, so a whole stage (`layer4`) comes after its last block.
    """
    names = {module: name for name, module in backbone.named_modules() if name}
    finished: list[tuple[str, tuple[int, int]]] = []

    def watch(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            finished.append((names[module], (int(output.shape[-2]), int(output.shape[-1]))))

    handles = [module.register_forward_hook(watch) for module in names]
    was_training = backbone.training
    try:
        backbone.eval()
        parameter = next(backbone.parameters())
        with torch.no_grad():
            backbone(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    return finished


def final_feature_map(backbone: nn.Module, size: int = PROBE_SIZE) -> str:
    """The module that outputs the backbone's last spatial feature map (before global pooling), found by watching."""
    maps = [name for name, (h, w) in spatial_outputs(backbone, max(size, PROBE_SIZE)) if h * w > 1]
    if not maps:
        raise UserError("found no spatial feature map in the backbone to read a heatmap from; name one with --layer")
    return maps[-1]


def feature_stages(backbone: nn.Module) -> list[str]:
    """timm's names for the backbone's feature stages (`layer1` ... `layer4`), to suggest for --layer."""
    info = getattr(backbone, "feature_info", None)
    try:
        return [str(entry["module"]) for entry in info] if info is not None else []
    except (TypeError, KeyError):
        return []


def default_layer(backbone: nn.Module, size: int) -> str:
    """The deepest feature stage whose map is at least `MIN_MAP_SIDE` across at this input size.

    Deeper maps hold more of the class's meaning but fewer positions: at the demo's 96 px, resnet's `layer4` is
    3x3 and its peak can hardly land on a hem. A backbone without timm's stage list gets its final feature map.
    """
    stages = feature_stages(backbone)
    if not stages:
        return final_feature_map(backbone, size)
    shapes = dict(spatial_outputs(backbone, size))
    present = [name for name in stages if name in shapes]
    if not present:
        return final_feature_map(backbone, size)
    wide = [name for name in present if min(shapes[name]) >= MIN_MAP_SIDE]
    return wide[-1] if wide else present[0]


def resolve_layers(backbone: nn.Module, layers: Sequence[str] | None, size: int) -> list[str]:
    """The named layers (checked to exist), else `default_layer`; the CAM method averages several."""
    if not layers:
        return [default_layer(backbone, size)]
    for name in layers:
        try:
            backbone.get_submodule(name)
        except AttributeError:
            stages = ", ".join(feature_stages(backbone)) or "see the model's named_modules()"
            raise UserError(f"the backbone has no layer {name!r}; its feature stages are: {stages}") from None
    return list(layers)


class Explainer:
    """Heatmaps of one or more loaded models (a per-attribute folder holds one per attribute), attribute by attribute.

    Gradients flow through the models, so give the explainer models of its own (the service hands it copies).
    """

    def __init__(self, models: Sequence[LoadedModel], schema: Schema, method: str = DEFAULT_METHOD,
                 layers: Sequence[str] | None = None, smooth: bool = False) -> None:  # fmt: skip
        if method not in CAM_METHODS:
            raise UserError(f"unknown heatmap method {method!r}; choose one of: {', '.join(METHODS)}")
        self.models = list(models)
        self.schema = schema
        self.method = method
        self.smooth = smooth
        """Average each map over mirrored and brightened copies of the image (the package's `aug_smooth`)."""
        self.inputs = distinct_inputs([m.preprocessing for m in self.models])
        self.attributes = [a for a in schema.names if any(a in m.attributes for m in self.models)]
        self.device = next(self.models[0].model.parameters()).device
        self._layers: dict[int, list[str]] = {}
        self._requested_layers = list(layers) if layers else None
        for loaded in self.models:
            loaded.model.eval()

    @classmethod
    def from_path(cls, path: str | Path, device: str = "auto", calibrated: bool = True, **kwargs: Any) -> Explainer:
        models, schema = load_models(path, pick_device(device), calibrated=calibrated)
        return cls(models, schema, **kwargs)

    @classmethod
    def copy_of(cls, models: Sequence[LoadedModel], schema: Schema, **kwargs: Any) -> Explainer:
        """An explainer on copies of `models`, so its hooks and gradients never touch a model serving predictions."""
        return cls([copy.deepcopy(m) for m in models], schema, **kwargs)

    def resolve_attribute(self, name: str) -> str:
        try:
            [attribute] = self.schema.resolve_names([name])
        except KeyError as exc:
            raise UserError(f"{exc.args[0]} (the model explains {', '.join(self.attributes)})") from None
        if attribute not in self.attributes:
            raise UserError(f"the model does not predict {attribute}; it knows: {', '.join(self.attributes)}")
        return attribute

    def resolve_class(self, attribute: str, name: str) -> int:
        """A class of `attribute` by name (any case) or index."""
        classes = self.schema.attribute(attribute).classes
        by_name = {c.lower(): i for i, c in enumerate(classes)}
        if name.strip().lower() in by_name:
            return by_name[name.strip().lower()]
        if name.strip().isdigit() and int(name) < len(classes):
            return int(name)
        raise UserError(f"{attribute} has no class {name!r}; its classes are: {', '.join(classes)}")

    def model_for(self, attribute: str) -> LoadedModel:
        for loaded in self.models:
            if attribute in loaded.attributes:
                return loaded
        raise UserError(f"the model does not predict {attribute}; it knows: {', '.join(self.attributes)}")

    def layers_for(self, attribute: str) -> list[str]:
        """The layer names (inside the owning backbone) the maps of `attribute` are read from."""
        loaded = self.model_for(attribute)
        backbone = loaded.model.attribute_backbone(attribute)
        key = id(backbone)
        if key not in self._layers:
            self._layers[key] = resolve_layers(backbone, self._requested_layers, loaded.preprocessing.img_size)
        return self._layers[key]

    def load(self, source: str | Path | bytes, name: str | None = None) -> list[torch.Tensor]:
        """A file as the explainer's inputs, by the one preprocessing function; raises ImageError for a bad one."""
        return load_inputs(source, self.inputs, name)

    def explain(self, images: Sequence[Sequence[torch.Tensor]], attribute: str,
                class_index: int | Sequence[int] | None = None) -> list[Heatmap]:  # fmt: skip
        """A heatmap of `attribute` for each image (as `load` gives it), for its predicted class or the one given."""
        if not images:
            return []
        loaded = self.model_for(attribute)
        column = [p.pixel_key for p in self.inputs].index(loaded.preprocessing.pixel_key)
        batch = torch.stack([image[column] for image in images]).to(self.device).float()
        head = HeadLogits(loaded.model, attribute, loaded.preprocessing)
        with torch.no_grad():
            logits = head(batch)
        probabilities = probabilities_from_logits({attribute: logits}, loaded.temperatures)[attribute].cpu().numpy()
        predicted = probabilities.argmax(axis=1)
        if class_index is None:
            chosen = [int(c) for c in predicted]
        elif isinstance(class_index, int):
            chosen = [class_index] * len(images)
        else:
            chosen = [int(c) for c in class_index]
        backbone = loaded.model.attribute_backbone(attribute)
        layers = [backbone.get_submodule(name) for name in self.layers_for(attribute)]
        method = CAM_METHODS[self.method](model=head, target_layers=layers)
        targets = [ClassifierOutputTarget(c) for c in chosen]
        try:
            maps = method(input_tensor=batch, targets=targets, aug_smooth=self.smooth)
        finally:  # not `with`: the package's __exit__ swallows IndexErrors
            method.activations_and_grads.release()
            head.zero_grad(set_to_none=True)
        classes = self.schema.attribute(attribute).classes
        pixels = batch.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        heatmaps = []
        for row, c in enumerate(chosen):
            cam = np.nan_to_num(maps[row]).astype(np.float32)
            heatmaps.append(Heatmap(attribute, c, classes[c], float(probabilities[row, c]), int(predicted[row]), cam,
                                    pixels[row]))  # fmt: skip
        return heatmaps
