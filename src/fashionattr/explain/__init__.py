"""Heatmaps: where a model looks for each attribute, and the pointing game that measures whether it is the right part.

`cam` computes class activation maps per attribute with the `grad-cam` package, `pictures` draws them over the
letterboxed photos, `pointing` scores them against the part boxes the synthetic generator writes. Importing the
package itself stays cheap (the command line lists `methods` on every start); import `cam` for the work.
"""

from fashionattr.explain.methods import DEFAULT_METHOD, METHODS

__all__ = ["DEFAULT_METHOD", "METHODS"]
