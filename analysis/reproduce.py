"""Reproduction: our cells next to the published numbers a recipe (conf/experiment/) names.

For each published point (aggregator, n, budget, value, source) the table holds our
accuracy at that cell, our 95% interval over problems (`estimators.mean_ci`), and whether the published
value falls inside it. The plot draws our curves with the published points overlaid.
`write_reproduction` is what `ttc reproduce` does after its sweep: the table as reproduction.md and .csv, the
plot, all three next to the sweep's cells and attached to its MLflow run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pyarrow as pa

from analysis.plots import AGGREGATOR_STYLE, save_figure
from orchestrator.colors import ramp

if TYPE_CHECKING:
    from orchestrator.config import Config



def compare(cells: pa.Table, published: Sequence) -> pd.DataFrame:
    """One row per published point: ours (with CI) vs published, and whether the CI covers it."""
    df = cells.to_pandas()
    rows = []
    for p in published:
        match = df[(df.aggregator == p.aggregator) & (df.n == p.n) & (df.budget == p.budget)]
        ours = match.iloc[0] if len(match) else None
        rows.append({
            "aggregator": p.aggregator, "n": p.n, "budget": p.budget, "published": p.value,
            "ours": float(ours.accuracy) if ours is not None else float("nan"),
            "ci_low": float(ours.ci_low) if ours is not None else float("nan"),
            "ci_high": float(ours.ci_high) if ours is not None else float("nan"),
            "inside_ci": bool(ours is not None and ours.ci_low <= p.value <= ours.ci_high),
            "problems": int(ours.problems) if ours is not None else 0,
            "source": p.source, "note": p.note,
        })
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, title: str) -> str:
    lines = [f"# {title}", "", "| cell | published | ours [95% CI] | inside CI | problems | source |",
             "| --- | ---: | ---: | :---: | ---: | --- |"]
    for r in table.itertuples():
        note = f" ({r.note})" if r.note else ""
        lines.append(f"| {r.aggregator.replace('k', str(r.n))} at B={r.budget} | {r.published:.3f} | "
                     f"{r.ours:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | {'yes' if r.inside_ci else 'no'} | "
                     f"{r.problems} | {r.source}{note} |")
    return "\n".join(lines) + "\n"


def plot_reproduction(cells: pa.Table, table: pd.DataFrame, out: Path, title: str) -> Path:
    """Our accuracy against N (one line per budget and aggregator) with the published points overlaid."""
    df = cells.to_pandas()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colour = ramp(df.budget.unique())
    for (aggregator, budget), g in df.groupby(["aggregator", "budget"], sort=True):
        if aggregator not in set(table.aggregator):
            continue
        g = g.sort_values("n")  # one colour per budget, one line style per aggregator
        ax.plot(g.n, g.accuracy, AGGREGATOR_STYLE.get(aggregator, ("", "x:"))[1], color=colour[budget], alpha=0.85,
                label=f"ours {aggregator}, B={budget}")
        ax.fill_between(g.n, g.ci_low, g.ci_high, color=colour[budget], alpha=0.10)
    for r in table.itertuples():
        ax.plot([r.n], [r.published], marker="*", markersize=15, color="black", linestyle="none")
        ax.annotate(f"published {r.aggregator.replace('k', str(r.n))} B={r.budget}: {r.published:.3f}",
                    (r.n, r.published), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if df.n.max() > 1:
        ax.set_xscale("log", base=2 if df.n.max() <= 1024 else 10)
    ax.set_xlabel("samples per problem N (log scale)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)[0]


@dataclass(frozen=True)
class Reproduction:
    """What `write_reproduction` wrote, and whether MLflow has it."""

    table: pd.DataFrame
    """`compare`'s table: one row per published point."""
    markdown_path: Path
    csv_path: Path
    plot_path: Path
    tracking_failure: str | None
    """None, or why the files were journaled for `ttc sync` instead of logged (tracking on, MLflow down)."""


def write_reproduction(cfg: Config, recipe: str, sweep_id: str, sweep_dir: Path, cells: pa.Table) -> Reproduction:
    """Compare a recipe's finished sweep with its published numbers (`cfg.published`); write reproduction.md,
    reproduction.csv and plots/reproduction.png into `sweep_dir` and attach the markdown and plot to its run."""
    from orchestrator.tracking import log_to_sweep

    table = compare(cells, cfg.published)
    title = f"{recipe}: ours vs published"
    md = sweep_dir / "reproduction.md"
    md.write_text(to_markdown(table, title), encoding="utf-8")
    csv = sweep_dir / "reproduction.csv"
    table.to_csv(csv, index=False)
    plot = plot_reproduction(cells, table, sweep_dir / "plots" / "reproduction.png", title)
    failure = log_to_sweep(cfg, sweep_id, sweep_dir, [(md, None), (plot, "plots")]) if cfg.tracking.enabled else None
    return Reproduction(table, md, csv, plot, failure)
