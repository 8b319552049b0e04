"""The applicability modules: scores per attribute from one model's features and class probabilities, and the rule
that turns a score into a shown tag. They run in the PyTorch backend and are traced into the ONNX graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fashionattr.applicability import INVISIBLE_CLASS, THRESHOLD
from fashionattr.schema import Schema


def invisible_indices(schema: Schema, attributes: Sequence[str]) -> dict[str, int]:
    """The position of each attribute's `Invisible` class (attributes without one are left out)."""
    return {name: schema.attribute(name).classes.index(INVISIBLE_CLASS)
            for name in attributes if INVISIBLE_CLASS in schema.attribute(name).classes}  # fmt: skip


class Applicability(nn.Module):
    """Scores per attribute from one model's features (N, F) and class probabilities; subclasses add the evidence."""

    method = "invisible"

    def __init__(self, attributes: Sequence[str], invisible: Mapping[str, int]) -> None:
        super().__init__()
        self.attributes = list(attributes)
        self.invisible = dict(invisible)

    def evidence(self, features: Tensor) -> Tensor | None:
        """(N, A) in [0, 1], one column per attribute, before the `Invisible` factor; None for none."""
        return None

    def forward(self, features: Tensor, probabilities: Mapping[str, Tensor]) -> dict[str, Tensor]:
        evidence = self.evidence(features.float())
        scores = {}
        for column, name in enumerate(self.attributes):
            score = evidence[:, column] if evidence is not None else features.new_ones(features.shape[0])
            if name in self.invisible:
                score = score * (1.0 - probabilities[name][:, self.invisible[name]].float())
            scores[name] = score.clamp(0.0, 1.0)
        return scores

    def describe(self) -> dict[str, Any]:
        """JSON-friendly: what a checkpoint stores beside the tensors to rebuild this module."""
        return {"method": self.method, "attributes": self.attributes, "invisible": self.invisible}


class ProbeApplicability(Applicability):
    """A linear classifier on the (standardised) features: the fitted `probe`, or the network's trained `head`."""

    method = "probe"
    mean: Tensor
    scale: Tensor
    weight: Tensor
    bias: Tensor

    def __init__(self, attributes: Sequence[str], invisible: Mapping[str, int], width: int) -> None:
        super().__init__(attributes, invisible)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("weight", torch.zeros(len(self.attributes), width))
        self.register_buffer("bias", torch.zeros(len(self.attributes)))

    def evidence(self, features: Tensor) -> Tensor:
        standard = (features - self.mean) / self.scale
        return torch.sigmoid(standard @ self.weight.T + self.bias)


class MahalanobisApplicability(Applicability):
    method = "mahalanobis"
    means: Tensor
    precision: Tensor
    kept_distance: Tensor

    def __init__(self, attributes: Sequence[str], invisible: Mapping[str, int], width: int,
                 num_means: Sequence[int]) -> None:  # fmt: skip
        super().__init__(attributes, invisible)
        self.num_means = [int(n) for n in num_means]
        self.register_buffer("means", torch.zeros(sum(self.num_means), width))
        self.register_buffer("precision", torch.eye(width))
        self.register_buffer("kept_distance", torch.ones(len(self.attributes)))

    def evidence(self, features: Tensor) -> Tensor:
        # (f - m)' P (f - m) for every image and mean, expanded so nothing of size N x K x F is formed
        projected = features @ self.precision
        distance = ((projected * features).sum(dim=1, keepdim=True) - 2 * projected @ self.means.T
                    + ((self.means @ self.precision) * self.means).sum(dim=1)[None, :])  # fmt: skip
        columns, start = [], 0
        for count in self.num_means:
            columns.append(distance[:, start : start + count].min(dim=1).values)
            start += count
        nearest = torch.stack(columns, dim=1)
        return 1.0 / (1.0 + nearest / self.kept_distance)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "num_means": self.num_means}


def build_applicability(description: Mapping[str, Any], state: Mapping[str, Tensor]) -> Applicability:
    """Rebuild a stored module from its `describe()` and state dict (a checkpoint's or an export's)."""
    method = description["method"]
    attributes, invisible = (
        list(description["attributes"]),
        {str(k): int(v) for k, v in description["invisible"].items()},
    )
    module: Applicability
    if method in ("probe", "head"):
        module = ProbeApplicability(attributes, invisible, int(state["mean"].shape[0]))
        module.method = method
    elif method == "mahalanobis":
        module = MahalanobisApplicability(attributes, invisible, int(state["means"].shape[1]),
                                          description["num_means"])  # fmt: skip
    elif method == "invisible":
        module = Applicability(attributes, invisible)
    else:
        raise ValueError(f"unknown applicability method {method!r}")
    module.load_state_dict(dict(state))
    return module


def applies(scores: np.ndarray | float, predicted: np.ndarray | int, invisible: int | None,
            threshold: float = THRESHOLD) -> np.ndarray:  # fmt: skip
    """Whether each tag is shown: the score reaches the threshold and the head's top class is not `Invisible`."""
    shown = np.asarray(scores) >= threshold
    return shown & (np.asarray(predicted) != invisible) if invisible is not None else shown
