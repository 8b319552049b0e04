"""Heatmaps: where a model looks for each attribute, and the pointing game that measures whether it is the right part.

`cam` computes class activation maps per attribute with the `grad-cam` package, `pictures` draws them over the
letterboxed photos, `pointing` scores them against the part boxes the synthetic generator writes.
"""

from fashionattr.explain.cam import CAM_METHODS, DEFAULT_METHOD, Explainer, Heatmap

__all__ = ["CAM_METHODS", "DEFAULT_METHOD", "Explainer", "Heatmap"]
