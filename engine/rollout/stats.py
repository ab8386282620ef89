"""The one-sided Mann-Whitney U test that ``compare = "mann-whitney"`` gates with.

Our own implementation, not scipy's: scipy is ~40 MB of wheels for one function of ~80 lines,
and sluice runs on bastions and CI runners where that matters. It follows
``scipy.stats.mannwhitneyu`` exactly — same U, same p — and ``tests/engine/test_stats.py``
checks it against scipy (a dev-only dependency) on fixed samples with ties, small n and n=1:

- ``U`` is the statistic of the first sample (the wave's): the number of pairs (x, y) with
  x > y, ties counting one half (mid-ranks).
- ``exact`` p: the permutation distribution of U, counted; used (as scipy's ``auto`` does) when
  there are no ties and one sample has at most :data:`EXACT_MAX` values.
- ``asymptotic`` p: the normal approximation with the tie correction of the variance and a
  continuity correction of 0.5 (scipy's defaults).

The alternative is one-sided: ``greater`` asks "are the wave's values larger than the
baseline's?" (latency, error rate), ``less`` the opposite (a check with only a ``min``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

#: The exact distribution is used when one sample has at most this many values and nothing ties.
EXACT_MAX = 8


@dataclass(frozen=True)
class UTest:
    """One test's result: ``u`` of the first sample, its one-sided ``p``, sizes and medians."""

    u: float
    p: float
    n1: int
    n2: int
    method: str  # exact | asymptotic
    median1: float
    median2: float

    def text(self) -> str:
        return (
            f"U={self.u:g} p={self.p:.3g} median {self.median1:.4g} vs {self.median2:.4g} "
            f"(n={self.n1} vs {self.n2})"
        )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _ranks(values: Sequence[float]) -> list[float]:
    """Mid-ranks (1-based) of ``values``: tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@lru_cache(maxsize=256)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) arrangements give each U = 0..n1*n2 (no ties)."""
    # counts[m][u] for the current n2 column, built up one value of the second sample at a time:
    # f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u)
    prev = [[1] for _ in range(n1 + 1)]  # n = 0: only U = 0, one way
    for n in range(1, n2 + 1):
        cur: list[list[int]] = [[1]]  # m = 0: one way, U = 0
        for m in range(1, n1 + 1):
            size = m * n + 1
            row = [0] * size
            for u, c in enumerate(prev[m]):  # f(m, n - 1, u)
                row[u] += c
            for u, c in enumerate(cur[m - 1]):  # f(m - 1, n, u - n)
                if u + n < size:
                    row[u + n] += c
            cur.append(row)
        prev = cur
    return tuple(prev[n1])


def smallest_p(n1: int, n2: int) -> float:
    """The smallest one-sided p any data of these sizes can give (1 / C(n1+n2, n1)).

    With fewer values than this allows, no shift however large can be significant: the gate
    calls such a comparison inconclusive rather than passing it.
    """
    if n1 < 1 or n2 < 1:
        return 1.0
    return 1.0 / math.comb(n1 + n2, n1)


def mann_whitney(
    x: Sequence[float],
    y: Sequence[float],
    alternative: str = "greater",
    method: str = "auto",
) -> UTest:
    """One-sided Mann-Whitney U test of ``x`` against ``y`` (as ``scipy.stats.mannwhitneyu``).

    Args:
        alternative: ``greater`` (x tends to be larger) or ``less``.
        method: ``auto``, ``exact`` or ``asymptotic``.

    Raises:
        ValueError: an empty sample, or an unknown alternative or method.
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("both samples need at least one value")
    if alternative not in ("greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    ranks = _ranks([*x, *y])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    # "less" for x is "greater" for y: the same tail, from the other side.
    u = u1 if alternative == "greater" else u2
    ties = Counter([*x, *y])
    tied = any(count > 1 for count in ties.values())
    if method == "auto":
        method = "exact" if min(n1, n2) <= EXACT_MAX and not tied else "asymptotic"
    if method == "exact":
        counts = _u_counts(n1, n2)
        total = math.comb(n1 + n2, n1)
        # P(U >= u); with ties U may be a half-integer, so round up to the next attainable value.
        start = math.ceil(u)
        p = sum(counts[start:]) / total
    elif method == "asymptotic":
        n = n1 + n2
        tie_term = sum(t**3 - t for t in ties.values() if t > 1)
        variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
        if variance <= 0:  # every value equal: no evidence either way
            p = 1.0
        else:
            z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
            p = 0.5 * math.erfc(z / math.sqrt(2))
    else:
        raise ValueError(f"unknown method {method!r}")
    return UTest(
        u=u1,
        p=min(1.0, max(0.0, p)),
        n1=n1,
        n2=n2,
        method=method,
        median1=_median(x),
        median2=_median(y),
    )
