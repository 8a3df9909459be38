"""The scaling curves of a cells table, fitted: which points make each curve, which forms are tried
on it, which one is chosen, and bootstrap CIs of the chosen fit from the samples.

The curves of each (model, dataset, strategy):
    serial    accuracy at N=1 against tokens per problem, across budgets   logistic_log, power_law_error
    parallel  maj@k against tokens per problem, across N, at each budget   logistic_log, power_law_error
    coverage  pass@k against k, at each budget                             exp_power_law
A curve that cannot be fitted (too few points, constant accuracy, no finite compute, no form
converging) is recorded with the reason instead of raising. Forms are chosen by AICc (default) or by
held-out extrapolation error (`criterion`, `analysis.fit.select_form`); a curve whose points allow no
honest choice (e.g. AICc undefined for every form: 4 points and forms of 3 and 4 parameters) keeps
its fits but has no chosen form.

    curves = [fit_curve_forms(c, "aicc") for c in curve_points(cells, "maj@k")]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.cells import problem_estimate
from analysis.fit import FORMS, FitResult, FormSelection, fit_curve_bootstrap, fit_to_dict, json_number, select_form
from orchestrator.errors import FitError

CURVE_FORMS: dict[str, tuple[str, ...]] = {
    "serial": ("logistic_log", "power_law_error"),
    "parallel": ("logistic_log", "power_law_error"),
    "coverage": ("exp_power_law",),
}
"""Which forms are tried on which curve; `select_form` chooses among those the points allow."""

X_NAMES = {"serial": "tokens_per_problem", "parallel": "tokens_per_problem", "coverage": "n"}


@dataclass
class CurveFit:
    """One curve of a sweep, its fits and the chosen form (or why it was not fitted)."""

    model: str
    dataset: str
    strategy: str
    curve: str
    """"serial", "parallel" or "coverage" (CURVE_FORMS)."""
    aggregator: str
    budget: int | None
    """The fixed budget of a parallel or coverage curve; None for the serial curve."""
    points: pd.DataFrame
    """The cells on the curve: budget, n, x, accuracy, ci_low, ci_high (sorted by x)."""
    fits: dict[str, FitResult] = field(default_factory=dict)
    extrapolation_error: dict[str, float] = field(default_factory=dict)
    """Form -> mean absolute error on the top third of x of a fit to the lower two thirds."""
    selection: FormSelection | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Form -> why it could not be fitted."""
    notes: list[str] = field(default_factory=list)
    """Why the curve was not fitted, points left out, where the CIs come from."""

    @property
    def chosen(self) -> str | None:
        return self.selection.chosen if self.selection else None

    def to_dict(self) -> dict:
        forms = {}
        for name, fit in self.fits.items():
            forms[name] = fit_to_dict(fit) | {"extrapolation_error": json_number(self.extrapolation_error.get(name))}
        return {
            "model": self.model, "dataset": self.dataset, "strategy": self.strategy, "curve": self.curve,
            "aggregator": self.aggregator, "budget": self.budget, "x_name": X_NAMES[self.curve],
            "points": {"x": [json_number(v) for v in self.points.x],
                       "y": [json_number(v) for v in self.points.accuracy],
                       "budget": [int(v) for v in self.points.budget], "n": [int(v) for v in self.points.n]},
            "status": "fitted" if self.chosen else "no form chosen" if self.selection else "not fitted",
            "notes": self.notes,
            "chosen": self.chosen,
            "criterion": self.selection.criterion if self.selection else None,
            "reason": self.selection.reason if self.selection else None,
            "by_aicc": self.selection.by_aicc if self.selection else None,
            "by_extrapolation": self.selection.by_extrapolation if self.selection else None,
            "forms": forms,
            "errors": self.errors,
        }


def curve_points(cells: pd.DataFrame, aggregator: str = "maj@k") -> list[CurveFit]:
    """The (unfitted) curves of a cells table: per (model, dataset, strategy) the serial curve, and per
    budget the parallel curve (`aggregator` against tokens) and the coverage curve (pass@k against k)."""
    curves = []
    for (model, dataset, strategy), g in cells.groupby(["model", "dataset", "strategy"], sort=True):
        # pass@1 and maj@1 are the same number: the serial curve is the aggregator's N=1 cells.
        serial = g[(g.n == 1) & (g.aggregator == aggregator)]
        curves.append(_curve(model, dataset, strategy, "serial", aggregator, None, serial))
        for budget, b in g.groupby("budget", sort=True):
            curves.append(_curve(model, dataset, strategy, "parallel", aggregator, int(budget),
                                 b[b.aggregator == aggregator]))
            curves.append(_curve(model, dataset, strategy, "coverage", "pass@k", int(budget),
                                 b[b.aggregator == "pass@k"]))
    return curves


def _curve(model: str, dataset: str, strategy: str, curve: str, aggregator: str, budget: int | None,
           rows: pd.DataFrame) -> CurveFit:
    """A CurveFit of `rows` (cells), keeping the points a log-x fit can use and noting the others."""
    points = (rows.assign(x=rows[X_NAMES[curve]].astype(float))[["budget", "n", "x", "accuracy", "ci_low", "ci_high"]]
              .sort_values(["x", "budget", "n"]).reset_index(drop=True))
    usable = np.isfinite(points.x) & (points.x > 0) & np.isfinite(points.accuracy)
    notes = [f"{int((~usable).sum())} points without finite positive compute or accuracy left out"] \
        if not usable.all() else []
    return CurveFit(model, dataset, strategy, curve, aggregator, budget, points[usable].reset_index(drop=True),
                    notes=notes)


def fit_curve_forms(curve: CurveFit, criterion: str) -> CurveFit:
    """Fit every form of CURVE_FORMS that the points allow and choose one (`select_form`); record why not
    otherwise. A form that cannot be fitted (FitError) is recorded under the form the error names and
    the others are compared without it."""
    x, y = curve.points.x.to_numpy(), curve.points.accuracy.to_numpy()
    if len(np.unique(x)) < 2:
        curve.notes.append(f"{len(np.unique(x))} distinct compute levels")
        return curve
    if np.ptp(y) < 1e-9:
        curve.notes.append(f"accuracy is constant at {y[0]:.3f}")
        return curve
    forms = []
    for form in CURVE_FORMS[curve.curve]:
        params = len(FORMS[form].params)
        if len(x) < params:
            curve.errors[form] = f"{len(x)} points, {params} parameters"
        else:
            forms.append(form)
    while forms and curve.selection is None:
        try:
            curve.selection = select_form(x, y, forms, criterion=criterion)
        except FitError as e:
            curve.errors[e.form] = str(e)
            forms.remove(e.form)
    if not curve.selection:
        curve.notes.append(f"no form fits ({'; '.join(f'{k}: {v}' for k, v in curve.errors.items())})")
        return curve
    curve.fits = {f: r.fit for f, r in curve.selection.reports.items()}
    curve.extrapolation_error = {f: r.extrapolation_error for f, r in curve.selection.reports.items()}
    if not curve.chosen:
        curve.notes.append(curve.selection.reason)
    return curve


def per_problem_values(samples: pd.DataFrame, curve: CurveFit) -> pd.DataFrame:
    """Problems x points of `curve`: each problem's estimate (pass@k or maj@k at the point's N)
    from the samples at the point's budget, columns in the order of `curve.points`."""
    rows = samples[(samples.model == curve.model) & (samples.dataset == curve.dataset)
                   & (samples.strategy == curve.strategy)]
    columns = {}
    for i, point in enumerate(curve.points.itertuples()):
        values = {}
        for problem, g in rows[rows.budget == point.budget].groupby("problem_id", sort=True):
            k = int(point.n)
            if len(g) >= k:
                values[problem] = problem_estimate(g, curve.aggregator, k)
        columns[i] = pd.Series(values, dtype=float)
    return pd.DataFrame(columns).dropna()  # problems missing at some point are left out of the bootstrap


def bootstrap_chosen(curve: CurveFit, samples: pd.DataFrame, resamples: int, seed: int) -> None:
    """Replace the chosen fit's CIs with percentile CIs from a bootstrap over problems."""
    if not curve.chosen:
        return
    chosen = curve.chosen
    per_problem = per_problem_values(samples, curve)
    if len(per_problem) < 2 or not np.allclose(per_problem.mean().to_numpy(), curve.points.accuracy, atol=1e-9):
        # The samples do not reproduce the cells (fewer problems, or a different grid): keep the covariance.
        curve.notes.append("CIs from the covariance: the samples do not reproduce the cells' accuracy")
        return
    try:
        fit = fit_curve_bootstrap(curve.points.x.to_numpy(), per_problem.to_numpy(), chosen,
                                  resamples=resamples, seed=seed)
    except (FitError, ValueError) as e:  # ValueError: the resamples cannot be fitted as given (fit.py says why)
        curve.notes.append(f"CIs from the covariance: bootstrap failed ({e})")
        return
    curve.fits[chosen] = fit
    if fit.resamples_failed:
        curve.notes.append(f"{fit.resamples_failed} of {fit.resamples} bootstrap resamples could not be fitted "
                           "and are left out of the CIs")
