"""Facet counts and tag search at interactive speed: every item's shown tags as columns in memory.

The database stays the one place the catalogue lives. Beside each item's tag rows the indexer writes, in the same
transaction, a small packed row (`layout.TagLayout`). A reader loads those rows once into one column per attribute
(numpy) and, like the similarity index, follows the database's generation: before each query it applies only what
writers changed since. Counting every value of every attribute under any filters and confidence threshold is then a few
vectorised passes over the columns (about 30 ms at a million items on the project's 2-core machine), where the
GROUP BYs over eight million tag rows took seconds on either backend (benchmarks/README.md, "Choosing the facet
representation"). Counts equal a full GROUP BY over the tag rows of the same generation: confidences are stored
as float32 numbers in both places and the threshold is compared exactly (`float32_at_least`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fashionattr.catalog.layout import CODE, CONFIDENCE, NO_VALUE, TagLayout

if TYPE_CHECKING:
    from fashionattr.catalog.store import CatalogStore, Changes


def float32_at_least(threshold: float) -> np.float32:
    """The smallest float32 that is >= `threshold`: for every float32 x, x >= result exactly when x >= threshold.

    Confidences are float32 numbers; comparing them with a float64 threshold rounded to float32 (numpy's default)
    could count a confidence just below the threshold.
    """
    rounded = np.float32(threshold)
    if float(rounded) < threshold:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return np.float32(rounded)


@dataclass(frozen=True)
class FacetCounts:
    """What the facet sidebar shows, per attribute: how many matching items carry each value, and how many have no
    value for it (the tag does not apply to the photo, or is below the confidence threshold).

    Each attribute's numbers apply the *other* attributes' filters only (the usual faceted-search rule), so a user
    can see what switching a filter's value would give. `total` is how many items match every filter.
    """

    total: int
    counts: dict[str, dict[str, int]]
    no_value: dict[str, int]
    not_applicable: dict[str, int]
    """The part of `no_value` whose tag does not apply at all (the rest is below the threshold)."""
    generation: int


class FacetIndex:
    """The catalogue's shown tags as columns, kept in step with the database; safe to share between threads."""

    def __init__(self, store: CatalogStore, layout: TagLayout) -> None:
        self.store = store
        self.layout = layout
        width = len(layout.attributes)
        self.alive = np.zeros(0, dtype=bool)
        """Indexed by item id: whether the item is in the catalogue."""
        self.codes = np.zeros((width, 0), dtype=CODE)
        self.confidences = np.zeros((width, 0), dtype=CONFIDENCE)
        self.generation: int | None = None
        self._shown: tuple[int | None, np.float32, list[np.ndarray]] | None = None
        self._last: tuple[tuple[object, ...], FacetCounts] | None = None
        self._lock = threading.RLock()

    # -- keeping in step ---------------------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Bring the columns up to the database's current generation (one tiny query when nothing changed)."""
        with self._lock:
            if self.generation is not None and self.store.generation() == self.generation:
                return self.generation
            self.apply(self.store.tag_changes_since(self.generation, self.layout))
            assert self.generation is not None
            return self.generation

    def apply(self, changes: Changes) -> None:
        with self._lock:
            ids = np.array([i for i, _ in changes.upserted], dtype=np.int64)
            removed = np.array(changes.removed, dtype=np.int64)
            top = int(max(ids.max(initial=-1), removed.max(initial=-1))) + 1
            if top > len(self.alive):
                self._grow(top)
            if len(removed):
                self.alive[removed] = False
                self.codes[:, removed] = NO_VALUE
            if len(ids):
                codes, confidences, damaged = self.layout.decode([row for _, row in changes.upserted])
                self.alive[ids] = True
                self.codes[:, ids] = codes
                self.confidences[:, ids] = confidences
                if damaged.any():  # packed again from the tag rows, the catalogue's own record
                    repaired = self.store.packed_rows(ids[damaged].tolist(), self.layout)
                    codes, confidences, _ = self.layout.decode([row for _, row in repaired])
                    self.codes[:, [i for i, _ in repaired]] = codes
                    self.confidences[:, [i for i, _ in repaired]] = confidences
            self.generation = changes.generation
            self._shown = None

    def _grow(self, size: int) -> None:
        size = max(size, len(self.alive) + len(self.alive) // 4)  # amortised: a catalogue grows batch by batch
        extra = size - len(self.alive)
        self.alive = np.concatenate([self.alive, np.zeros(extra, dtype=bool)])
        self.codes = np.concatenate([self.codes, np.full((len(self.codes), extra), NO_VALUE, dtype=CODE)], axis=1)
        self.confidences = np.concatenate([self.confidences, np.zeros((len(self.codes), extra), dtype=CONFIDENCE)],
                                          axis=1)  # fmt: skip

    # -- answering ---------------------------------------------------------------------------------------------------

    def _shown_codes(self, min_confidence: float) -> list[np.ndarray]:
        """Per attribute, each item's shown class (-1: none) at this threshold; the last threshold's are kept."""
        threshold = float32_at_least(min_confidence)
        if self._shown is not None and self._shown[:2] == (self.generation, threshold):
            return self._shown[2]
        if min_confidence <= 0:
            shown = list(self.codes)
        else:
            below = np.int16(NO_VALUE)
            shown = [np.where(c >= threshold, codes, below) for codes, c in zip(self.codes, self.confidences,
                                                                                 strict=True)]  # fmt: skip
        self._shown = (self.generation, threshold, shown)
        return shown

    def _filter_masks(self, filters: Mapping[str, str], shown: list[np.ndarray]) -> dict[int, np.ndarray]:
        masks = {}
        for attribute, value in filters.items():
            position, code = self.layout.code(attribute, value)
            masks[position] = shown[position] == code
        return masks

    def _matching(self, masks: Mapping[int, np.ndarray], leave_out: int | None = None) -> np.ndarray:
        matching = self.alive
        for position, mask in masks.items():
            if position != leave_out:
                matching = matching & mask
        return matching

    def counts(self, filters: Mapping[str, str], min_confidence: float = 0.0) -> FacetCounts:
        """Facet counts of every attribute for items matching `filters` (attribute -> class) at `min_confidence`.

        The last answer is kept for its generation: a page view that asks for the counts, the total and the
        no-value counts one after another counts once."""
        with self._lock:
            self.refresh()
            asked = (self.generation, tuple(sorted(filters.items())), min_confidence)
            if self._last is not None and self._last[0] == asked:
                return self._last[1]
            answer = self._count(filters, min_confidence)
            self._last = (asked, answer)
            return answer

    def _count(self, filters: Mapping[str, str], min_confidence: float) -> FacetCounts:
        with self._lock:
            shown = self._shown_codes(min_confidence)
            masks = self._filter_masks(filters, shown)
            everything = self._matching(masks)
            counts, no_value, not_applicable = {}, {}, {}
            for position, attribute in enumerate(self.layout.attributes):
                matching = everything if position not in masks else self._matching(masks, leave_out=position)
                values = np.where(matching, shown[position], np.int16(NO_VALUE))
                per_class = {cls: int(np.count_nonzero(values == n))
                             for n, cls in enumerate(self.layout.classes[position])}  # fmt: skip
                counts[attribute] = per_class
                matched = int(np.count_nonzero(matching))
                no_value[attribute] = matched - sum(per_class.values())
                not_applicable[attribute] = int(np.count_nonzero(matching & (self.codes[position] == NO_VALUE)))
            assert self.generation is not None
            return FacetCounts(int(np.count_nonzero(everything)), counts, no_value, not_applicable, self.generation)

    def search(self, filters: Mapping[str, str], min_confidence: float, limit: int,
               offset: int) -> tuple[int, list[int]]:  # fmt: skip
        """(how many items carry every filtered tag, the ids of one page of them): the most confident first (the least
        confident filtered tag decides), ties to the earlier indexed item (the lower id)."""
        if not filters:
            raise ValueError("search without filters lists by path, in the database")
        with self._lock:
            self.refresh()
            shown = self._shown_codes(min_confidence)
            masks = self._filter_masks(filters, shown)
            ids = np.flatnonzero(self._matching(masks))
            scores = np.min([self.confidences[position][ids] for position in masks], axis=0) if len(ids) else ids
        return len(ids), _page(ids, scores, max(0, offset), max(0, limit))


def _page(ids: np.ndarray, scores: np.ndarray, offset: int, limit: int) -> list[int]:
    """Ids `offset`..`offset + limit` in the order (score descending, id ascending), sorting only what it must."""
    wanted = offset + limit
    if limit == 0 or offset >= len(ids):
        return []
    if wanted < len(ids):
        cut = np.partition(scores, len(ids) - wanted)[len(ids) - wanted]  # the wanted-th largest score
        keep = scores >= cut  # every tie of the cut stays, so the id order among them is decided below
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))
    return [int(i) for i in ids[order][offset:wanted]]
