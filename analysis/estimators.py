"""Unbiased estimators of a cell's accuracy from N_max samples per problem, and bootstrap CIs.

Every N <= N_max is estimated from the same samples, never by drawing again:
- `pass_at_k`: Chen et al. 2021, the chance that a random k-subset holds a correct sample;
- `maj_at_k`: the expected accuracy of a majority vote over a uniformly random k-subset,
  computed exactly by counting subsets (a dynamic programme over answer classes), or, where
  that would be too slow (thousands of samples), estimated from 2,000 random subsets with
  its standard error (`maj_at_k_estimate`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from fractions import Fraction
from math import comb

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the probability that k of n samples (c correct) include a correct one."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i).
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


EXACT_COST_LIMIT = 2_000_000  # DP steps beyond which maj@k is estimated from random subsets
MC_SUBSETS = 2_000


def maj_at_k(answers: Sequence[Hashable | None], correct: Hashable, k: int) -> float:
    """Expected accuracy of a majority vote over a uniformly random k-subset of `answers`.

    None abstains; a subset with no votes is wrong; a tie counts as the fraction of the tied
    answers that are correct (1/t for t tied answers, one of them correct). Exact where the
    counting is cheap; otherwise the mean over 2,000 random subsets (see `maj_at_k_estimate`).
    """
    return maj_at_k_estimate(answers, correct, k)[0]


def maj_at_k_estimate(answers: Sequence[Hashable | None], correct: Hashable, k: int,
                      seed: int = 0) -> tuple[float, float]:
    """(maj@k, its standard error): exact (error 0) by counting, or from MC_SUBSETS random subsets."""
    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"maj_at_k needs 1 <= k <= len(answers), got k={k} with {n} answers")
    votes = Counter(a for a in answers if a is not None)
    c = votes.pop(correct, 0)
    abstain = n - c - sum(votes.values())
    others = list(votes.values())
    cost = min(c, k) * len(others) * k * (min(max(others, default=0), k) + 1)
    if cost > EXACT_COST_LIMIT:
        return _maj_at_k_sampled(c, others, abstain, k, seed)
    return _maj_at_k_exact(c, others, abstain, k), 0.0


def _maj_at_k_sampled(c: int, others: list[int], abstain: int, k: int, seed: int) -> tuple[float, float]:
    # Class 0 is the correct answer, 1.. the wrong ones, the last abstentions.
    labels = np.repeat(np.arange(len(others) + 2), [c, *others, abstain])
    rng = np.random.default_rng(seed)
    scores = np.empty(MC_SUBSETS)
    for i in range(MC_SUBSETS):
        counts = np.bincount(rng.choice(labels, size=k, replace=False), minlength=len(others) + 2)[:-1]
        top = counts.max()
        scores[i] = 0.0 if top == 0 or counts[0] < top else 1.0 / np.count_nonzero(counts == top)
    return float(scores.mean()), float(scores.std(ddof=1) / np.sqrt(MC_SUBSETS))


def _maj_at_k_exact(c: int, others: list[int], abstain: int, k: int) -> float:
    n = c + sum(others) + abstain
    wins = Fraction(0)
    for j in range(1, min(c, k) + 1):  # the correct answer gets j votes in the subset
        # ways[(m, t)]: ways to draw m samples from the wrong classes with each < j or == j (t ties).
        ways: dict[tuple[int, int], int] = {(0, 0): 1}
        for size in others:
            grown: defaultdict[tuple[int, int], int] = defaultdict(int)
            for (m, t), w in ways.items():
                for x in range(min(size, j, k - j - m) + 1):
                    grown[(m + x, t + (x == j))] += w * comb(size, x)
            ways = grown
        for (m, t), w in ways.items():
            rest = k - j - m  # the remaining picks are abstentions
            if rest <= abstain:
                wins += Fraction(comb(c, j) * w * comb(abstain, rest), t + 1)
    return float(wins / comb(n, k))


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem values (resampling problems)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
