"""Plots of a sweep's cells: accuracy against test-time compute on a log axis (the o1 plot's shape).

One panel per (model, dataset, aggregator): solid lines join the budgets at a fixed N
(the serial curves), dashed lines join the Ns at a fixed budget (the parallel curves).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402


def plot_accuracy_vs_compute(cells: pa.Table, out: Path, aggregators: tuple[str, ...] = ("maj@k", "pass@k")) -> Path:
    """Write the accuracy-vs-tokens plot of `cells` to `out` (PNG) and return the path."""
    df = cells.to_pandas()
    panels = [(key, g) for key, g in df.groupby(["model", "dataset", "aggregator"], sort=True)
              if key[2] in aggregators]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.4 * max(len(panels), 1), 4.8), squeeze=False)
    for ax, ((model, dataset, aggregator), g) in zip(axes[0], panels):
        ns, budgets = sorted(g.n.unique()), sorted(g.budget.unique())
        n_colors = plt.cm.viridis([i / max(len(ns) - 1, 1) for i in range(len(ns))])
        b_colors = plt.cm.plasma([i / max(len(budgets) - 1, 1) * 0.85 for i in range(len(budgets))])
        for n, color in zip(ns, n_colors):
            line = g[g.n == n].sort_values("tokens_per_problem")
            ax.plot(line.tokens_per_problem, line.accuracy, "o-", color=color, label=f"N={n} (budgets)")
        for budget, color in zip(budgets, b_colors):
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
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
