"""Masked, soft-label cross-entropy for images that are each labelled for one attribute only.

A batch mixes attributes, so every head sees only its own rows. The loss is written without data-dependent
control flow: every head stays in the autograd graph (DistributedDataParallel needs that even when a batch has
no row for some head) and nothing waits on the GPU to decide what to compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_targets(
    targets: Tensor, maybe: Tensor, num_classes: int, maybe_weight: float = 0.0, label_smoothing: float = 0.0
) -> Tensor:
    """Target distributions (n, K): the `y` class, part of its mass moved to the `m` classes, then smoothed.

    `maybe_weight` is shared equally among a row's `m` classes (rows without one keep all mass on `y`), because
    the challenge treats an `m` answer as acceptable; label smoothing then mixes in a uniform distribution as
    `F.cross_entropy(label_smoothing=...)` does.
    """
    hard = F.one_hot(targets.long(), num_classes).float()
    result = hard
    if maybe_weight > 0:
        maybe = _fit_columns(maybe, num_classes).float() * (1 - hard)
        count = maybe.sum(dim=1, keepdim=True)
        has_maybe = count > 0
        spread = maybe_weight * maybe / count.clamp(min=1)
        result = torch.where(has_maybe, (1 - maybe_weight) * hard + spread, hard)
    if label_smoothing > 0:
        result = (1 - label_smoothing) * result + label_smoothing / num_classes
    return result


def _fit_columns(maybe: Tensor, num_classes: int) -> Tensor:
    """The first `num_classes` columns of a mask padded to the largest attribute (False-padded if narrower)."""
    if maybe.shape[1] >= num_classes:
        return maybe[:, :num_classes]
    return F.pad(maybe, (0, num_classes - maybe.shape[1]), value=False)


def masked_cross_entropy(
    logits: Mapping[str, Tensor],
    attributes: Sequence[str],
    attribute_index: Tensor,
    targets: Tensor,
    maybe: Tensor,
    maybe_weight: float = 0.0,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean per-sample cross-entropy, each row scored only by the head of the attribute it is labelled for.

    Returns the total loss (sum of row losses / N, so each labelled row counts once) and, detached, the mean
    loss of each attribute over its rows (0 for an attribute with no rows in the batch; weight by row counts
    when averaging over batches). Computed in float32 even under autocast.
    """
    batch_size = attribute_index.shape[0]
    total = torch.zeros((), device=attribute_index.device)
    per_attribute: dict[str, Tensor] = {}
    for index, name in enumerate(attributes):
        head_logits = logits[name].float()
        rows = attribute_index == index
        # Rows of other attributes may hold class indices this head does not have; they are masked out below.
        row_targets = torch.where(rows, targets, torch.zeros_like(targets))
        target = soft_targets(row_targets, maybe, head_logits.shape[1], maybe_weight, label_smoothing)
        row_loss = -(target * F.log_softmax(head_logits, dim=1)).sum(dim=1)
        # torch.where, not a product, so a non-finite logit in someone else's row cannot leak into the sum.
        row_loss = torch.where(rows, row_loss, torch.zeros_like(row_loss))
        attribute_sum = row_loss.sum()
        total = total + attribute_sum
        per_attribute[name] = (attribute_sum / rows.sum().clamp(min=1)).detach()
    return total / max(batch_size, 1), per_attribute


def applicability_loss(scores: Tensor, attribute_index: Tensor, targets: Tensor, invisible: Tensor,
                       unlabelled_weight: float) -> Tensor:  # fmt: skip
    """Weighted binary cross-entropy of the applicability head (N, A): does each image show each attribute's part?

    An image shows the attribute it is labelled for (a positive), unless labelled `Invisible` there (a negative, as
    sure). Whether it shows the others nobody said, so it is their negative at `unlabelled_weight` only: a look that
    those attributes' own images share (a sleeve on a skirt photo) stays positive, one only other attributes' images
    have (a neckline close-up, for a skirt) is learned as negative. `invisible` holds each attribute's `Invisible`
    class (-1 where it has none). The mean over images, each counted once for its own attribute.
    """
    count, columns = scores.shape
    own = F.one_hot(attribute_index.long(), columns).bool()
    shows_own = targets != invisible.to(targets.device)[attribute_index.long()]
    target = (own & shows_own[:, None]).float()
    weight = torch.where(own, torch.ones_like(target), torch.full_like(target, unlabelled_weight))
    losses = F.binary_cross_entropy_with_logits(scores.float(), target, weight=weight, reduction="sum")
    return losses / max(count, 1)
