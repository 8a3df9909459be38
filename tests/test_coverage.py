"""Coverage of the cells' confidence intervals, measured by simulation (fixed seeds: deterministic).

A benchmark is `problems` problems whose pass rates are drawn from Beta(a, b); each problem gets
`samples` samples and its pass@k is estimated without bias (`pass_at_k`). The truth an interval
must cover is the population mean, E[1 - (1 - p)^k] over the Beta distribution: the accuracy on
the benchmark's population of problems, not just on the problems drawn (the stronger claim; the
mean over the drawn problems is covered more often still, the within-problem noise being small).

Measured at 2,000 repetitions (seed 1), nominal 0.95, `mean_ci` vs the percentile bootstrap:
30 problems, Beta(0.08, 2), 16 samples: pass@1 0.926 (bootstrap 0.83), pass@4 0.962, pass@16 0.975;
100 problems, Beta(2, 2): pass@1 0.957; 500 problems, Beta(2, 2): 0.951.
"""

import numpy as np
import pytest
from scipy import integrate, stats

from analysis.estimators import bootstrap_ci, mean_ci, pass_at_k

SAMPLES = 16


def population_mean(a: float, b: float, k: int) -> float:
    return integrate.quad(lambda p: (1 - (1 - p) ** k) * stats.beta.pdf(p, a, b), 0, 1, limit=200)[0]


def simulate(a, b, problems, k, reps, seed, method):
    """The share of `reps` simulated benchmarks whose interval from `method(values)` holds the truth."""
    truth = population_mean(a, b, k)
    table = np.array([pass_at_k(SAMPLES, c, k) for c in range(SAMPLES + 1)])  # value per count of correct
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        values = table[rng.binomial(SAMPLES, rng.beta(a, b, problems))]
        low, high = method(values)
        hits += low <= truth <= high
    return hits / reps


def wilson(values):
    return mean_ci(values, SAMPLES)


@pytest.mark.parametrize("k, at_least", [(1, 0.90), (4, 0.93), (16, 0.93)])
def test_small_hard_benchmark_is_covered(k, at_least):
    # AIME-like: 30 problems, most never solved. Measured at seed 0, 1,000 repetitions: 0.918, 0.958, 0.971
    # (the percentile bootstrap, 400 repetitions: 0.825, 0.893, 0.893).
    assert simulate(0.08, 2, 30, k, 1000, 0, wilson) >= at_least


def test_the_percentile_bootstrap_under_covers_there():
    # What the cells used before: measured 0.83 at nominal 0.95 (the 0.83-0.88).
    coverage = simulate(0.08, 2, 30, 1, 300, 0, lambda v: bootstrap_ci(v, resamples=500))
    assert coverage < 0.9


@pytest.mark.parametrize("problems, k", [(100, 1), (500, 1), (100, 16)])
def test_balanced_benchmarks_are_covered_near_nominal(problems, k):
    # Measured at seed 0: 0.950, 0.935, 0.963 (the percentile bootstrap: 0.945, 0.933, and 0.825 for pass@16,
    # whose values pile up at 1). Not far above nominal either: the interval is not needlessly wide.
    coverage = simulate(2, 2, problems, k, 400, 0, wilson)
    assert 0.90 <= coverage <= 0.99


def test_the_interval_always_holds_the_estimate_and_stays_in_0_1():
    rng = np.random.default_rng(0)
    cases = [np.zeros(30), np.ones(30), np.full(30, 0.5), np.array([0.0]), np.array([1.0]), np.array([0.25]),
             np.r_[np.zeros(29), 1.0], np.r_[np.ones(29), 0.0], np.r_[np.zeros(29), 1 / 16]]
    cases += [rng.beta(0.08, 2, int(rng.integers(1, 60))) for _ in range(200)]
    for values in cases:
        for mc_se in (0.0, 0.01):
            low, high = mean_ci(values, SAMPLES, mc_se=mc_se)
            assert 0 <= low <= values.mean() <= high <= 1, (values, low, high)
    # All-zero and all-one benchmarks still get an interval of positive width (the Wilson bound).
    assert mean_ci(np.zeros(30), SAMPLES)[1] == pytest.approx(0.125, abs=0.01)
    assert mean_ci(np.ones(30), SAMPLES)[0] == pytest.approx(0.875, abs=0.01)
