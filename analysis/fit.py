"""Scaling-curve fits: accuracy (or coverage) against test-time compute, with confidence intervals.

Three forms, each with fixed parameter names (`FORMS` is the whole list):
- "logistic_log":    y = lo + (hi - lo) / (1 + exp(-slope * (log10(x) - mid)))   the o1 / s1 plot shape;
- "power_law_error": y = 1 - (a * x**-b + floor)                                  error falls as a power law;
- "exp_power_law":   y = exp(a * x**b)                                             Large Language Monkeys coverage
                                                                                  (Brown et al. 2024, Fig. 5).
Fitting is weighted nonlinear least squares in y (scipy's `least_squares`, bounded, from a few
data-driven starts). Confidence intervals come from the covariance by default, or from a bootstrap
over problems (`fit_curve_bootstrap`). `select_form` compares forms by AICc (AIC corrected for few
points) and by how well a fit on the lower two thirds of compute predicts the top third; it never
chooses a form with as many parameters as points (it would interpolate them), nor by AICc one for
which AICc is undefined (points - parameters - 1 <= 0), and chooses none when no form qualifies.
`fit_to_dict` gives the JSON of a fit.

    fit = fit_curve(tokens, accuracy, "logistic_log")
    fit.params["hi"], fit.ci["hi"], fit.predict([1e5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from orchestrator.errors import FitError

# Probabilities are clipped this far from 0 and 1 before taking logs for initial guesses.
_EPS = 1e-9


@dataclass(frozen=True)
class Form:
    """One functional form: its parameters in order, the curve, and where to start and stop searching."""

    name: str
    params: tuple[str, ...]
    formula: str
    curve: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """(x, theta) -> y, theta ordered as `params`."""
    starts: Callable[[np.ndarray, np.ndarray], list[np.ndarray]]
    """(x, y) -> initial guesses; the best converged one wins."""
    bounds: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    """x -> (lower, upper) bounds of theta."""


# --- logistic in log10(x) ------------------------------------------------------------------------

def _logistic_log(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    lo, hi, slope, mid = theta
    # expit rather than 1 / (1 + exp(-z)): no overflow warnings for steep fits far from mid.
    return lo + (hi - lo) * special.expit(slope * (np.log10(x) - mid))


def _logistic_log_starts(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(x)
    lx, ys = np.log10(x[order]), y[order]
    lo, hi = float(np.clip(ys[0], 0, 1)), float(np.clip(ys.max(), 0, 1))
    span = max(lx[-1] - lx[0], 1e-3)
    # mid: where the data first crosses half-way; slopes from gentle (over the whole range) to steep.
    half = (lo + hi) / 2
    mid_cross = float(lx[np.argmax(ys >= half)]) if np.any(ys >= half) else float(lx[-1])
    mids = (mid_cross, lx[0] + span / 2, lx[-1])
    slopes = (4 / span, 16 / span)
    # The plateau may lie beyond the data: also start with a ceiling above the highest point.
    his = (hi, min(1.0, hi + (1 - hi) / 2))
    return [np.array([lo, h, s, m]) for h in his for s in slopes for m in mids]


def _logistic_log_bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lx = np.log10(x)
    # slope >= 0 makes the parametrisation unique: hi is always the plateau at large compute
    # (a falling curve has hi < lo). mid may sit up to 3 decades outside the data.
    return (np.array([0.0, 0.0, 0.0, lx.min() - 3]), np.array([1.0, 1.0, 100.0, lx.max() + 3]))


# --- power law on the error, with a floor -------------------------------------------------------

def _power_law_error(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    a, b, floor = theta
    return 1 - (a * x ** -b + floor)


def _power_law_error_starts(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    err = np.clip(1 - y, _EPS, 1)
    starts = []
    # Guess the floor as none, and as most of the smallest error seen; the rest is a straight
    # line in log-log space, so ordinary least squares gives a and b for each guess.
    for floor in (0.0, 0.5 * err.min(), 0.9 * err.min()):
        slope, intercept = np.polyfit(np.log(x), np.log(np.clip(err - floor, _EPS, 1)), 1)
        starts.append(np.array([math.exp(intercept), max(-slope, 1e-3), floor]))
    return starts


def _power_law_error_bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.0, 0.0, 0.0]), np.array([np.inf, 10.0, 1.0])


# --- exponentiated power law (coverage) ---------------------------------------------------------

def _exp_power_law(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    a, b = theta
    return np.exp(a * x ** b)


def _exp_power_law_starts(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    # log(-log y) = log(-a) + b log x is a straight line (Schaeffer et al. 2025 fit exactly this).
    neg_log = -np.log(np.clip(y, _EPS, 1 - _EPS))
    slope, intercept = np.polyfit(np.log(x), np.log(neg_log), 1)
    return [np.array([-math.exp(intercept), min(slope, -1e-3)]), np.array([-1.0, -0.3])]


def _exp_power_law_bounds(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # a < 0 and b < 0: coverage rises towards 1 with k.
    return np.array([-np.inf, -10.0]), np.array([0.0, 0.0])


FORMS: dict[str, Form] = {
    "logistic_log": Form("logistic_log", ("lo", "hi", "slope", "mid"),
                         "lo + (hi - lo) / (1 + exp(-slope * (log10(x) - mid)))",
                         _logistic_log, _logistic_log_starts, _logistic_log_bounds),
    "power_law_error": Form("power_law_error", ("a", "b", "floor"), "1 - (a * x**-b + floor)",
                            _power_law_error, _power_law_error_starts, _power_law_error_bounds),
    "exp_power_law": Form("exp_power_law", ("a", "b"), "exp(a * x**b)",
                          _exp_power_law, _exp_power_law_starts, _exp_power_law_bounds),
}


@dataclass(frozen=True)
class FitResult:
    """A fitted curve. Treat `params`, `ci` and `residuals` as read-only."""

    form: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    """name -> (low, high) at `level`; NaN when the data cannot determine it (no spare points)."""
    residuals: np.ndarray
    """y - predict(x) at the fitted points, in the order given (unweighted)."""
    x_range: tuple[float, float]
    """(min, max) of the fitted x: predictions outside it are extrapolations."""
    aic: float
    """n log(WRSS / n) + 2 p: comparable between forms fitted to the same points and sigma."""
    aicc: float
    """aic + 2 p (p + 1) / (n - p - 1), the small-sample correction; NaN (undefined) when n - p - 1 <= 0."""
    n_points: int
    level: float
    ci_method: str
    """"covariance" or "bootstrap"."""
    resamples: int = 0
    """Bootstrap resamples drawn (0 for covariance CIs)."""
    resamples_failed: int = 0
    """Of those, how many could not be fitted and were left out of the percentiles."""

    def predict(self, x) -> np.ndarray:
        """The fitted curve at `x` (any shape, x > 0)."""
        theta = np.array([self.params[p] for p in FORMS[self.form].params])
        return FORMS[self.form].curve(np.asarray(x, dtype=float), theta)


def _check_inputs(x, y, form: str, sigma,
                  level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Arrays of x, y (and sigma) after checking what a fit needs; ValueError naming what is wrong."""
    if form not in FORMS:
        raise ValueError(f"form: unknown form {form!r}; allowed: {', '.join(FORMS)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (no NaN or inf)")
    if np.any(x <= 0):
        raise ValueError(f"x must be > 0 (compute is on a log axis), got min {x.min()}")
    n_params = len(FORMS[form].params)
    if len(x) < n_params:
        raise ValueError(f"form {form!r} has {n_params} parameters but only {len(x)} points were given")
    if sigma is not None:
        sigma = np.broadcast_to(np.asarray(sigma, dtype=float), x.shape)
        if not np.all(np.isfinite(sigma) & (sigma > 0)):
            raise ValueError("sigma must be finite and > 0 at every point")
    return x, y, sigma


def _nudge(bound: np.ndarray, direction: int) -> np.ndarray:
    """`bound` moved a hair inwards (infinite bounds stay put)."""
    finite = np.isfinite(bound)
    return np.where(finite, bound + direction * 1e-9 * (1 + np.abs(np.where(finite, bound, 0))), bound)


def _least_squares(x: np.ndarray, y: np.ndarray, form: Form, sigma: np.ndarray | None,
                   starts: Sequence[np.ndarray]) -> optimize.OptimizeResult:
    """The best (lowest cost) converged bounded fit over `starts`."""
    weight = 1.0 if sigma is None else 1.0 / sigma
    lower, upper = form.bounds(x)
    best = None
    for start in starts:
        # Starts must lie strictly inside the bounds for the trust-region solver.
        inside = np.clip(start, _nudge(lower, +1), _nudge(upper, -1))
        fit = optimize.least_squares(lambda t: (form.curve(x, t) - y) * weight, inside,
                                     bounds=(lower, upper), x_scale="jac", method="trf")
        if fit.status > 0 and np.all(np.isfinite(fit.fun)) and (best is None or fit.cost < best.cost):
            best = fit
    if best is None:
        raise FitError(f"no start converged on {len(x)} points", form=form.name)
    return best


def _covariance_ci(fit: optimize.OptimizeResult, form: Form, x: np.ndarray, absolute_sigma: bool,
                   level: float) -> dict[str, tuple[float, float]]:
    """Wald intervals from the Gauss-Newton covariance, clipped to the parameters' bounds."""
    n, p = len(fit.fun), len(fit.x)
    dof = n - p
    chi2 = 2 * fit.cost
    # Covariance as curve_fit computes it, (J^T J)^-1 via the SVD of J; when the data leave some
    # direction undetermined (a plateau outside the data, say) every variance is infinite, as there.
    _, s, vt = np.linalg.svd(fit.jac, full_matrices=False)
    if np.all(s > np.finfo(float).eps * max(fit.jac.shape) * s[0]):
        cov = (vt.T / s ** 2) @ vt
    else:
        cov = np.full((p, p), np.inf)
    if absolute_sigma:
        scale, quantile = 1.0, stats.norm.ppf((1 + level) / 2)
    elif dof > 0:
        # sigma gives relative weights only (as in curve_fit's default): the noise scale is
        # estimated from the scatter, which also widens the CIs when the form does not fit.
        scale, quantile = chi2 / dof, stats.t.ppf((1 + level) / 2, dof)
    else:
        scale, quantile = np.nan, np.nan  # no spare points: nothing to estimate the noise from
    half = quantile * np.sqrt(np.diag(cov) * scale)
    lower, upper = form.bounds(x)
    low, high = np.maximum(fit.x - half, lower), np.minimum(fit.x + half, upper)
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(form.params, low, high)}


def _aic(weighted_residuals: np.ndarray, n_params: int) -> float:
    n = len(weighted_residuals)
    # A perfect fit has zero error; the floor keeps the AIC finite (and very good) instead of -inf.
    wrss = max(float(np.sum(weighted_residuals ** 2)), 1e-300)
    return n * math.log(wrss / n) + 2 * n_params


def aicc(aic: float, n_points: int, n_params: int) -> float:
    """AIC with the small-sample correction 2 p (p + 1) / (n - p - 1); NaN when n - p - 1 <= 0, where
    it is undefined (a form with that many parameters can all but interpolate the points)."""
    spare = n_points - n_params - 1
    return aic + 2 * n_params * (n_params + 1) / spare if spare > 0 else math.nan


def fit_curve(x, y, form: str, sigma=None, absolute_sigma: bool = False, level: float = 0.95) -> FitResult:
    """Fit `form` (a key of FORMS) to points (x, y) by least squares weighted by 1 / sigma.

    As in scipy's curve_fit: sigma are relative uncertainties of y and the CIs (from the
    covariance) are scaled by the scatter of the residuals, unless absolute_sigma is True, when
    sigma are taken as the standard errors of y as they stand.
    """
    x, y, sigma = _check_inputs(x, y, form, sigma, level)
    if absolute_sigma and sigma is None:
        raise ValueError("absolute_sigma=True needs sigma (the standard errors of y)")
    shape = FORMS[form]
    fit = _least_squares(x, y, shape, sigma, shape.starts(x, y))
    return _result(fit, shape, x, y, level, _covariance_ci(fit, shape, x, absolute_sigma, level))


def _result(fit: optimize.OptimizeResult, form: Form, x: np.ndarray, y: np.ndarray, level: float,
            ci: dict[str, tuple[float, float]], ci_method: str = "covariance", resamples: int = 0,
            resamples_failed: int = 0) -> FitResult:
    residuals = y - form.curve(x, fit.x)
    residuals.setflags(write=False)
    aic = _aic(fit.fun, len(fit.x))
    return FitResult(form=form.name, params={p: float(v) for p, v in zip(form.params, fit.x)}, ci=ci,
                     residuals=residuals, x_range=(float(x.min()), float(x.max())),
                     aic=aic, aicc=aicc(aic, len(x), len(fit.x)), n_points=len(x), level=level,
                     ci_method=ci_method, resamples=resamples, resamples_failed=resamples_failed)


def fit_curve_bootstrap(x, per_problem_y, form: str, sigma=None, resamples: int = 200, seed: int = 0,
                        level: float = 0.95) -> FitResult:
    """Fit `form` to the mean over problems of `per_problem_y` (problems x points); percentile CIs
    from refitting on problems resampled with replacement.

    Resampling problems (not points) keeps each problem's values at every x together: the points
    of one curve share their problems, so their errors are correlated and a per-point CI would be
    too narrow. Resamples that cannot be fitted are left out and counted (`resamples_failed`).
    """
    per_problem = np.asarray(per_problem_y, dtype=float)
    x = np.asarray(x, dtype=float)
    if per_problem.ndim != 2 or per_problem.shape[1] != x.shape[0]:
        raise ValueError(f"per_problem_y must be 2-D (problems x points) with {x.shape[0]} columns, "
                         f"got shape {per_problem.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x, y, sigma = _check_inputs(x, per_problem.mean(axis=0), form, sigma, level)
    shape = FORMS[form]
    point = _least_squares(x, y, shape, sigma, shape.starts(x, y))
    rng = np.random.default_rng(seed)
    problems = len(per_problem)
    thetas, failed = [], 0
    for _ in range(resamples):
        y_boot = per_problem[rng.integers(0, problems, size=problems)].mean(axis=0)
        # Warm start from the full-data fit: the resampled curves are close to it, and one start
        # instead of several keeps 200 refits cheap.
        try:
            thetas.append(_least_squares(x, y_boot, shape, sigma, [point.x]).x)
        except FitError:
            failed += 1  # reported: many failures make the percentiles of the rest unreliable
    if not thetas:
        raise FitError("no bootstrap resample could be fitted", form=form)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.array(thetas), [tail, 100 - tail], axis=0)
    ci = {name: (float(lo), float(hi)) for name, lo, hi in zip(shape.params, low, high)}
    return _result(point, shape, x, y, level, ci, ci_method="bootstrap", resamples=resamples,
                   resamples_failed=failed)


@dataclass(frozen=True)
class FormReport:
    """How one form did in `select_form`."""

    aic: float
    """AIC of the fit to all points (lower is better)."""
    aicc: float
    """AICc of the fit to all points (lower is better); NaN where undefined (points - parameters - 1 <= 0)."""
    extrapolation_error: float
    """Mean absolute error on the top third of x of a fit to the lower two thirds; NaN if that
    fit has fewer points than parameters or does not converge."""
    fit: FitResult
    """The fit to all points."""


CRITERIA = ("aicc", "extrapolation")
"""How `select_form` chooses: the lowest AICc, or the lowest held-out extrapolation error."""


@dataclass(frozen=True)
class FormSelection:
    """The forms compared and the chosen one (None when no form can be chosen honestly)."""

    chosen: str | None
    criterion: str
    reports: dict[str, FormReport]
    by_aicc: str | None
    """None when AICc is undefined for every form."""
    by_extrapolation: str | None
    """None when no form with fewer parameters than points could be fitted on the lower two thirds."""
    reason: str
    """Why `chosen` was chosen, or why no form was."""


def split_for_extrapolation(x) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held_out): held out are the points in the top third of x.

    Points tied at the boundary all go to the held-out side so no compute level is on both.
    """
    x = np.asarray(x, dtype=float)
    n_held = max(1, len(x) // 3)
    threshold = np.sort(x)[len(x) - n_held]
    held = x >= threshold
    return ~held, held


def select_form(x, y, forms: Sequence[str] = tuple(FORMS), sigma=None,
                criterion: str = "aicc") -> FormSelection:
    """Compare `forms` on (x, y) by AICc and by extrapolation to the top third of x; choose one or none.

    criterion "aicc" chooses the lowest AICc among the forms for which it is defined (points -
    parameters - 1 > 0); "extrapolation" the lowest held-out error among the forms with fewer
    parameters than points that could be fitted on the lower two thirds. A form with as many
    parameters as points is fitted and reported but never chosen: it interpolates. When no form
    qualifies, `chosen` is None and `reason` says why: no choice rather than a dishonest one.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; allowed: {', '.join(CRITERIA)}")
    if not forms:
        raise ValueError("forms: give at least one form")
    x_all, y_all, sigma_all = _check_inputs(x, y, forms[0], sigma)
    train, held = split_for_extrapolation(x_all)
    reports = {}
    for form in forms:
        full = fit_curve(x_all, y_all, form, sigma=sigma_all)
        error = math.nan
        if train.sum() >= len(FORMS[form].params):
            try:
                part = fit_curve(x_all[train], y_all[train], form,
                                 sigma=None if sigma_all is None else sigma_all[train])
                error = float(np.mean(np.abs(part.predict(x_all[held]) - y_all[held])))
            except FitError:
                pass  # reported as NaN: this form cannot be fitted on the lower two thirds
        reports[form] = FormReport(aic=full.aic, aicc=full.aicc, extrapolation_error=error, fit=full)
    n = len(x_all)
    by_aicc_ok = [f for f in reports if math.isfinite(reports[f].aicc)]
    by_aicc = min(by_aicc_ok, key=lambda f: reports[f].aicc) if by_aicc_ok else None
    by_extrapolation_ok = [f for f in reports if len(FORMS[f].params) < n
                           and math.isfinite(reports[f].extrapolation_error)]
    by_extrapolation = (min(by_extrapolation_ok, key=lambda f: reports[f].extrapolation_error)
                        if by_extrapolation_ok else None)
    chosen = by_aicc if criterion == "aicc" else by_extrapolation
    if chosen is not None:
        reason = (f"lowest AICc of {len(by_aicc_ok)} form(s) with AICc defined" if criterion == "aicc" else
                  f"lowest held-out error of {len(by_extrapolation_ok)} form(s) fitted on the lower two thirds")
    elif criterion == "aicc":
        reason = (f"no form can be chosen by AICc with {n} points: it is undefined when points - parameters - 1 "
                  "<= 0 (" + ", ".join(f"{f} has {len(FORMS[f].params)} parameters" for f in reports) + ")")
    else:
        reason = (f"no form can be chosen by extrapolation with {n} points: none with fewer parameters than points "
                  "could be fitted on the lower two thirds")
    return FormSelection(chosen=chosen, criterion=criterion, reports=reports, by_aicc=by_aicc,
                         by_extrapolation=by_extrapolation, reason=reason)


def json_number(value: float | None) -> float | None:
    """`value` as a float for JSON, which has no NaN or infinity: None ("not determined") for those and for None."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def fit_to_dict(result: FitResult) -> dict:
    """A JSON-serialisable dict of `result` (NaN and infinities become None)."""
    return {
        "form": result.form,
        "formula": FORMS[result.form].formula,
        "params": {name: json_number(v) for name, v in result.params.items()},
        "ci": {name: [json_number(lo), json_number(hi)] for name, (lo, hi) in result.ci.items()},
        "ci_method": result.ci_method,
        "level": result.level,
        "x_range": [result.x_range[0], result.x_range[1]],
        "aic": json_number(result.aic),
        "aicc": json_number(result.aicc),
        "n_points": result.n_points,
        "bootstrap": ({"resamples": result.resamples, "failed": result.resamples_failed}
                      if result.ci_method == "bootstrap" else None),
        "residuals": [json_number(r) for r in result.residuals],
    }
