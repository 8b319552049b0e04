"""Label review: which training labels are worth a second look, from out-of-sample probabilities and confident learning.

`probabilities` gets each reviewed image's class probabilities from a model that never trained on it (the run's
own model on its validation split, or K models by cross-validation over the training split); `issues` ranks the
labels with cleanlab and scores a review against known errors; `page` draws the HTML page a person reviews with.
"""

from fashionattr.review.issues import LabelIssue, find_issues
from fashionattr.review.probabilities import OutOfSample, cross_validated, validation_split

__all__ = ["LabelIssue", "OutOfSample", "cross_validated", "find_issues", "validation_split"]
