"""Our Mann-Whitney U test against scipy.stats.mannwhitneyu on fixed samples."""

from __future__ import annotations

import pytest
from scipy.stats import mannwhitneyu

from sluice.engine.rollout.stats import mann_whitney, smallest_p

SAMPLES = {
    "no ties, small n": ([0.13, 0.15, 0.14], [0.11, 0.12, 0.125, 0.118]),
    "n=1 against many": ([0.2], [0.11, 0.12, 0.13, 0.125, 0.119, 0.121]),
    "many against n=1": ([0.11, 0.12, 0.13, 0.125], [0.12]),
    "n=1 against n=1": ([0.3], [0.1]),
    "ties within and across": ([1, 2, 2, 3, 3, 3], [1, 1, 2, 2, 3]),
    "all equal": ([0.5, 0.5, 0.5], [0.5, 0.5]),
    "large, shifted": (
        [0.12 + 0.01 * (i % 7) + 0.03 for i in range(20)],
        [0.12 + 0.01 * (i % 5) for i in range(15)],
    ),
    "large, overlapping": (
        [0.1 + 0.001 * ((i * 37) % 11) for i in range(12)],
        [0.1 + 0.001 * ((i * 53) % 13) for i in range(14)],
    ),
    "exact at the boundary (8 vs 9)": (
        [3.1, 4.7, 5.2, 6.0, 2.2, 8.8, 7.1, 9.9],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.5, 7.5, 8.5, 9.5],
    ),
}


def _tied(name: str) -> bool:
    x, y = SAMPLES[name]
    return len(set(x) | set(y)) < len(x) + len(y)


# The exact distribution is for samples without ties (scipy warns when asked for it with ties).
CASES = [
    (name, method)
    for name in SAMPLES
    for method in ("auto", "exact", "asymptotic")
    if not (method == "exact" and _tied(name))
]


@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize(("name", "method"), CASES)
def test_matches_scipy(name: str, method: str, alternative: str) -> None:
    x, y = SAMPLES[name]
    ours = mann_whitney(x, y, alternative=alternative, method=method)
    ref = mannwhitneyu(x, y, alternative=alternative, method=method)
    assert ours.u == pytest.approx(ref.statistic, abs=1e-12)
    if name == "all equal" and method == "asymptotic":
        # scipy gives nan (a zero variance); we give 1.0: no evidence of a shift.
        assert ours.p == 1.0
    else:
        assert ours.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_auto_chooses_like_scipy() -> None:
    assert mann_whitney([1.0, 2.0], [3.0, 4.0, 5.0]).method == "exact"
    assert mann_whitney([1.0, 2.0, 2.0], [3.0, 4.0, 5.0]).method == "asymptotic"
    nine = [float(i) for i in range(9)]
    assert mann_whitney(nine, [v + 0.5 for v in nine]).method == "asymptotic"


def test_medians_and_text() -> None:
    result = mann_whitney([0.3, 0.5, 0.4], [0.1, 0.2])
    assert (result.median1, result.median2) == (0.4, 0.15000000000000002)
    assert result.text().startswith("U=6 p=0.1 median 0.4 vs 0.15")


def test_smallest_p_says_when_no_data_can_be_significant() -> None:
    assert smallest_p(1, 1) == 0.5
    assert smallest_p(3, 3) == pytest.approx(1 / 20)
    assert smallest_p(5, 5) < 0.05
    assert smallest_p(0, 5) == 1.0
    # It is the p of the most extreme arrangement.
    assert mann_whitney([10.0, 11.0, 12.0], [1.0, 2.0, 3.0]).p == pytest.approx(smallest_p(3, 3))


def test_rejects_empty_and_unknown() -> None:
    with pytest.raises(ValueError):
        mann_whitney([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney([1.0], [1.0], alternative="two-sided")
    with pytest.raises(ValueError):
        mann_whitney([1.0], [2.0], method="permutation")
