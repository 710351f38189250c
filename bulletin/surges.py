"""Surges (激增) against the previous period of equal length, with an exact test.

For a value (a category, an area or a unit) counted ``a`` times in the current period and ``b``
times in the previous one, under "no change" each of the a+b orders falls in the current period
with probability ½ (equal lengths): the one-sided exact binomial test (the conditional test of two
Poisson rates) gives the p-value. p-values are adjusted for the many values tested
(Benjamini–Hochberg); a surge is significant when the adjusted value is below ``alpha``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scipy.stats import binomtest

from bulletin.source import OrderView

DIMENSIONS: dict[str, Callable[[OrderView], str]] = {
    "问题分类": lambda o: o.category,
    "区域": lambda o: o.area,
    "承办单位": lambda o: o.unit,
}


@dataclass(frozen=True)
class Surge:
    dimension: str  # 问题分类 / 区域 / 承办单位
    value: str
    current: int
    previous: int
    p_value: float
    q_value: float  # Benjamini–Hochberg adjusted
    significant: bool

    @property
    def ratio(self) -> float | None:
        return self.current / self.previous if self.previous else None

    def to_json(self) -> dict[str, object]:
        return {
            "dimension": self.dimension, "value": self.value, "current": self.current,
            "previous": self.previous, "p_value": self.p_value, "q_value": self.q_value,
            "significant": self.significant,
        }


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Adjusted p-values (q-values), same order as given."""
    n = len(p_values)
    order = sorted(range(n), key=lambda i: p_values[i])
    q = [1.0] * n
    running = 1.0
    for rank in range(n, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * n / rank)
        q[i] = min(1.0, running)
    return q


def compare_counts(
    dimension: str, current: Counter[str], previous: Counter[str], *,
    alpha: float = 0.05, min_count: int = 5,
) -> list[Surge]:
    """Values with at least ``min_count`` current orders, tested; most significant first."""
    values = [v for v, n in current.items() if n >= min_count and n > previous.get(v, 0)]
    p = [binomtest(current[v], current[v] + previous.get(v, 0), 0.5, "greater").pvalue
         for v in values]
    q = benjamini_hochberg(p)
    surges = [
        Surge(dimension, v, current[v], previous.get(v, 0), float(pv), float(qv), qv < alpha)
        for v, pv, qv in zip(values, p, q)
    ]
    return sorted(surges, key=lambda s: (s.q_value, -s.current, s.value))


def find_surges(
    current: Sequence[OrderView], previous: Sequence[OrderView], *,
    alpha: float = 0.05, min_count: int = 5,
) -> list[Surge]:
    """Tested increases per dimension. With no orders at all in the previous period there is no
    baseline, and nothing is tested (the bulletin says so)."""
    if not previous:
        return []
    found: list[Surge] = []
    for name, key in DIMENSIONS.items():
        cur = Counter(key(o) for o in current)
        prev = Counter(key(o) for o in previous)
        found.extend(compare_counts(name, cur, prev, alpha=alpha, min_count=min_count))
    return found
