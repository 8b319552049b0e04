"""Does a photo show an attribute's part? A score per attribute in [0, 1], and the rule that turns it into a tag.

In the challenge every question names its attribute; a catalogue asks every attribute of every photo, and a head asked
about a part it cannot see still answers, confidently (a skirt length for trousers). Training data keeps the
FashionAI form (each image labelled for one attribute), so the decision is learned from that: an image labelled for
an attribute shows its part unless labelled `Invisible`; an image labelled for another attribute may or may not.

Four ways to score it, compared in docs/applicability.md; all but `head` are fitted after training on one model's
pooled features (the same embedding the catalogue stores):

- `head` (the default): the same classifier as `probe`, as a head of the network trained with it (the loss's
  `applicability_weight`, the other attributes' images weighted by `applicability_negatives`), so it shapes the
  features; multitask networks have it, the other layouts fall back to `probe`;
- `probe`: a linear classifier per attribute, positive-unlabelled: the attribute's own visible images
  are positives, its `Invisible` images negatives, and images labelled for other attributes negatives of small total
  weight (`UNLABELLED_SHARE` of the positives'), so a look shared by both sides (a sleeve on a skirt photo) stays
  positive while one only the others have (a neckline close-up for the skirt head) becomes negative;
- `mahalanobis`: distance of the embedding to the nearest class mean of the attribute's own visible training images
  (one shared covariance, Ledoit-Wolf shrinkage); the score is 1/2 at the distance that keeps 95% of its own
  validation images;
- `invisible`: one minus the head's calibrated `Invisible` probability.

Every score is multiplied by one minus the `Invisible` probability (a covered part is not shown), and a tag is shown
where the score is at least `THRESHOLD` (or the user's `--applicability-threshold`) and the head's top class is not
`Invisible`. The scoring module runs in the PyTorch backend and is traced into the ONNX graph, so both decide alike.

`modules` holds the scoring modules (torch) and the tag rule, `fitting` fits them; this package's top only names the
methods, so the command line lists them without importing torch.
"""

from __future__ import annotations

METHODS = ("head", "probe", "mahalanobis", "invisible")
DEFAULT_METHOD = "head"
THRESHOLD = 0.5
"""A tag is shown where its attribute's score reaches this (every method's score is scaled so)."""
UNLABELLED_SHARE = 0.5
"""`probe`: the total weight of images labelled for other attributes, as a share of the positives' total weight."""
KEPT_SHARE = 0.95
"""`mahalanobis`: the share of an attribute's own validation images whose distance scores at least 1/2."""
INVISIBLE_CLASS = "Invisible"
