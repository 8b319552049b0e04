"""Confidence calibration: one temperature per attribute, and how far stated confidences are from hit rates.

A network trained with cross-entropy says "80%" without being right 80% of the time; `--min-confidence` and the
catalogue's confidence filter rely on that number. Temperature scaling (Guo et al., 2017) divides an attribute's
logits by one fitted number T: the argmax of every row stays (so accuracy and BP do not move), while the
confidences shrink (T > 1) or sharpen (T < 1) until their negative log-likelihood on held-out images is lowest.

Only probabilities are needed: log p differs from the logits by a constant per row, which softmax ignores, so
softmax(log p / T) is exactly softmax(logits / T).

The expected calibration error (ECE) bins images by their top probability and averages |hit rate - mean
confidence| over the bins, weighted by their sizes. An image whose argmax lands on an `m` class is left out, as
the challenge's AP leaves it out: it is neither right nor wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from fashionattr.metrics import AttributePredictions, score
from fashionattr.schema import Schema

TEMPERATURE_RANGE = (0.05, 20.0)
"""Temperatures searched; beyond them a model is broken rather than miscalibrated."""
RELIABILITY_BINS = 15
"""Equal-width confidence bins of the ECE and the reliability diagram, as in Guo et al."""
_TINY = float(np.finfo(np.float32).tiny)


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """log p, with the zeros a float32 softmax can produce kept finite."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened (T > 1) or sharpened (T < 1) as if the logits had been divided by T."""
    if temperature == 1.0:
        return np.asarray(probs, dtype=np.float64)
    return softmax(log_probabilities(probs) / temperature, axis=1)


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log p(y) after dividing by `temperature`: what temperature scaling minimises."""
    scaled = log_softmax(log_probabilities(probs) / temperature, axis=1)
    return float(-scaled[np.arange(len(targets)), targets].mean())


def fit_temperature(predictions: AttributePredictions) -> float:
    """The temperature that minimises the held-out negative log-likelihood (1 when there are no images)."""
    if len(predictions) == 0:
        return 1.0
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(predictions.probs, predictions.targets, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(result.x))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: how many images, their mean top probability and how many of them were right."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def expected_calibration_error(self) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return math.nan
        return float((self.counts * np.abs(self.accuracy - self.confidence)).sum() / total)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist(),
                "confidence": self.confidence.tolist(), "accuracy": self.accuracy.tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reliability:
        return cls(*(np.asarray(data[key], dtype=np.float64) for key in ("edges", "counts", "confidence", "accuracy")))


def reliability(probs: np.ndarray, targets: np.ndarray, maybe: np.ndarray, bins: int = RELIABILITY_BINS) -> Reliability:
    """Bin images by top probability; images whose argmax is an `m` class are left out (neither right nor wrong)."""
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(targets))
    predicted = probs.argmax(axis=1) if len(targets) else np.zeros(0, dtype=np.int64)
    counted = ~(np.asarray(maybe, dtype=bool)[rows, predicted] & (predicted != targets))
    confidence = probs[rows, predicted][counted]
    correct = (predicted == targets)[counted].astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        hit_rate = np.bincount(index, weights=correct, minlength=bins) / counts
    return Reliability(edges, counts, np.nan_to_num(mean_confidence), np.nan_to_num(hit_rate))


def expected_calibration_error(predictions: AttributePredictions, bins: int = RELIABILITY_BINS) -> float:
    return reliability(predictions.probs, predictions.targets, predictions.maybe, bins).expected_calibration_error


def calibrated(predictions: AttributePredictions, temperature: float) -> AttributePredictions:
    probs = apply_temperature(predictions.probs, temperature)
    return AttributePredictions(probs, predictions.targets, predictions.maybe)


@dataclass
class AttributeCalibration:
    """One attribute's temperature and its effect on held-out images."""

    temperature: float
    count: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    reliability_before: Reliability
    reliability_after: Reliability

    @property
    def at_bound(self) -> bool:
        """The fit stopped at the end of the searched range (separable validation images): no real optimum."""
        low, high = TEMPERATURE_RANGE
        return self.temperature <= low * 1.01 or self.temperature >= high / 1.01

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "count": self.count, "at_bound": self.at_bound,
                "ece_before": _finite(self.ece_before),
                "ece_after": _finite(self.ece_after), "nll_before": _finite(self.nll_before),
                "nll_after": _finite(self.nll_after), "reliability_before": self.reliability_before.to_dict(),
                "reliability_after": self.reliability_after.to_dict()}  # fmt: skip


@dataclass
class Calibration:
    """Temperatures of every attribute and the scores before and after (BP cannot move; AP can)."""

    attributes: dict[str, AttributeCalibration]
    scores_before: dict[str, Any] = field(default_factory=dict)
    scores_after: dict[str, Any] = field(default_factory=dict)

    @property
    def temperatures(self) -> dict[str, float]:
        return {name: entry.temperature for name, entry in self.attributes.items()}

    def to_dict(self) -> dict[str, Any]:
        def summary(scores: dict[str, Any]) -> dict[str, Any]:
            attributes = scores.get("attributes", {})
            return {"basic_precision": scores.get("basic_precision"),
                    "mean_average_precision": scores.get("mean_average_precision"),
                    "average_precision": {name: entry["average_precision"] for name, entry in attributes.items()
                                          if entry["count"]}}  # fmt: skip

        return {"temperatures": self.temperatures,
                "attributes": {name: entry.to_dict() for name, entry in self.attributes.items()},
                "before": summary(self.scores_before), "after": summary(self.scores_after)}  # fmt: skip


def calibrate(schema: Schema, predictions: Mapping[str, AttributePredictions]) -> Calibration:
    """Fit a temperature per attribute on held-out `predictions` (raw probabilities) and measure before and after."""
    entries: dict[str, AttributeCalibration] = {}
    after: dict[str, AttributePredictions] = {}
    for name, raw in predictions.items():
        if len(raw) == 0:
            continue
        temperature = fit_temperature(raw)
        scaled = calibrated(raw, temperature)
        after[name] = scaled
        entries[name] = AttributeCalibration(
            temperature=temperature,
            count=len(raw),
            ece_before=expected_calibration_error(raw),
            ece_after=expected_calibration_error(scaled),
            nll_before=negative_log_likelihood(raw.probs, raw.targets),
            nll_after=negative_log_likelihood(scaled.probs, scaled.targets),
            reliability_before=reliability(raw.probs, raw.targets, raw.maybe),
            reliability_after=reliability(scaled.probs, scaled.targets, scaled.maybe),
        )
    used = {name: predictions[name] for name in after}
    return Calibration(entries, score(schema, used).to_dict(), score(schema, after).to_dict())


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
