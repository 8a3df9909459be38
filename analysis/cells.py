"""Cells: aggregate a sweep's sample rows into the grid's table (DESIGN.md, "Cells table").

For every (model, dataset, budget, strategy) and every N in the grid, `pass@k` and `maj@k`
with k = N, each estimated per problem from all N_max samples, averaged over problems,
with a bootstrap confidence interval over problems. Compute per problem: generated tokens
(thinking + answer) of N samples, and the FLOPs of N samples from the model's shape: per
sample of T tokens (prompt + thinking + answer), 2 x parameters x T for the weights plus
2 x layers x hidden x T^2 for causal attention. The prefix cache's savings on the prompt
are not subtracted: this is the compute of an uncached run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.estimators import bootstrap_ci, maj_at_k, pass_at_k
from orchestrator.schema import AGGREGATORS, CELL_SCHEMA

_CORRECT_VOTE = "\x00correct"  # every correct answer is equivalent to the reference, hence to each other


def _vote_key(row) -> str | None:
    """A sample row's vote in maj@k: _CORRECT_VOTE if graded correct, else its normalised answer, None if none."""
    if row.correct:
        return _CORRECT_VOTE
    if row.extracted_answer is None or pd.isna(row.extracted_answer):
        return None
    return "".join(str(row.extracted_answer).split())


def add_votes(df: pd.DataFrame) -> None:
    """Add to sample rows `df`, in place, a `vote` column: each row's vote in maj@k (the same for
    every correct answer, else the answer with whitespace removed, None if no answer was extracted)."""
    df["vote"] = [_vote_key(r) for r in df.itertuples()]


def problem_estimate(g: pd.DataFrame, aggregator: str, k: int) -> float:
    """One problem's `aggregator` ("pass@k" or "maj@k") at k, estimated from all its sample rows `g`
    (maj@k reads the `vote` column of `add_votes`)."""
    if aggregator == "pass@k":
        return pass_at_k(len(g), int(g.correct.sum()), k)
    return maj_at_k(list(g.vote), _CORRECT_VOTE, k)


def flops_per_sample(tokens: np.ndarray, shape: dict[str, int] | None) -> np.ndarray:
    """Forward FLOPs of sequences of `tokens` tokens: weights (2 P T) plus causal attention (2 L d T^2)."""
    if not shape:
        return np.full(len(tokens), np.nan)
    t = tokens.astype(float)
    return 2.0 * shape["parameters"] * t + 2.0 * shape["layers"] * shape["hidden"] * t**2


def compute_cells(samples: pa.Table, ns: Sequence[int], shapes: dict[str, dict[str, int] | None] | None = None
                  ) -> pa.Table:
    """The cells table for `samples`, one row per (model, dataset, budget, strategy, n, aggregator).
    `shapes` maps a model name to its parameters, layers and hidden size (for FLOPs)."""
    df = samples.to_pandas()
    if df.empty:
        return CELL_SCHEMA.empty_table()
    add_votes(df)
    df["generated"] = df.think_tokens + df.answer_tokens
    rows = []
    for (model, dataset, budget, strategy), group in df.groupby(["model", "dataset", "budget", "strategy"], sort=True):
        per_problem = list(group.groupby("problem_id", sort=True))
        mean_generated = group.generated.mean()
        mean_flops = flops_per_sample((group.prompt_tokens + group.generated).to_numpy(),
                                      (shapes or {}).get(model)).mean()
        for n in ns:
            if any(len(g) < n for _, g in per_problem):
                continue  # fewer samples than N: this N cannot be estimated here
            for aggregator in AGGREGATORS:
                values = np.array([problem_estimate(g, aggregator, n) for _, g in per_problem])
                low, high = bootstrap_ci(values)
                rows.append({
                    "model": model, "dataset": dataset, "budget": int(budget), "strategy": strategy,
                    "n": int(n), "aggregator": aggregator, "accuracy": float(values.mean()),
                    "ci_low": low, "ci_high": high,
                    "mean_think_tokens": float(group.think_tokens.mean()),
                    "tokens_per_problem": float(n * mean_generated),
                    "flops_per_problem": float(n * mean_flops),
                    "problems": len(per_problem), "samples": len(group),
                })
    return pa.Table.from_pylist(rows, schema=CELL_SCHEMA)
