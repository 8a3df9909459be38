"""Unbiased estimators of a cell's accuracy from N_max samples per problem, and its confidence interval.

Every N <= N_max is estimated from the same samples, never by drawing again:
- `pass_at_k`: Chen et al. 2021, the chance that a random k-subset holds a correct sample;
- `maj_at_k`: the expected accuracy of a majority vote over a uniformly random k-subset,
  computed exactly by counting subsets (a dynamic programme over answer classes), or, where
  that would be too slow (thousands of samples), estimated from 2,000 random subsets with
  its standard error (`maj_at_k_estimate`);
- `best_of_k`: a verifier's best-of-N, the expected correctness of the highest-scored sample of a
  uniformly random k-subset, exact in closed form from the sorted scores;
- `weighted_maj_at_k`: a verifier-weighted vote, the expected correctness of the answer class with
  the highest total score in a random k-subset, exact by enumerating the subsets where there are
  few (every k of 16 samples), else from 2,000 random subsets with its standard error
  (`weighted_maj_at_k_estimate`).

A cell's accuracy is the mean of per-problem values in [0, 1]; `mean_ci` gives its interval
over problems (a Wilson score interval with a design effect, see there). `bootstrap_ci`, the
percentile bootstrap it replaced for cells, under-covers on small hard benchmarks and is kept
for comparisons (bench/grid_cost.py, the coverage tests).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from fractions import Fraction
from itertools import combinations
from math import comb, sqrt

import numpy as np
from scipy import stats


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k): the probability that k of n samples (c correct) include a correct one."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i).
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# DP steps beyond which maj@k is estimated from random subsets. Measured on 2 cores: exact counting
# takes 0.02-0.4 us per step (0.12 s at 5.0e6 steps with 5 wrong classes, 0.33 s at 5.2e6 with 10,
# 1.5 s at 1.35e7 with 50), sampling 0.02-0.04 s whatever the size; 5e6 keeps one exact problem
# under about a second while every N <= 256 with a handful of classes is still counted exactly.
EXACT_COST_LIMIT = 5_000_000
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


def _choose_ratio(n: int, k: int) -> np.ndarray:
    """r[a] = C(a, k) / C(n, k) for a = 0..n: the chance that a random k-subset of n lies inside a fixed
    a-set. A product from the top (C(a, k) / C(a+1, k) = 1 - k/(a+1)), as in `pass_at_k`: no huge binomials."""
    factors = 1.0 - k / np.arange(1, n + 1)  # factors[a] = 1 - k/(a+1), the step from a+1 down to a
    ratio = np.ones(n + 1)
    ratio[:n] = np.cumprod(np.clip(factors, 0.0, None)[::-1])[::-1]
    return ratio


def _score_keys(scores: Sequence[float | None]) -> np.ndarray:
    """Scores as floats for ranking: None or NaN (an unscored sample) ranks below every score."""
    keys = np.array([np.nan if s is None else float(s) for s in scores], dtype=float)
    return np.where(np.isnan(keys), -np.inf, keys)


def best_of_k(scores: Sequence[float | None], correct: Sequence[bool], k: int) -> float:
    """Best-of-k with a verifier: the expected correctness of the highest-scored sample of a uniformly
    random k-subset of one problem's samples. Samples tied at the top share the credit equally; an
    unscored sample (None or NaN) ranks below every scored one.

    Exact, in closed form: with the distinct scores in ascending order, a group of m samples tied at
    score s (c of them correct) above L lower-scored samples is the top of the subset with probability
    (C(L + m, k) - C(L, k)) / C(n, k), and then the chosen members of the group (a uniformly random
    nonempty subset of it) are correct in fraction c / m on average, so the credit is the sum over
    groups of c / m times that probability.
    """
    n = len(scores)
    if len(correct) != n:
        raise ValueError(f"best_of_k needs as many scores as correct flags, got {n} and {len(correct)}")
    if not 1 <= k <= n:
        raise ValueError(f"best_of_k needs 1 <= k <= len(scores), got k={k} with {n} scores")
    keys = _score_keys(scores)
    right = np.asarray(correct, dtype=bool)
    ratio = _choose_ratio(n, k)
    values, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)  # ascending
    hits = np.bincount(inverse, weights=right.astype(float), minlength=len(values))
    below = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    top = ratio[below + sizes] - ratio[below]
    return float(np.clip(np.sum(hits / sizes * top), 0.0, 1.0))


# Subsets enumerated for an exact weighted majority: C(16, 8) = 12,870, so every k of 16 samples is
# exact; beyond this (C(20, 10) = 184,756 is the largest exact middle) 2,000 random subsets are drawn.
WMAJ_EXACT_SUBSETS = 200_000


def weighted_maj_at_k(answers: Sequence[Hashable | None], scores: Sequence[float | None], correct: Hashable,
                      k: int) -> float:
    """Expected correctness of a verifier-weighted vote over a uniformly random k-subset of `answers`.

    Each sample votes for its answer class (grouped as maj@k groups them) with its score as weight; the
    class with the highest total wins. A sample with no answer or no score (None or NaN) abstains; a
    subset with no votes is wrong; a tie of t classes holding the correct one counts 1/t (totals within
    a relative 1e-9 tie, so float rounding does not split equal sums). Scores must be finite and >= 0
    (probabilities of being correct): a negative weight would make a vote count against its class.
    Exact where there are at most WMAJ_EXACT_SUBSETS subsets, else see `weighted_maj_at_k_estimate`.
    """
    return weighted_maj_at_k_estimate(answers, scores, correct, k)[0]


def weighted_maj_at_k_estimate(answers: Sequence[Hashable | None], scores: Sequence[float | None],
                               correct: Hashable, k: int, seed: int = 0) -> tuple[float, float]:
    """(weighted maj@k, its standard error): exact (error 0) by enumerating all k-subsets when there are at
    most WMAJ_EXACT_SUBSETS, else the mean over MC_SUBSETS uniformly random k-subsets drawn with `seed`."""
    n = len(answers)
    if len(scores) != n:
        raise ValueError(f"weighted_maj_at_k needs as many scores as answers, got {len(scores)} and {n}")
    if not 1 <= k <= n:
        raise ValueError(f"weighted_maj_at_k needs 1 <= k <= len(answers), got k={k} with {n} answers")
    weights = np.array([np.nan if s is None else float(s) for s in scores], dtype=float)
    if np.any(np.isinf(weights)) or np.any(weights < 0):
        raise ValueError("weighted_maj_at_k needs finite scores >= 0 (None or NaN abstains)")
    # Column 0 is the correct class, 1.. the others; abstainers get no column.
    classes: dict[Hashable, int] = {correct: 0}
    votes = np.zeros((n, 1 + len({a for a in answers if a is not None and a != correct})))
    totals = np.zeros_like(votes)
    for i, (answer, w) in enumerate(zip(answers, weights)):
        if answer is None or np.isnan(w):
            continue
        column = classes.setdefault(answer, len(classes))
        votes[i, column], totals[i, column] = 1.0, w
    if comb(n, k) <= WMAJ_EXACT_SUBSETS:
        subsets = np.array(list(combinations(range(n), k)), dtype=np.intp).reshape(-1, k)
        return float(_weighted_wins(subsets, votes, totals).mean()), 0.0
    rng = np.random.default_rng(seed)
    subsets = np.argsort(rng.random((MC_SUBSETS, n)), axis=1)[:, :k]
    wins = _weighted_wins(subsets, votes, totals)
    return float(wins.mean()), float(wins.std(ddof=1) / np.sqrt(MC_SUBSETS))


def _weighted_wins(subsets: np.ndarray, votes: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """The correct class's credit in each subset (rows of sample indices): 1/t if it is among the t classes
    with votes tied at the highest total, else 0."""
    present = np.zeros((len(subsets), votes.shape[1]))
    summed = np.zeros_like(present)
    for j in range(subsets.shape[1]):  # column by column: no subsets x k x classes array
        present += votes[subsets[:, j]]
        summed += totals[subsets[:, j]]
    summed = np.where(present > 0, summed, -np.inf)  # a class without votes in the subset cannot win
    top = summed.max(axis=1, keepdims=True)
    tied = (present > 0) & (summed >= top - 1e-9 * np.maximum(np.abs(top), 1.0))
    return np.where(tied[:, 0], 1.0 / np.maximum(tied.sum(axis=1), 1), 0.0)


def mean_ci(values: np.ndarray, n_samples: int, level: float = 0.95, mc_se: float = 0.0) -> tuple[float, float]:
    """Confidence interval of the mean of per-problem values in [0, 1] (one per problem, each from
    `n_samples` samples), for the mean over the population the problems were drawn from.

    A Wilson score interval with a design effect: a value in [0, 1] with mean mu has variance
    phi * mu * (1 - mu) for some phi <= 1 (1 for 0/1 values), so the interval is the set of mu with
    (mean - mu)^2 <= q^2 phi mu (1 - mu) / problems. Like Wilson's, it stays inside [0, 1], always holds
    the mean, and is asymmetric near 0 and 1, where hard and easy benchmarks live. phi is estimated
    from the values (floored at 1 / n_samples, a single problem's binomial noise, so identical values
    never give a zero width; 1 when the mean is 0 or 1, the bound). The quantile q is Student's t
    with degrees of freedom estimated from the values' kurtosis (2 P m2^2 / (m4 - m2^2 (P-3)/(P-1)),
    which is P - 1 for normal data): on a hard benchmark a few solved problems carry the whole
    variance, the variance estimate is then unreliable, and the interval widens accordingly.
    Simulated coverage of the population mean at nominal 0.95 (tests/test_coverage.py): 0.92 for 30
    problems with pass rates from Beta(0.08, 2) and 16 samples (pass@1), where the percentile
    bootstrap covers 0.83; 0.94-0.96 on 100-500 problems from Beta(2, 2).

    `mc_se`: the Monte-Carlo standard error of the mean itself (maj@k estimated from random subsets),
    added in quadrature to both half-widths, at the normal quantile of `level`.
    """
    values = np.asarray(values, dtype=float)
    problems = len(values)
    if problems == 0:
        return float("nan"), float("nan")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if np.any((values < 0) | (values > 1)) or not np.all(np.isfinite(values)):
        raise ValueError("mean_ci needs per-problem values in [0, 1]")
    mean = float(values.mean())
    spread = values - mean
    m2, m4 = float(np.mean(spread ** 2)), float(np.mean(spread ** 4))
    if 0 < mean < 1 and problems > 1 and m2 > 0:
        phi = m2 * problems / (problems - 1) / (mean * (1 - mean))
        excess = m4 - m2 ** 2 * (problems - 3) / (problems - 1)
        dof = 2 * problems * m2 ** 2 / excess if excess > 0 else problems - 1
    else:
        phi, dof = 1.0, problems - 1
    phi = min(max(phi, 1.0 / max(n_samples, 1)), 1.0)
    q = float(stats.t.ppf((1 + level) / 2, min(max(dof, 1.0), max(problems - 1, 1))))
    n_eff = problems / phi
    q2 = q * q
    center = (mean + q2 / (2 * n_eff)) / (1 + q2 / n_eff)
    half = q / (1 + q2 / n_eff) * sqrt(mean * (1 - mean) / n_eff + q2 / (4 * n_eff ** 2))
    # min/max: the interval holds the mean in exact arithmetic; rounding must not move it out.
    low, high = min(max(center - half, 0.0), mean), max(min(center + half, 1.0), mean)
    if mc_se > 0:
        extra = float(stats.norm.ppf((1 + level) / 2)) * mc_se
        low = max(mean - sqrt((mean - low) ** 2 + extra ** 2), 0.0)
        high = min(mean + sqrt((high - mean) ** 2 + extra ** 2), 1.0)
    return float(low), float(high)


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem values (resampling problems). Cells use
    `mean_ci`: this one covers only 0.83 at nominal 0.95 on 30 hard problems (tests/test_coverage.py)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
