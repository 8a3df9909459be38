"""Reproduction: our cells next to the published numbers a recipe (conf/experiment/) names.

For each published point (aggregator, n, budget, value, source) the table holds our
accuracy at that cell, our 95% interval over problems (`estimators.mean_ci`), and whether the published
value falls inside it. The plot draws our curves with the published points overlaid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402


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
    budgets = sorted(df.budget.unique())
    colour = dict(zip(budgets, plt.cm.viridis([i / max(len(budgets) - 1, 1) * 0.9 for i in range(len(budgets))])))
    for (aggregator, budget), g in df.groupby(["aggregator", "budget"], sort=True):
        if aggregator not in set(table.aggregator):
            continue
        g = g.sort_values("n")  # one colour per budget; solid maj@k, dashed pass@k
        ax.plot(g.n, g.accuracy, "o-" if aggregator == "maj@k" else "s--", color=colour[budget], alpha=0.85,
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
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
