"""KLL quantile sketch (Karnin, Lang, Liberty 2016) in SageMaker's parameters and JSON shape.

Level h holds items of weight 2^h; level capacities are ``max(2, ceil(k * c^(H-1-h)))`` for H levels,
so the top level holds about k items. A full level is sorted and every other item (random offset)
moves up. Sketches merge by concatenating levels and compacting again, so partitions summarised apart
combine into one sketch. Rank error is about 1.7/k of n with high probability for k=2048 (≈0.1%);
while n ≤ k everything stays in level 0 and answers are exact.

Vectorised: a batch is sorted once and compacted by slicing, never item by item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

K_DEFAULT, C_DEFAULT = 2048, 0.64

Floats = NDArray[np.float64]


class KLLParameters(TypedDict):
    c: float
    k: float


class KLLJson(TypedDict):
    """The sketch as SageMaker's statistics.json writes it (``distribution.kll.sketch``)."""
    parameters: KLLParameters
    data: list[list[float]]


def rank_error_bound(k: int = K_DEFAULT) -> float:
    """Normalised rank error that holds with high probability (KLL's constant, empirically ~1.7/k)."""
    return 1.7 / k


@dataclass
class KLL:
    k: int = K_DEFAULT
    c: float = C_DEFAULT
    levels: list[Floats] = field(default_factory=lambda: [np.empty(0)])
    seed: int = 0

    def _capacity(self, h: int) -> int:
        depth = len(self.levels) - 1 - h
        return max(2, math.ceil(self.k * self.c**depth))

    @property
    def n(self) -> int:
        return int(sum(len(lv) << h for h, lv in enumerate(self.levels)))

    def update(self, values: np.ndarray) -> KLL:
        """Add a batch of finite values."""
        if len(values):
            self.levels[0] = np.concatenate([self.levels[0], np.asarray(values, dtype=np.float64)])
            self._compress()
        return self

    def merge(self, other: KLL) -> KLL:
        if (self.k, self.c) != (other.k, other.c):
            raise ValueError("cannot merge KLL sketches with different k or c")
        out = KLL(self.k, self.c, [lv.copy() for lv in self.levels], seed=self.seed ^ (other.seed * 7919 + 1))
        while len(out.levels) < len(other.levels):
            out.levels.append(np.empty(0))
        for h, lv in enumerate(other.levels):
            out.levels[h] = np.concatenate([out.levels[h], lv])
        out._compress()
        return out

    def _compress(self, sorted_levels: set[int] | None = None) -> None:
        """Compact until every level fits; ``sorted_levels`` names levels known sorted (no re-sort needed)."""
        known = set(sorted_levels or ())
        rng = np.random.default_rng(self.seed + self.n)
        h = 0
        while h < len(self.levels):
            level = self.levels[h]
            if len(level) <= self._capacity(h):
                h += 1
                continue
            if h + 1 == len(self.levels):
                self.levels.append(np.empty(0))
            arr = level if h in known else np.sort(level)
            keep = arr[:1] if len(arr) % 2 else arr[:0]   # an odd item stays behind
            promoted = arr[len(keep) + int(rng.integers(2))::2]
            self.levels[h] = keep
            known.add(h)
            if len(self.levels[h + 1]):
                self.levels[h + 1] = np.concatenate([self.levels[h + 1], promoted])
                known.discard(h + 1)
            else:
                self.levels[h + 1] = promoted   # a strided view: copied once, at its final size, below
                known.add(h + 1)
            h = 0   # adding a level shrinks the capacities below it: re-check from the bottom
        # views into a compacted batch would keep the whole batch alive; the levels are small by now
        self.levels = [lv.copy() if lv.base is not None else lv for lv in self.levels]

    def weighted(self) -> tuple[Floats, Floats]:
        """All items sorted, with their weights."""
        if not any(len(lv) for lv in self.levels):
            return np.empty(0), np.empty(0)
        items = np.concatenate(self.levels)
        weights = np.concatenate([np.full(len(lv), float(1 << h)) for h, lv in enumerate(self.levels)])
        order = np.argsort(items, kind="stable")
        return items[order], weights[order]

    def cdf(self, x: np.ndarray) -> Floats:
        """Estimated P(X ≤ x) for each x."""
        items, w = self.weighted()
        if not len(items):
            return np.full(len(np.atleast_1d(x)), np.nan)
        cum = np.cumsum(w)
        idx = np.searchsorted(items, np.atleast_1d(x), side="right")
        out: Floats = np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0) / cum[-1]
        return out

    def quantiles(self, q: np.ndarray) -> Floats:
        items, w = self.weighted()
        if not len(items):
            return np.full(len(np.atleast_1d(q)), np.nan)
        cum = np.cumsum(w) / w.sum()
        idx = np.searchsorted(cum, np.atleast_1d(q), side="left")
        return items[np.minimum(idx, len(items) - 1)]

    # --- SageMaker statistics.json shape ----------------------------------------------------------------

    def to_json(self) -> KLLJson:
        return {"parameters": {"c": self.c, "k": float(self.k)},
                "data": [lv.astype(np.float64, copy=False).tolist() for lv in self.levels]}   # Python floats

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> KLL:
        params = obj.get("parameters", {})
        levels = [np.asarray(lv, dtype=np.float64) for lv in obj.get("data", [])] or [np.empty(0)]
        return cls(int(params.get("k", K_DEFAULT)), float(params.get("c", C_DEFAULT)), levels)


def from_values(values: np.ndarray, k: int = K_DEFAULT, c: float = C_DEFAULT, seed: int = 0,
                presorted: bool = False) -> KLL:
    """The sketch of one batch of finite values; pass them sorted and every compaction is a slice."""
    arr = np.asarray(values, dtype=np.float64)
    is_sorted = presorted or bool(len(arr) < 2 or np.all(arr[1:] >= arr[:-1]))
    sk = KLL(k, c, [arr], seed=seed)
    sk._compress({0} if is_sorted else set())
    return sk
