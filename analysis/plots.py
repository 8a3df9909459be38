"""Plots of a sweep's cells and fits, in the shapes of the published ones.

- `plot_o1`: accuracy against test-time compute on a log axis (OpenAI o1's plot): the serial
  curve (N=1, budget B grows) and the parallel curves (B fixed, N grows) on one axis, with
  the fitted curves drawn through the points;
- `plot_coverage`: pass@k against k (Large Language Monkeys' coverage), one curve per budget,
  with the exponentiated power law fitted to it;
- `plot_frontier`: the iso-compute frontier, the best (B, N) split of each compute level
  (`analysis.frontier.iso_compute_frontier` computes it);
- `plot_accuracy_vs_compute`: the quick plot every sweep writes when it finishes; where a verifier ran,
  it also compares pass@k, maj@k, best-of-N (bon@k) and weighted majority (wmaj@k) at equal FLOPs;
- `plot_headline`: the headline figure, every model on one compute axis: its frontier over all
  (B, N), its serial curve and its parallel curve (`analysis.frontier.headline_curves` computes
  them), so a model trained to think is seen climbing where one that is not stays flat.

Each `figure_*` builds a matplotlib Figure (tests read its axes back); each `plot_*` writes
it through `save_figure` (PNG and SVG with one stem, each written atomically) and returns the paths.
This module only draws: the frontiers it draws are computed in `analysis.frontier`, the fits in
`analysis.curves`. `fits` are the curve records of fits.json (`analysis.report`): dicts with the
curve's identity and its fitted forms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import pyarrow as pa
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.fit import FORMS
from analysis.frontier import headline_curves, iso_compute_frontier, on_log_axis
from orchestrator.colors import ramp
from orchestrator.schema import VERIFIER_AGGREGATORS
from orchestrator.store import atomic_write

TOKENS_LABEL = "generated tokens per problem (log scale)"
PANEL_SIZE = (6.4, 4.8)
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75}


# --- the sweep's quick plot: accuracy against compute, per aggregator ---------------------------

def figure_accuracy_vs_compute(cells: pa.Table | pd.DataFrame,
                               aggregators: tuple[str, ...] = ("maj@k", "pass@k")) -> Figure:
    """Accuracy against generated tokens per problem (log x): one panel per (model, dataset, aggregator) of
    `aggregators`, solid lines joining the budgets at a fixed N (the serial curves), dashed lines the Ns at
    a fixed budget (the parallel curves). Where a verifier ran (the cells hold bon@k and wmaj@k), one more
    panel per (model, dataset, strategy) compares the four aggregators at equal compute (`_draw_aggregators`)."""
    df = cells.to_pandas() if isinstance(cells, pa.Table) else cells
    panels = [(key, g) for key, g in df.groupby(["model", "dataset", "aggregator"], sort=True)
              if key[2] in aggregators]
    verified = df[df.aggregator.isin(VERIFIER_AGGREGATORS)]
    compared = sorted(verified.groupby(["model", "dataset", "strategy"]).groups) if len(verified) else []
    count = max(len(panels) + len(compared), 1)
    fig, axes = plt.subplots(1, count, figsize=(PANEL_SIZE[0] * count, PANEL_SIZE[1]), squeeze=False)
    for ax, ((model, dataset, aggregator), g) in zip(axes[0], panels):
        n_colors, b_colors = ramp(g.n.unique()), ramp(g.budget.unique())
        for n, color in n_colors.items():
            line = g[g.n == n].sort_values("tokens_per_problem")
            ax.plot(line.tokens_per_problem, line.accuracy, "o-", color=color, label=f"N={n} (budgets)")
        for budget, color in b_colors.items():
            line = g[g.budget == budget].sort_values("tokens_per_problem")
            ax.plot(line.tokens_per_problem, line.accuracy, "s--", color=color, alpha=0.7, markersize=4,
                    label=f"B={budget} (N)")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("generated tokens per problem (thinking + answer, log scale)")
        ax.set_ylabel(f"{aggregator} accuracy")
        ax.set_title(f"{model} on {dataset}: {aggregator} vs test-time compute")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
    for ax, key in zip(axes[0][len(panels):], compared):
        model, dataset, strategy = key
        _draw_aggregators(ax, df[(df.model == model) & (df.dataset == dataset) & (df.strategy == strategy)],
                          f"{model} on {dataset}" + (f" ({strategy})" if df.strategy.nunique() > 1 else ""))
    fig.tight_layout()
    return fig


COMPARED_AGGREGATORS = ("pass@k", "maj@k", "bon@k", "wmaj@k")
"""The aggregators a verifier's comparison panel draws, in this order (pass@k is the oracle's ceiling)."""
AGGREGATOR_STYLE = {"pass@k": ("grey", "^:"), "maj@k": ("tab:blue", "o-"), "bon@k": ("tab:red", "s-"),
                     "wmaj@k": ("tab:green", "D-")}
"""(colour, line style) of each aggregator; the reproduction plot (analysis/reproduce.py) uses the styles."""


def _draw_aggregators(ax, g: pd.DataFrame, where: str) -> None:
    """The four aggregators' parallel curves (N rising at the largest budget) of one (model, dataset,
    strategy) on one compute axis: FLOPs per problem, which for bon@k and wmaj@k include the verifier's
    prefill of every scored sample, so a point to the right costs more whoever spends it. Where some
    cell's FLOPs are unknown (no model shape) the axis falls back to generated tokens, and says so."""
    budget = int(g[g.aggregator.isin(VERIFIER_AGGREGATORS)].budget.max())
    g = g[g.budget == budget]
    flops = g.flops_per_problem.astype(float)
    x = "flops_per_problem" if bool(np.isfinite(flops).all() and (flops > 0).all()) else "tokens_per_problem"
    for aggregator in COMPARED_AGGREGATORS:
        line = g[g.aggregator == aggregator].sort_values("n")
        if line.empty:
            continue
        color, style = AGGREGATOR_STYLE[aggregator]
        ax.plot(line[x], line.accuracy, style, color=color, lw=1.8, markersize=5, label=aggregator)
        _errorbars(ax, line, x, color)
    tail = g[(g.aggregator == "maj@k") & (g.n > 1)].sort_values("n")
    _label_points(ax, tail[x], tail.accuracy, [f"N={n}" for n in tail.n], AGGREGATOR_STYLE["maj@k"][0])
    _log_axis(ax)
    ax.set_xlabel("FLOPs per problem, verifier's included (log scale)" if x == "flops_per_problem"
                  else f"{TOKENS_LABEL}; FLOPs unknown, verifier's not counted")
    _accuracy_axis(ax, "accuracy")
    ax.set_title(f"{where}: aggregators at equal compute, B={budget}")
    ax.legend(title="N rises along each curve", loc="best", fontsize="small", framealpha=0.9)


def plot_accuracy_vs_compute(cells: pa.Table | pd.DataFrame, out: Path,
                             aggregators: tuple[str, ...] = ("maj@k", "pass@k")) -> Path:
    """Write the sweep's quick plot (`figure_accuracy_vs_compute`) as PNG and SVG with the stem of `out`;
    return the PNG's path."""
    return save_figure(figure_accuracy_vs_compute(cells, aggregators), out)[0]


# --- shared pieces --------------------------------------------------------------------------------

def save_figure(fig: Figure, out: Path) -> list[Path]:
    """Write `fig` as `<stem>.png` and `<stem>.svg` beside `out` (each to a temp name, then renamed),
    close it, and return the two paths."""
    paths = []
    for fmt in ("png", "svg"):
        path = Path(out).with_suffix(f".{fmt}")
        atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=130))
        paths.append(path)
    plt.close(fig)
    return paths


def _curves(fits: Sequence[Mapping] | Mapping | None) -> list[Mapping]:
    """The curve records of `fits`: fits.json's dict as a whole, its "curves" list, or None."""
    if fits is None:
        return []
    if isinstance(fits, Mapping):
        return list(fits.get("curves", []))
    return list(fits)


def _find_fit(curves: list[Mapping], **key) -> Mapping | None:
    """The first curve record matching every item of `key` that has a chosen form."""
    for c in curves:
        if c.get("chosen") and all(c.get(k) == v for k, v in key.items()):
            return c
    return None


def _fit_line(curve: Mapping, points: int = 100) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, form) of a curve record's chosen fit, over the x range it was fitted on."""
    fit = curve["forms"][curve["chosen"]]
    form = FORMS[fit["form"]]
    lo, hi = fit["x_range"]
    x = np.logspace(np.log10(lo), np.log10(hi), points)
    return x, form.curve(x, np.array([fit["params"][p] for p in form.params])), fit["form"]


def _panels(keys: list, title_none: str) -> tuple[Figure, list]:
    """A figure with one axis per key (at most 3 across); an empty figure says `title_none`."""
    count = max(len(keys), 1)
    cols = min(count, 3)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[count:]:
        ax.set_visible(False)
    if not keys:
        axes[0].text(0.5, 0.5, title_none, ha="center", va="center", transform=axes[0].transAxes)
    return fig, axes[:count]


def _budget_colorbar(fig: Figure, ax, colors: dict[int, tuple]) -> None:
    """A discrete colour bar naming the budgets, so colours read without a legend."""
    budgets = sorted(colors)
    cmap = ListedColormap([colors[b] for b in budgets])
    mappable = plt.cm.ScalarMappable(norm=BoundaryNorm(np.arange(len(budgets) + 1), cmap.N), cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, ticks=np.arange(len(budgets)) + 0.5, fraction=0.05, pad=0.02)
    bar.ax.set_yticklabels([str(b) for b in budgets])
    bar.set_label("thinking budget B (tokens)")


def _label_points(ax, xs, ys, labels: Sequence[str], color) -> None:
    """Label rising points above-left; the first, and a point close in height to the one before on
    the other side from it, below-right: labels stay inside the axes and do not overprint."""
    last_y, above = None, False
    for x, y, label in zip(xs, ys, labels):
        above = last_y is not None and (not above if abs(y - last_y) < 0.04 else True)
        offset, ha = ((-5, 5), "right") if above else ((5, -12), "left")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, ha=ha, fontsize=8, color=color,
                    zorder=6, bbox=_LABEL_BOX)
        last_y = y


def _errorbars(ax, line: pd.DataFrame, x: str, color) -> None:
    y = line.accuracy.to_numpy()
    low = np.clip(np.nan_to_num(y - line.ci_low.to_numpy()), 0, None)
    high = np.clip(np.nan_to_num(line.ci_high.to_numpy() - y), 0, None)
    # One (2, points) array, not a list of two: a list of one-point arrays is read as scalars (one budget).
    ax.errorbar(line[x], y, yerr=np.vstack([low, high]), fmt="none", ecolor=color, alpha=0.35, elinewidth=1)


def _tick_label(value: float, _=None) -> str:
    """Plain numbers on log axes ("20", "1,000"), powers of ten beyond 100,000."""
    if value >= 1e5:
        exponent = np.log10(value)
        return f"$10^{{{exponent:.0f}}}$" if np.isclose(exponent, round(exponent)) else f"{value:.0e}"
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def _log_axis(ax, base: int = 10) -> None:
    """A log x axis with plain tick labels; a short range (under 1.5 decades) also labels 2 and 5 x 10^n."""
    ax.set_xscale("log", base=base)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_tick_label))
    low, high = ax.get_xlim()
    if base == 10 and high / low < 10 ** 1.5:
        ax.xaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_tick_label))
    else:
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _accuracy_axis(ax, ylabel: str) -> None:
    # Up to 1.07, not 1.02: room above points at 1.0 for their labels.
    ax.set_ylim(-0.02, 1.07)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _panel_title(model: str, dataset: str, strategy: str | None, several_strategies: bool) -> str:
    where = f"{model} on {dataset}"
    return f"{where} ({strategy})" if strategy and several_strategies else where


# --- the o1 plot ----------------------------------------------------------------------------------

def figure_o1(cells: pa.Table | pd.DataFrame, fits=None, aggregator: str = "maj@k") -> Figure:
    """Accuracy against generated tokens per problem (log x), one panel per (model, dataset, strategy):
    the serial curve at N=1 across budgets (black, each point labelled with its B) and, from each of
    its points, the parallel curve at that budget across N (coloured by B), with fits dotted."""
    df = on_log_axis(cells)
    df = df[df.aggregator == aggregator]
    several = df.strategy.nunique() > 1
    keys = sorted(df.groupby(["model", "dataset", "strategy"]).groups)
    fig, axes = _panels(keys, f"no {aggregator} cells to plot")
    curves = _curves(fits)
    for ax, (model, dataset, strategy) in zip(axes, keys):
        g = df[(df.model == model) & (df.dataset == dataset) & (df.strategy == strategy)]
        colors = ramp(g.budget.unique())
        ns = sorted(g.n.unique())
        fitted = False
        for budget, color in colors.items():
            line = g[g.budget == budget].sort_values("n")
            if len(line) > 1:  # CIs of the parallel points are left to the report: bars here hide the lines
                ax.plot(line.tokens_per_problem, line.accuracy, "s--", color=color, markersize=4, lw=1.4)
            fit = _find_fit(curves, model=model, dataset=dataset, strategy=strategy, curve="parallel",
                            budget=int(budget), aggregator=aggregator)
            if fit:
                fx, fy, _ = _fit_line(fit)
                ax.plot(fx, fy, ":", color=color, lw=1.1, alpha=0.8)
                fitted = True
        serial = g[g.n == 1].sort_values("tokens_per_problem")
        serial_form = None
        if len(serial):
            ax.plot(serial.tokens_per_problem, serial.accuracy, "o-", color="black", lw=2.2, markersize=6, zorder=5)
            _errorbars(ax, serial, "tokens_per_problem", "black")
            # Above-left of each point: the parallel curves leave it to the right, so that side is free.
            _label_points(ax, serial.tokens_per_problem, serial.accuracy, [f"B={b}" for b in serial.budget], "black")
            fit = _find_fit(curves, model=model, dataset=dataset, strategy=strategy, curve="serial")
            if fit:
                fx, fy, serial_form = _fit_line(fit)
                ax.plot(fx, fy, ":", color="black", lw=1.8, zorder=4)
        _log_axis(ax)
        ax.set_xlabel(TOKENS_LABEL)
        _accuracy_axis(ax, f"{aggregator} accuracy")
        ax.set_title(f"{_panel_title(model, dataset, strategy, several)}: {aggregator} vs test-time compute")
        n_text = ", ".join(str(n) for n in ns)
        handles = [Line2D([], [], color="black", marker="o", lw=2.2, label="serial: N=1, budget B grows"),
                   Line2D([], [], color="grey", marker="s", ls="--", markersize=4,
                          label=f"parallel: B fixed, N = {n_text}")]
        if serial_form or fitted:
            handles.append(Line2D([], [], color="black", ls=":", lw=1.8,
                                  label=f"fitted curves{f' (serial: {serial_form})' if serial_form else ''}"))
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)
        _budget_colorbar(fig, ax, colors)
    fig.tight_layout()
    return fig


def plot_o1(cells: pa.Table | pd.DataFrame, fits, out: Path, aggregator: str = "maj@k") -> list[Path]:
    """Write the o1-style plot (`figure_o1`) as PNG and SVG with the stem of `out`; return the paths."""
    return save_figure(figure_o1(cells, fits, aggregator), out)


# --- coverage against k ---------------------------------------------------------------------------

def figure_coverage(cells: pa.Table | pd.DataFrame, fits=None) -> Figure:
    """pass@k against k (log x), one curve per budget (coloured by B), with the exp_power_law fits dotted;
    one panel per (model, dataset, strategy)."""
    df = on_log_axis(cells)
    df = df[df.aggregator == "pass@k"]
    several = df.strategy.nunique() > 1
    keys = sorted(df.groupby(["model", "dataset", "strategy"]).groups)
    fig, axes = _panels(keys, "no pass@k cells to plot")
    curves = _curves(fits)
    for ax, (model, dataset, strategy) in zip(axes, keys):
        g = df[(df.model == model) & (df.dataset == dataset) & (df.strategy == strategy)]
        colors = ramp(g.budget.unique())
        fitted = False
        for budget, color in colors.items():
            line = g[g.budget == budget].sort_values("n")
            ax.plot(line.n, line.accuracy, "o-", color=color, markersize=4, lw=1.6)
            fit = _find_fit(curves, model=model, dataset=dataset, strategy=strategy, curve="coverage",
                            budget=int(budget))
            if fit:
                fx, fy, _ = _fit_line(fit)
                ax.plot(fx, fy, ":", color=color, lw=1.6)
                fitted = True
        _log_axis(ax, base=2)
        ax.set_xlabel("samples per problem k (log scale)")
        _accuracy_axis(ax, "coverage: pass@k")
        ax.set_title(f"{_panel_title(model, dataset, strategy, several)}: coverage vs samples")
        handles = [Line2D([], [], color="grey", marker="o", lw=1.6, markersize=4, label="pass@k, B fixed")]
        if fitted:
            handles.append(Line2D([], [], color="grey", ls=":", lw=1.6, label="fit: exp(a k^b)"))
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)
        _budget_colorbar(fig, ax, colors)
    fig.tight_layout()
    return fig


def plot_coverage(cells: pa.Table | pd.DataFrame, fits, out: Path) -> list[Path]:
    """Write the coverage plot (`figure_coverage`) as PNG and SVG with the stem of `out`; return the paths."""
    return save_figure(figure_coverage(cells, fits), out)


# --- the iso-compute frontier ---------------------------------------------------------------------

def figure_frontier(cells: pa.Table | pd.DataFrame, aggregator: str = "maj@k") -> Figure:
    """Every cell (grey, sized by N), the serial curve (N=1) and the iso-compute frontier (a step line),
    each change of the best split labelled with its (B, N); one panel per (model, dataset)."""
    df = on_log_axis(cells)
    df = df[df.aggregator == aggregator]
    frontier = iso_compute_frontier(df, aggregator)
    several = df.strategy.nunique() > 1
    keys = sorted(df.groupby(["model", "dataset"]).groups)
    fig, axes = _panels(keys, f"no {aggregator} cells to plot")
    for ax, (model, dataset) in zip(axes, keys):
        g = df[(df.model == model) & (df.dataset == dataset)]
        f = frontier[(frontier.model == model) & (frontier.dataset == dataset)]
        ax.scatter(g.tokens_per_problem, g.accuracy, s=12 + 10 * np.log2(g.n), color="0.7", zorder=2,
                   label="every cell (B, N); size grows with N")
        for (strategy, s), style in zip(g[g.n == 1].groupby("strategy"), ("-", "--", "-.", ":")):
            s = s.sort_values("tokens_per_problem")
            ax.plot(s.tokens_per_problem, s.accuracy, style, color="black", lw=1, alpha=0.6, zorder=3,
                    label=f"serial only (N=1{', ' + strategy if several else ''})")
        if len(f):
            ax.step(f.tokens_per_problem, f.accuracy, where="post", color="crimson", lw=2.2, zorder=4,
                    label="frontier: best accuracy at ≤ this compute")
            corners = f[(f.budget != f.budget.shift()) | (f.n != f.n.shift()) | (f.strategy != f.strategy.shift())]
            ax.scatter(corners.cell_tokens_per_problem, corners.accuracy, color="crimson", s=30, zorder=5)
            # Above-left of each corner: every cell lies on or under the envelope, so that side is free.
            _label_points(ax, corners.cell_tokens_per_problem, corners.accuracy,
                          [f"{r.strategy + ' ' if several else ''}B={r.budget}, N={r.n}" for r in corners.itertuples()],
                          "crimson")
        _log_axis(ax)
        ax.set_xlabel(TOKENS_LABEL)
        _accuracy_axis(ax, f"{aggregator} accuracy")
        ax.set_title(f"{model} on {dataset}: best (B, N) split per compute ({aggregator})")
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return fig


def plot_frontier(cells: pa.Table | pd.DataFrame, out: Path, aggregator: str = "maj@k") -> list[Path]:
    """Write the iso-compute frontier plot (`figure_frontier`) as PNG and SVG with the stem of `out`."""
    return save_figure(figure_frontier(cells, aggregator), out)


# --- the headline figure: models compared on one compute axis ------------------------------------

def figure_headline(cells: pa.Table | pd.DataFrame, aggregator: str = "maj@k",
                    parallel_budget: int | None = None) -> Figure:
    """Accuracy against generated tokens per problem (log x), every model on one axis per (dataset,
    strategy): per model its frontier over all (B, N) (thick, pale), its serial curve (N=1, budget rising,
    circles, labelled with B) and its parallel curve (N rising at the largest budget or `parallel_budget`,
    squares, labelled with N). A model trained to use thinking keeps climbing along both; one that is not
    stays flat along the serial curve."""
    curves = headline_curves(cells, aggregator, parallel_budget)
    several = curves.strategy.nunique() > 1
    keys = sorted(curves.groupby(["dataset", "strategy"]).groups) if len(curves) else []
    fig, axes = _panels(keys, f"no {aggregator} cells to plot")
    models = sorted(curves.model.unique()) if len(curves) else []
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    for ax, (dataset, strategy) in zip(axes, keys):
        here = curves[(curves.dataset == dataset) & (curves.strategy == strategy)]
        for model, g in here.groupby("model", sort=True):
            color = colors[model]
            front, serial, parallel = (g[g.curve == c] for c in ("frontier", "serial", "parallel"))
            # The frontier holds its last level up to the most any cell of the model spends.
            fx = [*front.tokens_per_problem, g.tokens_per_problem.max()]
            ax.step(fx, [*front.accuracy, *front.accuracy.iloc[-1:]], where="post", color=color, lw=7, alpha=0.22,
                    solid_capstyle="round", zorder=2)
            ax.plot(serial.tokens_per_problem, serial.accuracy, "o-", color=color, lw=2, markersize=6, zorder=4)
            _errorbars(ax, serial, "tokens_per_problem", color)
            ax.plot(parallel.tokens_per_problem, parallel.accuracy, "s--", color=color, lw=1.6, markersize=5,
                    zorder=3)
            _label_points(ax, serial.tokens_per_problem, serial.accuracy, [f"B={b}" for b in serial.budget], color)
            tail = parallel[parallel.n > 1]
            _label_points(ax, tail.tokens_per_problem, tail.accuracy, [f"N={n}" for n in tail.n], color)
        _log_axis(ax)
        ax.set_xlabel(TOKENS_LABEL)
        _accuracy_axis(ax, f"{aggregator} accuracy")
        budget = parallel_budget if parallel_budget is not None else int(here.budget[here.curve == "parallel"].max())
        ax.set_title(f"{dataset}{f' ({strategy})' if several else ''}: thinking longer vs voting more")
        handles = [Line2D([], [], color=colors[m], lw=3, label=m) for m in sorted(here.model.unique())]
        handles += [Line2D([], [], color="grey", marker="o", lw=2, label="serial: N=1, budget B rises"),
                    Line2D([], [], color="grey", marker="s", ls="--", lw=1.6,
                           label=f"parallel: B={budget}, N rises"),
                    Line2D([], [], color="grey", lw=7, alpha=0.3, label="frontier: best (B, N) at this compute")]
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return fig


def plot_headline(cells: pa.Table | pd.DataFrame, out: Path, aggregator: str = "maj@k",
                  parallel_budget: int | None = None) -> list[Path]:
    """Write the headline figure (`figure_headline`) as PNG and SVG with the stem of `out`; return the paths."""
    return save_figure(figure_headline(cells, aggregator, parallel_budget), out)
