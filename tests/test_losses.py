"""Masked, soft-label cross-entropy against plain cross-entropy, and its behaviour on lopsided batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashionattr.losses import masked_cross_entropy, soft_targets

ATTRIBUTES = ["colour", "size", "shape"]
NUM_CLASSES = [3, 5, 4]
K_MAX = max(NUM_CLASSES)


def make_batch(attribute_index: list[int], seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Random logits for every head, and a valid target class for each row's own attribute."""
    generator = torch.Generator().manual_seed(seed)
    n = len(attribute_index)
    logits = {a: torch.randn(n, k, generator=generator) for a, k in zip(ATTRIBUTES, NUM_CLASSES, strict=True)}
    index = torch.tensor(attribute_index)
    targets = torch.tensor([int(torch.randint(NUM_CLASSES[i], (1,), generator=generator)) for i in attribute_index])
    return logits, index, targets


def no_maybe(n: int) -> torch.Tensor:
    return torch.zeros(n, K_MAX, dtype=torch.bool)


def reference_loss(
    logits: dict[str, torch.Tensor], index: torch.Tensor, targets: torch.Tensor, **kw: float
) -> torch.Tensor:
    """Per-sample F.cross_entropy through each row's own head, averaged over the batch."""
    rows = [
        F.cross_entropy(logits[ATTRIBUTES[int(i)]][r : r + 1], targets[r : r + 1], **kw) for r, i in enumerate(index)
    ]
    return torch.stack(rows).mean()


def test_hard_labels_match_plain_cross_entropy() -> None:
    logits, index, targets = make_batch([0, 1, 2, 1, 0, 2, 2])
    total, per_attribute = masked_cross_entropy(logits, ATTRIBUTES, index, targets, no_maybe(7))
    torch.testing.assert_close(total, reference_loss(logits, index, targets))
    rows = index == 1
    torch.testing.assert_close(per_attribute["size"], F.cross_entropy(logits["size"][rows], targets[rows]))


def test_label_smoothing_matches_plain_cross_entropy() -> None:
    logits, index, targets = make_batch([2, 0, 1, 1, 0])
    total, _ = masked_cross_entropy(logits, ATTRIBUTES, index, targets, no_maybe(5), label_smoothing=0.1)
    torch.testing.assert_close(total, reference_loss(logits, index, targets, label_smoothing=0.1))


def test_soft_targets_share_maybe_weight_among_maybe_classes() -> None:
    targets = torch.tensor([1, 0, 2])
    maybe = torch.zeros(3, K_MAX, dtype=torch.bool)
    maybe[0, [2, 3]] = True  # two acceptable alternatives
    maybe[1, 4] = True  # beyond this attribute's 4 classes: padding region, ignored
    soft = soft_targets(targets, maybe, num_classes=4, maybe_weight=0.2, label_smoothing=0.0)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(soft[0], torch.tensor([0.0, 0.8, 0.1, 0.1]))
    torch.testing.assert_close(soft[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(soft[2], torch.tensor([0.0, 0.0, 1.0, 0.0]))


def test_soft_targets_with_smoothing_still_sum_to_one() -> None:
    maybe = torch.zeros(2, 6, dtype=torch.bool)
    maybe[0, 3] = True
    soft = soft_targets(torch.tensor([0, 5]), maybe, num_classes=6, maybe_weight=0.3, label_smoothing=0.1)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(soft[0, 3], torch.tensor(0.9 * 0.3 + 0.1 / 6))
    torch.testing.assert_close(soft[1, 5], torch.tensor(0.9 + 0.1 / 6))


def test_maybe_weight_changes_only_rows_with_maybe_classes() -> None:
    logits, index, targets = make_batch([0, 1])
    maybe = no_maybe(2)
    targets[1] = 0
    maybe[1, 3] = True
    hard, _ = masked_cross_entropy(logits, ATTRIBUTES, index, targets, maybe)
    soft, _ = masked_cross_entropy(logits, ATTRIBUTES, index, targets, maybe, maybe_weight=0.25)
    log_p = F.log_softmax(logits["size"][1], dim=0)
    expected_shift = (-(0.75 * log_p[0] + 0.25 * log_p[3]) + log_p[0]) / 2
    torch.testing.assert_close(soft - hard, expected_shift)


def test_batch_without_rows_for_a_head_is_finite_and_keeps_every_head_in_the_graph() -> None:
    heads = nn.ModuleDict({a: nn.Linear(8, k) for a, k in zip(ATTRIBUTES, NUM_CLASSES, strict=True)})
    features = torch.randn(4, 8)
    logits = {a: head(features) for a, head in heads.items()}
    index = torch.tensor([0, 0, 2, 2])  # nothing for "size"
    targets = torch.tensor([1, 2, 3, 0])
    total, per_attribute = masked_cross_entropy(logits, ATTRIBUTES, index, targets, no_maybe(4), maybe_weight=0.2)
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) for v in per_attribute.values())
    assert not per_attribute.get("size", torch.tensor(0.0)).item()
    total.backward()
    for name, parameter in heads.named_parameters():
        assert parameter.grad is not None, name
    assert not heads["size"].weight.grad.any()


def test_loss_is_float32_under_half_precision_logits() -> None:
    logits, index, targets = make_batch([0, 1, 2])
    half = {a: t.half() for a, t in logits.items()}
    total, per_attribute = masked_cross_entropy(half, ATTRIBUTES, index, targets, no_maybe(3))
    assert total.dtype == torch.float32
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in per_attribute.values())
    torch.testing.assert_close(total, reference_loss({a: t.float() for a, t in half.items()}, index, targets))


@pytest.mark.parametrize("maybe_columns", [K_MAX, K_MAX + 3, 2])
def test_maybe_mask_width_may_differ_from_a_head(maybe_columns: int) -> None:
    logits, index, targets = make_batch([1, 1, 0])
    maybe = torch.zeros(3, maybe_columns, dtype=torch.bool)
    total, _ = masked_cross_entropy(logits, ATTRIBUTES, index, targets, maybe, maybe_weight=0.3)
    torch.testing.assert_close(total, reference_loss(logits, index, targets))
