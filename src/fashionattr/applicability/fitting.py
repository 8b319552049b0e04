"""Fitting the applicability methods on a model's pooled features of labelled images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fashionattr.applicability import KEPT_SHARE, METHODS, UNLABELLED_SHARE
from fashionattr.applicability.modules import (
    Applicability,
    MahalanobisApplicability,
    ProbeApplicability,
    invisible_indices,
)
from fashionattr.schema import Schema


@dataclass(frozen=True)
class Embedded:
    """A model's pooled features of labelled images: what the applicability methods are fitted on.

    `attribute` is each image's labelled attribute (its position in the model's attributes, -1 for an attribute the
    model does not answer) and `target` its labelled class.
    """

    features: np.ndarray
    attribute: np.ndarray
    target: np.ndarray

    def own_visible(self, position: int, invisible: int | None) -> np.ndarray:
        rows = self.attribute == position
        return rows & (self.target != invisible) if invisible is not None else rows


def fit_probe(train: Embedded, attributes: Sequence[str], invisible: Mapping[str, int],
              unlabelled_share: float = UNLABELLED_SHARE) -> ProbeApplicability:  # fmt: skip
    """One weighted logistic regression per attribute (see the module's description)."""
    from sklearn.linear_model import LogisticRegression

    features = train.features.astype(np.float64)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    standard = (features - mean) / scale
    module = ProbeApplicability(attributes, invisible, features.shape[1])
    weights, biases = [], []
    for position, name in enumerate(attributes):
        positive = train.own_visible(position, invisible.get(name))
        own = train.attribute == position
        others = ~own
        sample_weight = np.ones(len(features))
        if positive.any() and others.any():
            sample_weight[others] = unlabelled_share * positive.sum() / others.sum()
        labels = positive.astype(int)
        if labels.min() == labels.max():  # nothing to tell apart: every image shows it, or none does
            weights.append(np.zeros(features.shape[1]))
            biases.append(10.0 if labels.max() else -10.0)
            continue
        classifier = LogisticRegression(C=1.0, max_iter=2000)
        classifier.fit(standard, labels, sample_weight=sample_weight)
        weights.append(classifier.coef_[0])
        biases.append(float(classifier.intercept_[0]))
    module.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    module.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
    module.weight.copy_(torch.as_tensor(np.stack(weights), dtype=torch.float32))
    module.bias.copy_(torch.as_tensor(biases, dtype=torch.float32))
    return module


def fit_mahalanobis(train: Embedded, val: Embedded, attributes: Sequence[str],
                    invisible: Mapping[str, int]) -> MahalanobisApplicability:  # fmt: skip
    """Class means of each attribute's visible training images, one shrunk covariance, and each kept distance."""
    from sklearn.covariance import LedoitWolf

    features = train.features.astype(np.float64)
    means, counts, centred = [], [], []
    for position, name in enumerate(attributes):
        rows = train.own_visible(position, invisible.get(name))
        classes = sorted(set(train.target[rows].tolist())) or [None]
        for cls in classes:
            members = features[rows & (train.target == cls)] if cls is not None else features[:0]
            centre = members.mean(axis=0) if len(members) else features.mean(axis=0)
            means.append(centre)
            if len(members):
                centred.append(members - centre)
        counts.append(len(classes))
    pooled = np.concatenate(centred) if centred else features - features.mean(axis=0)
    precision = LedoitWolf().fit(pooled).precision_
    module = MahalanobisApplicability(attributes, invisible, features.shape[1], counts)
    module.means.copy_(torch.as_tensor(np.stack(means), dtype=torch.float32))
    module.precision.copy_(torch.as_tensor(precision, dtype=torch.float32))
    with torch.no_grad():
        module.kept_distance.fill_(1.0)
        nearest = 1.0 / module.evidence(torch.as_tensor(val.features, dtype=torch.float32)) - 1.0
    kept = []
    for position, name in enumerate(attributes):
        own = torch.as_tensor(val.own_visible(position, invisible.get(name)))
        values = nearest[own, position] if bool(own.any()) else nearest[:, position]
        kept.append(float(torch.quantile(values, KEPT_SHARE)) if values.numel() else 1.0)
    module.kept_distance.copy_(torch.as_tensor(kept, dtype=torch.float32).clamp_min(1e-6))
    return module


def from_head(head: nn.Linear, attributes: Sequence[str], invisible: Mapping[str, int]) -> ProbeApplicability:
    """The network's own applicability head, trained with it, as a module (it reads the same pooled features)."""
    module = ProbeApplicability(attributes, invisible, head.in_features)
    module.method = "head"
    module.weight.copy_(head.weight.detach().float().cpu())
    module.bias.copy_(head.bias.detach().float().cpu())
    return module


def fit_applicability(method: str, train: Embedded, val: Embedded, schema: Schema, attributes: Sequence[str],
                      head: nn.Linear | None = None) -> Applicability:  # fmt: skip
    """The fitted module of `method` for a model answering `attributes`; `head` is the network's applicability head.

    `head` falls back to `probe` for a network without one (a per-attribute or grouped layout, whose backbones do not
    see every attribute's images while training).
    """
    invisible = invisible_indices(schema, attributes)
    if method == "head" and head is not None:
        return from_head(head, attributes, invisible)
    if method in ("head", "probe"):
        return fit_probe(train, attributes, invisible)
    if method == "mahalanobis":
        return fit_mahalanobis(train, val, attributes, invisible)
    if method == "invisible":
        return Applicability(attributes, invisible)
    raise ValueError(f"unknown applicability method {method!r}; choose one of: {', '.join(METHODS)}")
