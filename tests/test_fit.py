"""Curve fits: known parameters recovered inside calibrated CIs, the bootstrap over problems, model
selection, and published fits reproduced from real data (tests/data/scaling/README.md: provenance).

Tolerances on real data are set from what was measured, with some room; each test says both.
"""

import csv
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.curves import CurveFit, fit_curve_forms
from analysis.estimators import pass_at_k
from analysis.fit import FORMS, aicc, fit_curve, fit_curve_bootstrap, fit_to_dict, select_form, split_for_extrapolation
from orchestrator.errors import FitError

DATA = Path(__file__).parent / "data" / "scaling"

# Synthetic truths on a compute grid like a sweep's: tokens for accuracy curves, k for coverage.
TRUTH = {
    "logistic_log": (np.logspace(1.5, 5, 15), {"lo": 0.1, "hi": 0.8, "slope": 1.5, "mid": 3.0}),
    "power_law_error": (np.logspace(1, 4, 12), {"a": 2.0, "b": 0.5, "floor": 0.1}),
    "exp_power_law": (np.unique(np.logspace(0, 4, 20).astype(int)).astype(float), {"a": -4.0, "b": -0.35}),
}


def true_curve(form, x, params):
    return FORMS[form].curve(np.asarray(x, dtype=float), np.array([params[p] for p in FORMS[form].params]))


def noisy_points(form, seed, noise=0.02):
    x, params = TRUTH[form]
    rng = np.random.default_rng(seed)
    return x, true_curve(form, x, params) + rng.normal(0, noise, len(x))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- synthetic data --------------------------------------------------------------------------------

@pytest.mark.parametrize("form", list(FORMS))
def test_recovers_known_parameters_within_ci(form):
    # 99% intervals, so that all 2-4 parameters of one seeded draw are covered with high probability
    # (at 95%, seed 0 leaves exp_power_law's b just outside: -0.350 vs [-0.348, -0.321]).
    x, y = noisy_points(form, seed=0)
    fit = fit_curve(x, y, form, level=0.99)
    truth = TRUTH[form][1]
    assert fit.form == form and list(fit.params) == list(FORMS[form].params)
    for name, value in truth.items():
        low, high = fit.ci[name]
        assert low <= value <= high, f"{name}: truth {value} outside {fit.ci[name]} (fit {fit.params[name]})"
        assert low <= fit.params[name] <= high
        # An interval as wide as the parameter's whole range would "cover" anything.
        assert high - low < max(abs(value), 1), f"{name}: CI {fit.ci[name]} is uninformative"
    assert fit.x_range == (x.min(), x.max())
    assert fit.n_points == len(x) and fit.ci_method == "covariance"
    np.testing.assert_allclose(fit.residuals, y - fit.predict(x))


@pytest.mark.parametrize("form", list(FORMS))
def test_covariance_ci_coverage(form):
    # Measured per-parameter coverage of the nominal 95% CIs over 100 seeds: 0.92-0.98.
    seeds = 30
    truth = TRUTH[form][1]
    hits = {name: 0 for name in truth}
    for seed in range(seeds):
        fit = fit_curve(*noisy_points(form, seed), form)
        for name, value in truth.items():
            hits[name] += fit.ci[name][0] <= value <= fit.ci[name][1]
    assert all(h / seeds >= 0.8 for h in hits.values()), hits


def test_fits_find_the_least_squares_minimum_from_random_truths():
    # No fit may end worse than the generating parameters themselves: that would be a local
    # minimum or a failed start (0 of 200 random cases per form did when this was written).
    rng = np.random.default_rng(123)
    for _ in range(12):
        x = np.logspace(rng.uniform(0, 2), rng.uniform(3, 6), rng.integers(6, 20))
        lx = np.log10(x)
        truths = {
            "logistic_log": {"lo": rng.uniform(0, 0.4), "hi": rng.uniform(0.4, 1), "slope": rng.uniform(0.3, 5),
                             "mid": rng.uniform(lx.min() - 0.5, lx.max() + 0.5)},
            "power_law_error": {"a": rng.uniform(0.3, 5), "b": rng.uniform(0.05, 1), "floor": rng.uniform(0, 0.4)},
            "exp_power_law": {"a": -rng.uniform(0.5, 8), "b": -rng.uniform(0.05, 0.6)},
        }
        for form, params in truths.items():
            y = np.clip(true_curve(form, x, params) + rng.normal(0, 0.02, len(x)), 0, 1)
            fit = fit_curve(x, y, form)
            rss_true = np.sum((y - true_curve(form, x, params)) ** 2)
            assert np.sum(fit.residuals ** 2) <= rss_true * (1 + 1e-4) + 1e-12, (form, params, fit.params)


def threshold_problems(form, x, params, problems, rng):
    """Per-problem 0/1 outcomes (problems x points): problem i is solved at x once the curve passes
    its difficulty u_i ~ U(0, 1), so the mean over problems is unbiased for the curve and the points
    of one problem are correlated, as in a real sweep."""
    u = rng.uniform(size=(problems, 1))
    return (u < true_curve(form, x, params)).astype(float)


def test_bootstrap_ci_covers_truth():
    # Measured per-parameter coverage over 100 seeds: bootstrap 0.93 (a and b); the covariance CI,
    # which takes the points as independent, only 0.51-0.53 on the same data.
    form, (x, truth) = "exp_power_law", TRUTH["exp_power_law"]
    seeds = 20
    hits = {name: 0 for name in truth}
    wider = 0
    for seed in range(seeds):
        per_problem = threshold_problems(form, x, truth, 300, np.random.default_rng(seed))
        fit = fit_curve_bootstrap(x, per_problem, form, resamples=100, seed=seed)
        assert fit.ci_method == "bootstrap"
        for name, value in truth.items():
            hits[name] += fit.ci[name][0] <= value <= fit.ci[name][1]
        plain = fit_curve(x, per_problem.mean(axis=0), form)
        assert fit.params == plain.params  # same point estimate, only the intervals differ
        wider += np.diff(fit.ci["b"])[0] > np.diff(plain.ci["b"])[0]
    assert all(h / seeds >= 0.8 for h in hits.values()), hits
    assert wider / seeds >= 0.8


def test_bootstrap_is_reproducible_and_validated():
    form, (x, truth) = "logistic_log", TRUTH["logistic_log"]
    per_problem = threshold_problems(form, x, truth, 200, np.random.default_rng(0))
    first = fit_curve_bootstrap(x, per_problem, form, resamples=30, seed=7)
    again = fit_curve_bootstrap(x, per_problem, form, resamples=30, seed=7)
    assert first.ci == again.ci
    assert first.resamples == 30 and first.resamples_failed == 0
    assert fit_to_dict(first)["bootstrap"] == {"resamples": 30, "failed": 0}
    assert first.ci != fit_curve_bootstrap(x, per_problem, form, resamples=30, seed=8).ci
    with pytest.raises(ValueError, match="per_problem_y"):
        fit_curve_bootstrap(x, per_problem[:, :-1], form)


def test_bootstrap_counts_the_resamples_it_cannot_fit():
    # 4 problems, 5 points: some resamples of these 0/1 outcomes cannot be fitted by exp_power_law
    # (measured: 2 of 50 at seed 0). They are left out of the percentiles and counted, not hidden.
    rng = np.random.default_rng(0)
    x = np.logspace(0, 3, 5)
    per_problem = (rng.random((4, 5)) < np.linspace(0.1, 0.9, 5)).astype(float)
    fit = fit_curve_bootstrap(x, per_problem, "exp_power_law", resamples=50, seed=0)
    assert fit.resamples == 50 and fit.resamples_failed == 2
    assert fit_to_dict(fit)["bootstrap"] == {"resamples": 50, "failed": 2}


def test_a_form_that_cannot_be_fitted_is_recorded_under_the_name_its_error_carries():
    # Coverage that jumps from 0.25 to 1: no start of exp_power_law converges (measured), the others do.
    x, y = np.logspace(0, 3, 5), np.array([0.0, 0.25, 0.25, 1.0, 1.0])
    with pytest.raises(FitError) as failed:
        fit_curve(x, y, "exp_power_law")
    assert failed.value.form == "exp_power_law"
    assert str(failed.value) == "exp_power_law: no start converged on 5 points"
    points = pd.DataFrame({"budget": 0, "n": [1, 2, 4, 8, 16], "x": x, "accuracy": y, "ci_low": y, "ci_high": y})
    curve = fit_curve_forms(CurveFit("m", "d", "cap", "coverage", "pass@k", 0, points), "aicc")
    assert curve.selection is None and curve.chosen is None and not curve.fits
    assert curve.errors == {"exp_power_law": str(failed.value)}
    assert curve.notes == [f"no form fits (exp_power_law: {failed.value})"]


@pytest.mark.parametrize("form", list(FORMS))
def test_select_form_picks_the_generating_form_by_aicc(form):
    # Measured at noise 0.01 (12-20 points): AIC picked the generating form in 20 of 20 seeds for every
    # form; AICc, its small-sample correction and now the default, picks it in every seed tried here.
    for seed in range(3):
        x, y = noisy_points(form, seed, noise=0.01)
        selection = select_form(x, y)
        assert selection.criterion == "aicc"
        assert selection.chosen == selection.by_aicc == form, {f: r.aicc for f, r in selection.reports.items()}
        assert set(selection.reports) == set(FORMS)
        for report in selection.reports.values():
            assert math.isfinite(report.aicc) and math.isfinite(report.extrapolation_error)
            p = len(FORMS[report.fit.form].params)
            assert report.aicc == pytest.approx(report.aic + 2 * p * (p + 1) / (len(x) - p - 1))


def _power_law_draws(points, draws=20):
    """`draws` noisy samples of the 3-parameter power law on `points` log-spaced compute levels."""
    x = np.logspace(1, 4, points)
    truth = np.array([2.0, 0.5, 0.1])
    return x, [FORMS["power_law_error"].curve(x, truth) + np.random.default_rng(seed).normal(0, 0.02, points)
               for seed in range(draws)]


def test_select_form_never_interpolates_four_points():
    # 4 points (the default grid's serial curve): plain AIC chose the 4-parameter logistic_log, which runs
    # through every point, in 10 of these 20 draws (the issue saw 11 of 20). AICc is undefined for both
    # forms (points - parameters - 1 <= 0): no form is chosen, and the reason says so. Extrapolation may
    # choose power_law_error (3 parameters, 4 points), never logistic_log: measured 20 of 20.
    x, draws = _power_law_draws(4)
    for y in draws:
        selection = select_form(x, y, ("logistic_log", "power_law_error"))
        assert selection.chosen is None and selection.by_aicc is None
        assert "undefined" in selection.reason and "logistic_log has 4 parameters" in selection.reason
        assert all(math.isnan(r.aicc) for r in selection.reports.values())
        assert select_form(x, y, ("logistic_log", "power_law_error"), criterion="extrapolation").chosen \
            == "power_law_error"


def test_select_form_on_six_points_prefers_the_generating_form():
    # 6 points: plain AIC chose logistic_log in 2 of 20 draws, AICc in 0 (power_law_error 20 of 20);
    # by extrapolation: power_law_error 19, logistic_log 1.
    x, draws = _power_law_draws(6)
    chosen = [select_form(x, y, ("logistic_log", "power_law_error")).chosen for y in draws]
    assert chosen.count("power_law_error") == 20


def test_aicc_is_undefined_without_spare_points():
    assert math.isnan(aicc(-10.0, 4, 3)) and math.isnan(aicc(-10.0, 4, 4))
    assert aicc(-10.0, 5, 3) == pytest.approx(-10.0 + 24)


@pytest.mark.parametrize("form", ["power_law_error", "exp_power_law"])
def test_select_form_by_extrapolation(form):
    # Measured at seed 0: held-out errors 0.020 (power_law_error; logistic_log 0.021) and 0.006
    # (exp_power_law); the
    # generating form wins at noise 0.01 in 19/20 seeds (power_law_error) and 20/20 (exp_power_law). For
    # logistic_log with its upper plateau inside the held-out third the check prefers the simpler
    # power_law_error (6/20 right): a 4-parameter fit on 10 points extrapolates poorly, as it should.
    x, y = noisy_points(form, seed=0, noise=0.01)
    selection = select_form(x, y, criterion="extrapolation")
    assert selection.chosen == selection.by_extrapolation == form
    errors = {f: r.extrapolation_error for f, r in selection.reports.items()}
    assert errors[form] == min(errors.values()) < 0.03


def test_extrapolation_split_holds_out_the_top_third():
    x = np.array([8.0, 1, 2, 4, 16, 32, 64, 128, 256])
    train, held = split_for_extrapolation(x)
    assert sorted(x[held]) == [64, 128, 256] and x[train].max() < x[held].min()


def test_predict_fit_to_dict_and_json():
    x, y = noisy_points("logistic_log", seed=1)
    fit = fit_curve(x, y, "logistic_log")
    assert fit.predict(x).shape == x.shape
    assert np.all(np.diff(fit.predict(np.logspace(0, 8, 50))) >= 0)  # slope >= 0: never falls
    blob = json.loads(json.dumps(fit_to_dict(fit), allow_nan=False))
    assert blob["form"] == "logistic_log" and blob["params"] == fit.params
    assert blob["ci"]["hi"] == list(fit.ci["hi"]) and blob["x_range"] == list(fit.x_range)
    assert blob["aic"] == fit.aic and blob["aicc"] == fit.aicc and len(blob["residuals"]) == len(x)
    assert blob["bootstrap"] is None  # covariance CIs
    with pytest.raises(AttributeError):
        fit.aic = 0.0  # frozen
    # A fit with no spare points has undetermined CIs: None in JSON, never NaN.
    exact = fit_curve([1.0, 10.0], [0.2, 0.5], "exp_power_law")
    assert math.isnan(exact.ci["a"][0])
    assert json.loads(json.dumps(fit_to_dict(exact), allow_nan=False))["ci"]["a"] == [None, None]


def test_bad_input_names_what_is_wrong():
    x, y = noisy_points("exp_power_law", seed=0)
    with pytest.raises(ValueError, match="form: unknown form 'cubic'; allowed: logistic_log"):
        fit_curve(x, y, "cubic")
    with pytest.raises(ValueError, match="x must be > 0"):
        fit_curve(np.r_[0.0, x[1:]], y, "exp_power_law")
    with pytest.raises(ValueError, match="4 parameters but only 3 points"):
        fit_curve(x[:3], y[:3], "logistic_log")
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        fit_curve(x, y, "exp_power_law", sigma=np.zeros_like(y))
    with pytest.raises(ValueError, match="absolute_sigma=True needs sigma"):
        fit_curve(x, y, "exp_power_law", absolute_sigma=True)
    with pytest.raises(ValueError, match="criterion: unknown 'bic'; allowed: aicc, extrapolation"):
        select_form(x, y, criterion="bic")


def test_absolute_sigma_uses_the_stated_errors():
    x, y = noisy_points("power_law_error", seed=0, noise=0.01)
    relative = fit_curve(x, y, "power_law_error", sigma=np.full_like(y, 0.5))
    absolute = fit_curve(x, y, "power_law_error", sigma=np.full_like(y, 0.01), absolute_sigma=True)
    # Constant relative weights change nothing; stated errors equal to the noise give similar CIs.
    assert relative.params == pytest.approx(fit_curve(x, y, "power_law_error").params)
    assert np.diff(absolute.ci["b"])[0] == pytest.approx(np.diff(relative.ci["b"])[0], rel=0.5)


# --- Large Language Monkeys: Pythia on MATH, 128 problems x 10,000 samples ------------------------

@cache
def pythia_counts():
    counts = {}
    for row in read_csv(DATA / "llmonkeys_pythia_math" / "per_problem_counts.csv"):
        counts.setdefault(row["model"], []).append((int(row["num_samples"]), int(row["num_correct"])))
    return counts


@cache
def pythia_pass_at_k(model, ks):
    """Per-problem unbiased pass@k, problems x len(ks)."""
    return np.array([[pass_at_k(n, c, k) for k in ks] for n, c in pythia_counts()[model]])


@cache
def published(source):
    return {row["model"]: (float(row["a"]), float(row["b"]))
            for row in read_csv(DATA / "llmonkeys_pythia_math" / "published_fits.csv")
            if row["source"].startswith(source)}


# The 101 k at which Schaeffer et al.'s repo evaluates pass_D@k (the `Scaling Parameter` column of
# its large_language_monkeys_original_pass_at_k.parquet); Table 1 is fitted on exactly these.
SCHAEFFER_KS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 64, 68, 72, 76, 80,
    84, 88, 92, 96, 100, 105, 110, 115, 120, 125, 130, 135, 140, 145, 150, 156, 162, 168, 175, 182, 189, 193,
    200, 216, 233, 267, 300, 333, 367, 400, 433, 467, 500, 550, 600, 650, 700, 750, 800, 850, 900, 950, 1000,
    1067, 1133, 1200, 1367, 1500, 1750, 2000, 2333, 2667, 3000, 3333, 3667, 4000, 4333, 4667, 5000, 5333,
    5667, 6000, 6333, 6667, 7000, 7333, 7667, 8000, 8500, 9000, 9500, 10000,
)
BROWN_KS = tuple(int(k) for k in np.unique(np.logspace(0, 4, 40).astype(int)))


def test_schaeffer_k_grid_has_101_values():
    assert len(SCHAEFFER_KS) == 101 and SCHAEFFER_KS[0] == 1 and SCHAEFFER_KS[-1] == 10_000


@pytest.mark.parametrize("model", ["Pythia 70M", "Pythia 160M", "Pythia 410M", "Pythia 1B", "Pythia 2.8B",
                                   "Pythia 6.9B", "Pythia 12B"])
def test_exp_power_law_reproduces_schaeffer_table1(model):
    """Schaeffer et al. 2025, App. C Table 1: -log pass_D@k = a k^-b by least squares in log-log space.

    exp_power_law fits in coverage space; weighting each point by 1 / (y |ln y|) makes its residuals
    the first-order image of the log-log ones. Measured: |b - b_pub| <= 0.0021, a within 1.6%
    (160M: 6.693 vs 6.591); the plain log-log OLS of the same input gives Table 1 to 0.001.
    """
    a_pub, b_pub = published("Schaeffer")[model]
    ks = np.array(SCHAEFFER_KS, dtype=float)
    coverage = pythia_pass_at_k(model, SCHAEFFER_KS).mean(axis=0)
    slope, intercept = np.polyfit(np.log(ks), np.log(-np.log(coverage)), 1)
    assert -slope == pytest.approx(b_pub, abs=0.001) and math.exp(intercept) == pytest.approx(a_pub, abs=0.002)

    fit = fit_curve(ks, coverage, "exp_power_law", sigma=coverage * np.abs(np.log(coverage)))
    assert -fit.params["b"] == pytest.approx(b_pub, abs=0.004)
    assert -fit.params["a"] == pytest.approx(a_pub, rel=0.025)


@pytest.mark.parametrize("model, refit", [("Pythia 70M", (-8.29, -0.199)), ("Pythia 12B", (-4.31, -0.379))])
def test_exp_power_law_reproduces_brown_fig5(model, refit):
    """Brown et al. 2024 Fig. 5: coverage = exp(a k^b) by curve_fit on ~40 log-spaced k.

    Measured (unweighted, 40 k): 70M a=-8.289 b=-0.1992, 12B a=-4.314 b=-0.3790 — the data
    collection's own re-fit to its printed precision. Brown's printed values (-7.59, -0.18) and
    (-3.92, -0.35) are not exactly reproducible (their exact coverage curve is unknown): b differs
    by 0.019 and 0.029, within the collection's suggested 0.03, and both published (a, b) lie inside
    our 95% bootstrap-over-problems CIs (measured b CIs: 70M [-0.254, -0.157], 12B [-0.427, -0.329]).
    """
    a_pub, b_pub = published("Brown")[model]
    ks = np.array(BROWN_KS, dtype=float)
    per_problem = pythia_pass_at_k(model, BROWN_KS)
    fit = fit_curve_bootstrap(ks, per_problem, "exp_power_law", resamples=200, seed=0)
    assert fit.params["a"] == pytest.approx(refit[0], abs=0.01)
    assert fit.params["b"] == pytest.approx(refit[1], abs=0.001)
    assert fit.params["b"] == pytest.approx(b_pub, abs=0.03)
    assert fit.ci["a"][0] <= a_pub <= fit.ci["a"][1] and fit.ci["b"][0] <= b_pub <= fit.ci["b"][1], fit.ci
    # Brown et al. report mean absolute fit errors 0.0052 (70M) and 0.0189 (12B); ours: 0.0008, 0.0077.
    assert np.mean(np.abs(fit.residuals)) <= {"Pythia 70M": 0.0052, "Pythia 12B": 0.0189}[model]


# --- s1 budget forcing and o1-mini: accuracy against thinking tokens ------------------------------

def test_logistic_log_on_s1_budget_forcing_aime24_plateaus_near_published_max():
    """s1-32B, AIME24, Fig. 1: 7 points, 0% at 500 tokens to 56.67% at 7319.5 (Table 1: 56.7).

    Measured (unweighted): lo=0.000, hi=0.603 (95% CI 0.336-0.870), slope=4.23/decade,
    mid=10^3.33 tokens; the curve is at 0.546 at the last point.
    """
    rows = [r for r in read_csv(DATA / "s1_budget_forcing" / "s1_32b_fig1_budget_forcing_scaling.csv")
            if r["panel"] == "AIME24"]
    x = np.array([float(r["avg_thinking_tokens_rounded"]) for r in rows])
    y = np.array([float(r["n_correct_implied"]) / float(r["n_questions"]) for r in rows])
    fit = fit_curve(x, y, "logistic_log")
    published_max = 0.567
    assert fit.params["hi"] == pytest.approx(published_max, abs=0.05)
    assert fit.ci["hi"][0] <= published_max <= fit.ci["hi"][1]
    assert fit.predict(x.max()) == pytest.approx(published_max, abs=0.03)
    assert fit.ci["lo"][0] == 0.0  # the first point is 0%: the floor is at its bound
    assert fit.x_range == (500.0, 7319.5)


def test_logistic_log_on_o1_mini_levels_off_near_070():
    """o1-mini, AIME 2024 (Zhang & Chen): 11 noisy points, accuracy 0.2 ... 0.7 against tokens.

    Measured: the curve reaches 0.694 at the largest compute (88k tokens) and its hi CI holds 0.70;
    the plateau itself is not pinned down by these points (hi = 0.86, CI the whole [0, 1]): the
    residual sum of squares changes by at most 10% for any hi between 0.7 and 1.
    """
    rows = read_csv(DATA / "o1_mini_aime2024_token_budget" / "o1_mini_aime2024_accuracy_vs_tokens.csv")
    x = np.array([float(r["avg_completion_tokens_per_problem"]) for r in rows])
    y = np.array([float(r["accuracy"]) for r in rows])
    fit = fit_curve(x, y, "logistic_log")
    assert fit.predict(x.max()) == pytest.approx(0.70, abs=0.03)
    assert fit.ci["hi"][0] <= 0.70 <= fit.ci["hi"][1]
    assert np.mean(np.abs(fit.residuals)) < 0.06  # measured 0.045: the points scatter by ~1/30 each
