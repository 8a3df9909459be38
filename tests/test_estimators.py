"""The estimators against brute-force enumeration of subsets, and the bootstrap CI."""

import itertools
import random
from collections import Counter
from math import comb

import numpy as np
import pytest

from analysis.estimators import bootstrap_ci, maj_at_k, mean_ci, pass_at_k


def brute_pass(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


def brute_maj(answers, correct, k):
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for s in subsets:
        votes = Counter(answers[i] for i in s if answers[i] is not None)
        if votes:
            top = max(votes.values())
            tied = [a for a, v in votes.items() if v == top]
            total += (correct in tied) / len(tied)
    return total / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), abs=1e-12)


def test_pass_at_k_closed_form_at_scale():
    assert pass_at_k(10_000, 3, 100) == pytest.approx(1 - comb(9_997, 100) / comb(10_000, 100), rel=1e-9)


def test_maj_at_k_matches_enumeration_on_random_inputs():
    rng = random.Random(0)
    for _ in range(400):
        n = rng.randint(1, 10)
        answers = [rng.choice([None, "a", "b", "c", "d"]) for _ in range(n)]
        k = rng.randint(1, n)
        assert maj_at_k(answers, "a", k) == pytest.approx(brute_maj(answers, "a", k), abs=1e-12)


def test_maj_at_1_equals_pass_at_1():
    rng = random.Random(1)
    for _ in range(50):
        answers = [rng.choice([None, 1, 2, 3]) for _ in range(rng.randint(1, 12))]
        assert maj_at_k(answers, 1, 1) == pytest.approx(pass_at_k(len(answers), answers.count(1), 1))


def test_ties_and_abstentions():
    assert maj_at_k(["a", "b"], "a", 2) == pytest.approx(0.5)  # a tie of two: half credit
    assert maj_at_k([None, None], "a", 2) == 0.0  # no votes is wrong
    assert maj_at_k(["a", None, None], "a", 3) == 1.0


def test_estimators_reject_impossible_k():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        maj_at_k(["a"], "a", 2)


def test_bootstrap_ci_brackets_the_mean():
    values = np.random.default_rng(0).binomial(1, 0.3, size=400).astype(float)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.15


def test_mean_ci_brackets_the_mean_and_checks_its_input():
    values = np.random.default_rng(0).binomial(1, 0.3, size=400).astype(float)
    low, high = mean_ci(values, 1)
    assert low < values.mean() < high and high - low < 0.15
    # 0/1 values: Wilson's score interval, solved here as the roots of (m - mu)^2 = q^2 mu (1 - mu) / n,
    # with Student's quantile at 399 degrees of freedom.
    from scipy import stats
    m, n, q = values.mean(), len(values), stats.t.ppf(0.975, 399)
    roots = np.roots([1 + q**2 / n, -(2 * m + q**2 / n), m**2])
    assert (low, high) == pytest.approx(tuple(sorted(roots)), abs=1e-9)
    assert all(np.isnan(mean_ci(np.array([]), 4)))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        mean_ci(np.array([0.5, 1.5]), 4)
    with pytest.raises(ValueError, match="level"):
        mean_ci(values, 4, level=95)


def test_maj_at_k_falls_back_to_random_subsets_with_a_standard_error():
    from analysis.estimators import maj_at_k_estimate

    rng = random.Random(3)
    answers = [rng.choice([None, "a", "b", "c", "d", "e"]) for _ in range(3000)]
    value, se = maj_at_k_estimate(answers, "a", 500)
    assert se > 0  # too large to count exactly: sampled
    truth = brute_maj_sampled(answers, "a", 500, draws=4000)
    assert abs(value - truth) < 5 * se + 0.02
    small_value, small_se = maj_at_k_estimate(["a", "b", "a"], "a", 2)
    assert small_se == 0 and small_value == pytest.approx(brute_maj(["a", "b", "a"], "a", 2))


def brute_maj_sampled(answers, correct, k, draws):
    rng = random.Random(9)
    total = 0.0
    for _ in range(draws):
        votes = Counter(a for a in rng.sample(answers, k) if a is not None)
        top = max(votes.values())
        tied = [a for a, v in votes.items() if v == top]
        total += (correct in tied) / len(tied)
    return total / draws
