"""Cells: aggregate a sweep's sample rows into the grid's table (DESIGN.md, "Cells table").

For every (model, dataset, budget, strategy) and every N in the grid, `pass@k` and `maj@k`
with k = N, each estimated per problem from all N_max samples, averaged over problems.

maj@k votes with the rows' `vote_class` (the engine groups a problem's extracted answers into
classes of mathematically equal answers with the grader's equality: 0 is the reference's class,
exactly the rows graded correct; a null class abstains). Rows stored before vote classes existed
(the column absent or null on every row while answers were extracted) vote with their answer text,
whitespace removed, and every correct row with the reference. Where maj@k is estimated from random
subsets (thousands of samples), each (problem, k) draws with its own seed (`vote_seed`).

The interval is `estimators.mean_ci` over problems (a Wilson score interval with a design effect),
widened in quadrature by the Monte-Carlo standard error of the mean where some problem's maj@k was
sampled rather than counted: sqrt(sum of the problems' squared errors) / problems.

Compute per problem: generated tokens (thinking + answer) of N samples, and the FLOPs of N samples
from the model's shape (`orchestrator.plan.model_shape`). A sample at budget B is charged as one
uncached forward pass over its whole sequence, T = prompt + thinking (at most B) + suffix + answer
tokens, where suffix is what passes through the model between thinking and answer (the forcing
suffix when forced, the end-of-thinking delimiter when the model closed thinking itself):
2 x parameters x T for the weights plus 2 x layers x heads x head_dim x T^2 for causal attention
(query-key scores and the weighted sum of values, half of the T^2 pairs each). Counted as a run
capped at B would spend it: the answer pass's re-reading of prompt and thinking is not counted
twice (vLLM serves it from the prefix cache), the prefix cache's savings on the prompt are not
subtracted, and thinking the shared ladder generated beyond B for larger budgets is not charged
to B. Rows without `suffix_tokens` (stored before it existed) count no suffix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.estimators import maj_at_k_estimate, mean_ci, pass_at_k
from orchestrator.schema import AGGREGATORS, CELL_SCHEMA

CORRECT_VOTE = 0
"""The vote of the reference's class (`vote_class` 0): maj@k counts a majority for it as right."""


def _legacy_vote(row) -> str | int | None:
    """The vote of a row stored without a vote class: the reference's class if graded correct, else the
    extracted answer with whitespace removed (equal answers written differently then split their votes)."""
    if row.correct:
        return CORRECT_VOTE
    if row.extracted_answer is None or pd.isna(row.extracted_answer):
        return None
    return "text:" + "".join(str(row.extracted_answer).split())


def add_votes(df: pd.DataFrame) -> None:
    """Add to sample rows `df`, in place, a `vote` column: each row's vote in maj@k, its `vote_class`
    (CORRECT_VOTE for the reference's class, None to abstain), or for rows stored without vote classes
    the answer text (`_legacy_vote`)."""
    legacy = "vote_class" not in df or (df.vote_class.isna().all() and df.extracted_answer.notna().any())
    votes = ([_legacy_vote(r) for r in df.itertuples()] if legacy
             else [None if pd.isna(v) else int(v) for v in df.vote_class])
    # object dtype: a column of ints and None would become floats and NaN, and NaN is no abstention.
    df["vote"] = pd.Series(votes, index=df.index, dtype=object)


def vote_seed(problem_id: str, k: int) -> int:
    """The seed of maj@k's random subsets for one (problem, k): stable across runs and processes (a hash,
    not Python's salted `hash`), different between problems and between k."""
    return int.from_bytes(hashlib.blake2b(f"{problem_id}\x00{k}".encode(), digest_size=8).digest(), "little")


def problem_estimate(g: pd.DataFrame, aggregator: str, k: int) -> float:
    """One problem's `aggregator` ("pass@k" or "maj@k") at k, estimated from all its sample rows `g`
    (maj@k reads the `vote` column of `add_votes`)."""
    return problem_estimate_se(g, aggregator, k)[0]


def problem_estimate_se(g: pd.DataFrame, aggregator: str, k: int) -> tuple[float, float]:
    """(`problem_estimate`, its Monte-Carlo standard error): 0 unless maj@k was estimated from random
    subsets, drawn with the seed `vote_seed(problem, k)`."""
    if aggregator == "pass@k":
        return pass_at_k(len(g), int(g.correct.sum()), k), 0.0
    return maj_at_k_estimate(list(g.vote), CORRECT_VOTE, k, seed=vote_seed(str(g.problem_id.iloc[0]), k))


def flops_per_sample(tokens: np.ndarray, shape: dict[str, int] | None) -> np.ndarray:
    """Forward FLOPs of sequences of `tokens` tokens: weights (2 P T) plus causal attention
    (2 x layers x heads x head_dim x T^2); NaN without a shape."""
    if not shape:
        return np.full(len(tokens), np.nan)
    t = tokens.astype(float)
    attention_width = shape["heads"] * shape["head_dim"]
    return 2.0 * shape["parameters"] * t + 2.0 * shape["layers"] * attention_width * t**2


def compute_cells(samples: pa.Table, ns: Sequence[int], shapes: dict[str, dict[str, int] | None] | None = None
                  ) -> pa.Table:
    """The cells table for `samples`, one row per (model, dataset, budget, strategy, n, aggregator).
    `shapes` maps a model name to its `model_shape` (parameters, layers, heads, head_dim; for FLOPs)."""
    df = samples.to_pandas()
    if df.empty:
        return CELL_SCHEMA.empty_table()
    add_votes(df)
    df["generated"] = df.think_tokens + df.answer_tokens
    suffix = df.suffix_tokens.fillna(0) if "suffix_tokens" in df else 0
    df["sequence"] = df.prompt_tokens + df.think_tokens + suffix + df.answer_tokens
    rows = []
    for (model, dataset, budget, strategy), group in df.groupby(["model", "dataset", "budget", "strategy"], sort=True):
        per_problem = list(group.groupby("problem_id", sort=True))
        fewest = min(len(g) for _, g in per_problem)
        mean_generated = group.generated.mean()
        mean_flops = flops_per_sample(group.sequence.to_numpy(), (shapes or {}).get(model)).mean()
        for n in ns:
            if fewest < n:
                continue  # fewer samples than N: this N cannot be estimated here
            for aggregator in AGGREGATORS:
                estimates = np.array([problem_estimate_se(g, aggregator, n) for _, g in per_problem])
                values, errors = estimates[:, 0], estimates[:, 1]
                low, high = mean_ci(values, fewest, mc_se=float(np.sqrt(np.sum(errors ** 2)) / len(values)))
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
