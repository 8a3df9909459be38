"""`ttc analyze SWEEP_ID`: fit a sweep's scaling curves, plot them, and write a short report.

Reads the sweep's cells (and its samples, for confidence intervals from a bootstrap over
problems) from the store and writes into the sweep directory:
    fits.json    every curve's points, each form's fit (fit_to_dict), the chosen form and why (or why
                 none could be chosen honestly), bootstrap resamples that could not be fitted
    plots/       headline.{png,svg}, o1.{png,svg}, coverage.{png,svg}, frontier.{png,svg} (analysis.plots)
    report.md    the headline figure, cells at key points, fitted parameters with CIs, model selection,
                 extrapolation error, the best (B, N) split at a few compute levels, and the bill: per
                 model the cheapest (B, N) reaching each accuracy level and how many times more a query
                 costs at the top of its curve than at the bottom

The curves and their fits are `analysis.curves`' (which points, which forms, which one is chosen, and
bootstrap CIs); the iso-compute frontier is `analysis.frontier`'s; the figures `analysis.plots`'.
A curve that cannot be fitted is recorded with the reason instead of raising.

    from analysis.report import analyze
    result = analyze("./ttc-results", "20261129-204512-3fa2c1")
    result.fits_path, result.report_path, result.plot_paths
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cells import add_votes
from analysis.curves import CurveFit, bootstrap_chosen, curve_points, fit_curve_forms
from analysis.fit import CRITERIA, FORMS, FitResult, json_number
from analysis.frontier import iso_compute_frontier
from analysis.plots import plot_coverage, plot_frontier, plot_headline, plot_o1
from orchestrator.schema import AGGREGATORS
from orchestrator.store import Store, atomic_write


@dataclass(frozen=True)
class AnalysisResult:
    """Where `analyze` wrote its outputs, and what it found."""

    sweep_id: str
    sweep_dir: Path
    fits_path: Path
    report_path: Path
    plot_paths: list[Path]
    curves: list[CurveFit]
    frontier: pd.DataFrame

    @property
    def paths(self) -> list[Path]:
        """Every file written (for logging as artifacts)."""
        return [self.fits_path, self.report_path, *self.plot_paths]


def analyze(store: Store | Path | str, sweep_id: str, aggregator: str = "maj@k", criterion: str = "aicc",
            bootstrap: bool = True, resamples: int = 200, seed: int = 0) -> AnalysisResult:
    """Fit, plot and report the sweep `sweep_id` of `store` (a Store or its root directory).

    `criterion`: how a curve's form is chosen, "aicc" (the lowest AICc) or "extrapolation" (the
    lowest error on the top third of compute of a fit to the rest); see `analysis.fit.select_form`.

    `bootstrap`: CIs of each chosen fit from `resamples` resamples of the problems (reads the
    samples); otherwise, and whenever the samples cannot give them, from the fit's covariance.
    Raises FileNotFoundError naming the path when the sweep or its cells table does not exist, and
    ValueError naming the argument when `aggregator` or `criterion` is unknown.
    """
    if aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator: unknown {aggregator!r}; allowed: {', '.join(AGGREGATORS)}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; allowed: {', '.join(CRITERIA)}")
    store = store if isinstance(store, Store) else Store(Path(store))
    sweep_dir = store.sweep_dir(sweep_id)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep {sweep_id!r}: no directory {sweep_dir}")
    if not store.cells_path(sweep_id).is_file():
        raise FileNotFoundError(f"sweep {sweep_id!r}: no cells table {store.cells_path(sweep_id)} "
                                "(the sweep did not finish)")
    cells = store.read_cells(sweep_id).to_pandas()
    samples, samples_note = _read_samples(store, sweep_id) if bootstrap else (None, "bootstrap off")

    curves = [fit_curve_forms(c, criterion) for c in curve_points(cells, aggregator)]
    if samples is not None:
        for curve in curves:
            bootstrap_chosen(curve, samples, resamples, seed)
    elif bootstrap:
        for curve in curves:
            if curve.chosen:
                curve.notes.append(f"CIs from the covariance: {samples_note}")
    frontier = iso_compute_frontier(cells, aggregator)

    records = [c.to_dict() for c in curves]
    fits_path = sweep_dir / "fits.json"
    _write_text(fits_path, json.dumps({
        "sweep_id": sweep_id, "aggregator": aggregator, "criterion": criterion,
        "curves": records,
        "frontier": [{k: json_number(v) if isinstance(v, float) else v for k, v in row.items()}
                     for row in frontier.to_dict(orient="records")],
    }, indent=1, allow_nan=False))
    plots = store.plots_dir(sweep_id)
    plot_paths = [*plot_headline(cells, plots / "headline", aggregator),
                  *plot_o1(cells, records, plots / "o1", aggregator),
                  *plot_coverage(cells, records, plots / "coverage"),
                  *plot_frontier(cells, plots / "frontier", aggregator)]
    report_path = sweep_dir / "report.md"
    _write_text(report_path, render_report(sweep_id, cells, curves, frontier, aggregator,
                                           [p.relative_to(sweep_dir) for p in plot_paths], criterion))
    return AnalysisResult(sweep_id, sweep_dir, fits_path, report_path, plot_paths, curves, frontier)


def fit_metrics(curves: list[CurveFit]) -> dict[str, float]:
    """The chosen form's parameters of every fitted curve (`AnalysisResult.curves`), as MLflow metric
    names and values: `fit_<model>_<curve>[_B<budget>]_<form>_<param>`, characters MLflow refuses
    replaced by "_"; NaN and infinite parameters are left out."""
    metrics = {}
    for c in curves:
        if not c.chosen:
            continue
        where = "" if c.budget is None else f"_B{c.budget}"
        prefix = re.sub(r"[^0-9A-Za-z_\-.]", "_", f"fit_{c.model}_{c.curve}{where}_{c.chosen}")
        for name, value in c.fits[c.chosen].params.items():
            if math.isfinite(value):
                metrics[f"{prefix}_{name}"] = float(value)
    return metrics


def _read_samples(store: Store, sweep_id: str) -> tuple[pd.DataFrame | None, str]:
    try:
        df = store.sweep_samples(sweep_id).to_pandas()
    except (OSError, ValueError) as e:  # a unit file gone or unreadable: fall back to the covariance
        return None, f"samples unreadable ({e})"
    if df.empty:
        return None, "no samples in the sweep's manifest"
    add_votes(df)
    return df, ""


# --- the report -----------------------------------------------------------------------------------

def render_report(sweep_id: str, cells: pd.DataFrame, curves: list[CurveFit], frontier: pd.DataFrame,
                  aggregator: str, plot_paths: list[Path], criterion: str = "aicc") -> str:
    """The Markdown report of an analysis."""
    lines = [f"# Test-time-compute scaling: sweep `{sweep_id}`", ""]
    if cells.empty:
        return "\n".join(lines + ["The sweep has no cells: nothing to fit or plot.", ""])
    lines += [f"{len(cells)} cells. Compute is generated tokens (thinking + answer) per problem; {aggregator} "
              "aggregates the N samples; intervals are 95%. Forms: "
              + "; ".join(f"`{name}`: y = {form.formula}" for name, form in FORMS.items()) + ". "
              "Held-out error: mean absolute error on the top third of x of a fit to the lower two thirds. "
              + ("Forms are chosen by the lowest AICc (AIC + 2p(p+1)/(n-p-1)), only where it is defined "
                 "(n - p - 1 > 0)" if criterion == "aicc" else
                 "Forms are chosen by the lowest held-out error, only among forms with fewer parameters than points")
              + "; where no form qualifies none is chosen and no fitted curve is drawn.", ""]
    headline = next((p for p in plot_paths if p.stem == "headline" and p.suffix == ".png"), None)
    if headline is not None:
        lines += [f"![accuracy against test-time compute, every model]({headline.as_posix()})", ""]
    for (model, dataset), md in cells.groupby(["model", "dataset"], sort=True):
        lines += [f"## {model} on {dataset}", ""]
        for strategy, g in md.groupby("strategy", sort=True):
            group = [c for c in curves if (c.model, c.dataset, c.strategy) == (model, dataset, strategy)]
            lines += [f"### Cells ({strategy})", "", *_cells_table(g, aggregator), ""]
            lines += [f"### Serial scaling: accuracy at N=1 vs tokens ({strategy})", ""]
            for c in (c for c in group if c.curve == "serial"):
                table = _forms_table(c)
                lines += [*table, *([""] if table else []), _selection_text(c), ""]
            lines += [f"### Parallel scaling: {aggregator} vs tokens across N, at fixed B ({strategy})", "",
                      *_budget_table([c for c in group if c.curve == "parallel"]), ""]
            lines += [f"### Coverage: pass@k vs k, at fixed B ({strategy})", "",
                      *_budget_table([c for c in group if c.curve == "coverage"]), ""]
        f = frontier[(frontier.model == model) & (frontier.dataset == dataset)]
        lines += ["### Best split of a compute budget (iso-compute frontier)", "", *_frontier_table(f, aggregator), ""]
        lines += [f"### The bill: the cheapest (B, N) reaching each {aggregator} level", "",
                  *_bill_lines(md, aggregator), ""]
    lines += ["## Plots", ""] + [f"- [{p.name}]({p.as_posix()})" for p in plot_paths if p.suffix == ".png"] + [""]
    return "\n".join(lines)


def _cells_table(g: pd.DataFrame, aggregator: str) -> list[str]:
    n_max = int(g.n.max())
    head = (f"| B | think tokens | pass@1 | {aggregator.replace('k', str(n_max))} | pass@{n_max} | "
            f"tokens/problem (N=1) | FLOPs/problem (N=1) |")
    lines = [head, "|" + "---|" * 7]
    for budget, b in g.groupby("budget", sort=True):
        def cell(agg: str, n: int, b=b):
            rows = b[(b.aggregator == agg) & (b.n == n)]
            return rows.iloc[0] if len(rows) else None

        one, top, cover = cell("pass@k", 1), cell(aggregator, n_max), cell("pass@k", n_max)
        lines.append(f"| {budget} | {b.mean_think_tokens.iloc[0]:.1f} | {_acc(one)} | {_acc(top)} | {_acc(cover)} | "
                     f"{_tokens(one.tokens_per_problem if one is not None else None)} | "
                     f"{_fmt(one.flops_per_problem if one is not None else None)} |")
    return lines


def _params(fit: FitResult) -> str:
    return ", ".join(f"{p} = {_fmt(v)} [{_fmt(fit.ci[p][0])}, {_fmt(fit.ci[p][1])}]" for p, v in fit.params.items())


def _forms_table(c: CurveFit) -> list[str]:
    """Every form fitted to `c`: parameters with CIs, AIC, held-out error, which was chosen."""
    if not c.fits:
        return []  # _selection_text says why
    lines = ["| form | parameters [95% CI] | CIs from | AIC | AICc | held-out error | chosen |", "|" + "---|" * 7]
    for form, fit in c.fits.items():
        lines.append(f"| {form} | {_params(fit)} | {_ci_source(fit)} | {_fmt(fit.aic)} | {_fmt(fit.aicc)} | "
                     f"{_fmt(c.extrapolation_error.get(form))} | {'**yes**' if form == c.chosen else ''} |")
    lines += [f"| {form} | not fitted: {why} | | | | | |" for form, why in c.errors.items()]
    return lines


def _budget_table(curves: list[CurveFit]) -> list[str]:
    """One row per budget: the chosen form with its parameters and held-out error, the others' scores."""
    lines = ["| B | points | chosen form | parameters [95% CI] | held-out error | other forms (AICc, held-out error) |",
             "|" + "---|" * 6]
    for c in curves:
        if not c.fits:
            lines.append(f"| {c.budget} | {len(c.points)} | – | not fitted: {'; '.join(c.notes)} | | |")
            continue
        others = "; ".join(f"{f}: {_fmt(r.aicc)}, {_fmt(c.extrapolation_error.get(f))}"
                           for f, r in c.fits.items() if f != c.chosen)
        if not c.chosen:
            lines.append(f"| {c.budget} | {len(c.points)} | none | {'; '.join(c.notes)} | | {others} |")
            continue
        fit = c.fits[c.chosen]
        bootstrap = f" ({_ci_source(fit)})" if fit.resamples_failed else ""
        lines.append(f"| {c.budget} | {fit.n_points} | {c.chosen} (AICc {_fmt(fit.aicc)}) | "
                     f"{_params(fit)}{bootstrap} | "
                     f"{_fmt(c.extrapolation_error.get(c.chosen))} | {others or '–'} |")
    return lines


def _ci_source(fit: FitResult) -> str:
    """Where a fit's CIs come from; for a bootstrap, how many resamples and how many could not be fitted."""
    if fit.ci_method != "bootstrap":
        return fit.ci_method
    return f"bootstrap, {fit.resamples} resamples, {fit.resamples_failed} not fitted"


def _selection_text(c: CurveFit) -> str:
    """Which form was chosen for `c` and why, in a sentence."""
    if not c.selection:
        return f"Not fitted ({len(c.points)} points): {'; '.join(c.notes)}."
    s = c.selection
    aiccs = ", ".join(f"{f} {_fmt(r.aicc)}" for f, r in s.reports.items())
    errors = ", ".join(f"{f} {_fmt(r.extrapolation_error)}" for f, r in s.reports.items())
    if not s.chosen:
        return (f"**No form chosen**: {s.reason} (AICc {aiccs}; held-out error {errors}). "
                "The fits above are shown for reference; no fitted curve is drawn.")
    other_choice = s.by_extrapolation if s.criterion == "aicc" else s.by_aicc
    other_name = "extrapolation" if s.criterion == "aicc" else "AICc"
    agree = (f"{other_name} agrees" if other_choice == s.chosen else
             f"{other_name} would choose {other_choice}" if other_choice else f"{other_name} could choose no form")
    reason = (f"lowest AICc ({aiccs})" if s.criterion == "aicc" else f"lowest held-out error ({errors})")
    other = f"held-out error {errors}" if s.criterion == "aicc" else f"AICc {aiccs}"
    text = f"**{s.chosen}** chosen: {reason}; {agree} ({other})."
    fit = c.fits[s.chosen]
    if "hi" in fit.params:
        text += (f" Accuracy plateaus at hi = {_fmt(fit.params['hi'])} "
                 f"[{_fmt(fit.ci['hi'][0])}, {_fmt(fit.ci['hi'][1])}].")
    if c.notes:
        text += " " + "; ".join(c.notes) + "."
    return text


def _frontier_table(f: pd.DataFrame, aggregator: str, levels: int = 5) -> list[str]:
    """The frontier at `levels` compute levels spread evenly in log compute."""
    if f.empty:
        return ["No cells with finite compute."]
    targets = np.geomspace(f.tokens_per_problem.min(), f.tokens_per_problem.max(), levels)
    picks = sorted({int(np.searchsorted(f.tokens_per_problem.to_numpy(), t, side="right")) - 1 for t in targets})
    lines = [f"| compute ≤ tokens/problem | best B | best N | {aggregator} [95% CI] | tokens spent |",
             "|" + "---|" * 5]
    for i in picks:
        row = f.iloc[max(i, 0)]
        strategy = f" ({row.strategy})" if f.strategy.nunique() > 1 else ""
        lines.append(f"| {_tokens(row.tokens_per_problem)} | {row.budget}{strategy} | {row.n} | "
                     f"{row.accuracy:.3f} [{_fmt(row.ci_low)}, {_fmt(row.ci_high)}] | "
                     f"{_tokens(row.cell_tokens_per_problem)} |")
    return lines


ACCURACY_LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""The accuracy levels of the bill table: 0.1, 0.2, ..., 1.0."""


def cost_column(cells: pd.DataFrame) -> str:
    """What "cost" means for `cells`: dollars per 1,000 queries where every cell has them, else tokens per
    problem (the bill's dollars are proportional to tokens at a GPU-hour price in any case)."""
    usd = cells.get("usd_per_1k_queries")
    return "usd_per_1k_queries" if usd is not None and len(cells) and np.isfinite(usd.astype(float)).all() \
        else "tokens_per_problem"


def _priced_curves(cells: pd.DataFrame, aggregator: str):
    """Per (model, dataset): (model, dataset, its cost column, its `aggregator` cells with a finite cost,
    cheapest first; ties: fewer tokens, then smaller N and budget)."""
    df = cells[cells.aggregator == aggregator]
    for (model, dataset), g in df.groupby(["model", "dataset"], sort=True):
        column = cost_column(g)
        g = g[np.isfinite(g[column].astype(float))].sort_values([column, "tokens_per_problem", "n", "budget"])
        if not g.empty:
            yield model, dataset, column, g


def cheapest_cells(cells: pd.DataFrame, aggregator: str = "maj@k",
                   levels: tuple[float, ...] = ACCURACY_LEVELS) -> pd.DataFrame:
    """Per (model, dataset) and accuracy level: the cheapest cell (any strategy, B, N) whose `aggregator`
    accuracy reaches the level (ties: fewer tokens, then smaller N), with `cost` (`cost_column`) and
    `times_bottom` = its cost over the cheapest cell of the model's (the bottom of its curve). Levels no
    cell reaches get a row with budget, n and cost missing."""
    rows = []
    for model, dataset, column, g in _priced_curves(cells, aggregator):
        bottom = float(g[column].iloc[0])
        for level in levels:
            reach = g[g.accuracy >= level - 1e-9]
            cell = reach.iloc[0] if len(reach) else None
            rows.append({"model": model, "dataset": dataset, "level": level, "cost_column": column,
                         "strategy": cell.strategy if cell is not None else None,
                         "budget": int(cell.budget) if cell is not None else None,
                         "n": int(cell.n) if cell is not None else None,
                         "accuracy": float(cell.accuracy) if cell is not None else math.nan,
                         "tokens_per_problem": float(cell.tokens_per_problem) if cell is not None else math.nan,
                         "engine_seconds_per_problem": float(cell.get("engine_seconds_per_problem", math.nan))
                         if cell is not None else math.nan,
                         "usd_per_1k_queries": float(cell.get("usd_per_1k_queries", math.nan))
                         if cell is not None else math.nan,
                         "cost": float(cell[column]) if cell is not None else math.nan,
                         "times_bottom": float(cell[column]) / bottom if cell is not None and bottom > 0 else math.nan})
    return pd.DataFrame(rows)


def cost_span(cells: pd.DataFrame, aggregator: str = "maj@k") -> pd.DataFrame:
    """Per (model, dataset): the bottom of its curve (its cheapest cell), the top (the cheapest cell reaching
    its best `aggregator` accuracy), and `ratio`, how many times more a query costs at the top."""
    rows = []
    for model, dataset, column, g in _priced_curves(cells, aggregator):
        bottom = g.iloc[0]
        top = g[g.accuracy >= g.accuracy.max() - 1e-9].iloc[0]
        rows.append({"model": model, "dataset": dataset, "cost_column": column,
                     "bottom_budget": int(bottom.budget), "bottom_n": int(bottom.n),
                     "bottom_accuracy": float(bottom.accuracy), "bottom_cost": float(bottom[column]),
                     "top_budget": int(top.budget), "top_n": int(top.n), "top_accuracy": float(top.accuracy),
                     "top_cost": float(top[column]),
                     "ratio": float(top[column]) / float(bottom[column]) if bottom[column] > 0 else math.nan})
    return pd.DataFrame(rows)


def _bill_lines(cells: pd.DataFrame, aggregator: str) -> list[str]:
    """The bill of one (model, dataset): the cheapest (B, N) per accuracy level, then top against bottom."""
    table = cheapest_cells(cells, aggregator)
    span = cost_span(cells, aggregator)
    if table.empty:
        return ["No cells with a finite cost."]
    several = cells.strategy.nunique() > 1
    lines = [f"| {aggregator} ≥ | B | N | {aggregator} | tokens/problem | engine-s/problem | $ per 1,000 queries | "
             "× bottom |", "|" + "---|" * 8]
    for r in table.itertuples():
        if r.budget is None or (isinstance(r.budget, float) and math.isnan(r.budget)):
            lines.append(f"| {r.level:.1f} | not reached | | | | | | |")
            continue
        strategy = f" ({r.strategy})" if several else ""
        lines.append(f"| {r.level:.1f} | {int(r.budget)}{strategy} | {int(r.n)} | {r.accuracy:.3f} | "
                     f"{_tokens(r.tokens_per_problem)} | {_fmt(r.engine_seconds_per_problem)} | "
                     f"{_usd(r.usd_per_1k_queries)} | {_fmt(r.times_bottom)} |")
    s = span.iloc[0]
    what = "dollars per 1,000 queries" if s.cost_column == "usd_per_1k_queries" else "generated tokens per problem"
    lines += ["", f"A query at the top of the curve (B={s.top_budget}, N={s.top_n}: {aggregator} {s.top_accuracy:.3f}) "
              f"costs **{_fmt(s.ratio)}×** one at the bottom (B={s.bottom_budget}, N={s.bottom_n}: "
              f"{s.bottom_accuracy:.3f}), in {what}."]
    return lines


def _usd(value) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.3g}"


def _acc(row) -> str:
    if row is None:
        return "–"
    return f"{row.accuracy:.3f} [{_fmt(row.ci_low, 2)}, {_fmt(row.ci_high, 2)}]"


def _fmt(value, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def _tokens(value) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):,.0f}"


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
