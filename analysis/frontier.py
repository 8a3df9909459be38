"""Frontiers of a cells table: the best split of a compute budget between thinking (B) and sampling (N).

- `iso_compute_frontier`: per (model, dataset) and compute level, the most accurate cell spending at
  most that much (the report's table and the frontier plot);
- `headline_curves`: per (model, dataset, strategy) the three curves of the headline figure: the
  cells no cheaper cell beats, the serial curve (N=1) and the parallel curve (one budget, N rising).

Pure computations on the cells table (pandas); `analysis.plots` draws them, `analysis.report` tabulates them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def on_log_axis(cells: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """The cells (as a DataFrame copy) with finite positive compute and a known accuracy."""
    df = cells.to_pandas() if isinstance(cells, pa.Table) else cells.copy()
    # Points off a log axis (no compute, or compute unknown) cannot be drawn or fitted.
    return df[np.isfinite(df.tokens_per_problem) & (df.tokens_per_problem > 0) & df.accuracy.notna()]


FRONTIER_COLUMNS = ["model", "dataset", "tokens_per_problem", "strategy", "budget", "n", "accuracy", "ci_low",
                    "ci_high", "cell_tokens_per_problem", "cell_flops_per_problem"]


def iso_compute_frontier(cells: pa.Table | pd.DataFrame, aggregator: str = "maj@k") -> pd.DataFrame:
    """The best split of each compute level between thinking (B) and sampling (N).

    For every (model, dataset) and every compute level (each distinct tokens_per_problem among its
    cells), the most accurate cell spending at most that much: the upper envelope of accuracy
    against compute. Ties go to the cheaper cell, then to the smaller N. Columns: FRONTIER_COLUMNS
    (`cell_*` are what the best cell itself spends, at most the level).
    """
    df = on_log_axis(cells)
    df = df[df.aggregator == aggregator].sort_values(
        ["model", "dataset", "tokens_per_problem", "accuracy", "n", "budget"],
        ascending=[True, True, True, False, True, True])
    rows = []
    for (model, dataset), g in df.groupby(["model", "dataset"], sort=True):
        best = None
        for level, at in g.groupby("tokens_per_problem", sort=True):
            top = at.iloc[0]  # most accurate at exactly this level (sorted above)
            if best is None or top.accuracy > best.accuracy:
                best = top
            rows.append({"model": model, "dataset": dataset, "tokens_per_problem": float(level),
                         "strategy": best.strategy, "budget": int(best.budget), "n": int(best.n),
                         "accuracy": float(best.accuracy), "ci_low": float(best.ci_low),
                         "ci_high": float(best.ci_high), "cell_tokens_per_problem": float(best.tokens_per_problem),
                         "cell_flops_per_problem": float(best.flops_per_problem)})
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


HEADLINE_COLUMNS = ["model", "dataset", "strategy", "curve", "budget", "n", "tokens_per_problem", "accuracy",
                    "ci_low", "ci_high"]


def headline_curves(cells: pa.Table | pd.DataFrame, aggregator: str = "maj@k",
                    parallel_budget: int | None = None) -> pd.DataFrame:
    """The three curves of the headline figure per (model, dataset, strategy), as rows (HEADLINE_COLUMNS)
    with `curve` one of:
    - "frontier": the cells no cheaper-or-equal cell beats, over every (B, N): each is more accurate
      than everything spending less (ties go to the cheaper cell, then the smaller N);
    - "serial": N = 1, budget rising (thinking longer);
    - "parallel": N rising at one budget, `parallel_budget` or else the largest (voting over more samples).
    Points are sorted by compute; cells off a log axis (no finite positive compute) are left out."""
    df = on_log_axis(cells)
    df = df[df.aggregator == aggregator]
    parts = []
    for _, g in df.groupby(["model", "dataset", "strategy"], sort=True):
        ordered = g.sort_values(["tokens_per_problem", "accuracy", "n"], ascending=[True, False, True])
        best = ordered.accuracy.cummax().shift(fill_value=-np.inf)
        frontier = ordered[ordered.accuracy > best]
        budget = parallel_budget if parallel_budget is not None else int(g.budget.max())
        for curve, rows in (("frontier", frontier), ("serial", g[g.n == 1]), ("parallel", g[g.budget == budget])):
            parts.append(rows.sort_values(["tokens_per_problem", "n"]).assign(curve=curve)[HEADLINE_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=HEADLINE_COLUMNS)
    return pd.concat(parts, ignore_index=True)
