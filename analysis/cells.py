"""Cells: aggregate a sweep's sample rows into the grid's table (DESIGN.md, "Cells table").

For every (model, dataset, budget, strategy) and every N in the grid, `pass@k` and `maj@k`
with k = N, each estimated per problem from all N_max samples, averaged over problems. Where a
verifier scored the rows (the `score` column, absent or null in rows stored without one), also
`bon@k` (the top-scored sample of a k-subset) and `wmaj@k` (the vote class with the highest total
score), whose compute adds the verifier's prefill of every scored sequence.

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
from the model's shape (`orchestrator.model_files.model_shape`). A sample at budget B is charged as one
uncached forward pass over its whole sequence, T = prompt + thinking (at most B) + suffix + answer
tokens, where suffix is what passes through the model between thinking and answer (the forcing
suffix when forced, the end-of-thinking delimiter when the model closed thinking itself):
2 x parameters x T for the weights plus 2 x layers x heads x head_dim x T^2 for causal attention
(query-key scores and the weighted sum of values, half of the T^2 pairs each). Counted as a run
capped at B would spend it: the answer pass's re-reading of prompt and thinking is not counted
twice (vLLM serves it from the prefix cache), the prefix cache's savings on the prompt are not
subtracted, and thinking the shared ladder generated beyond B for larger budgets is not charged
to B. Rows without `suffix_tokens` (stored before it existed) count no suffix.

The bill per problem (`sample_bill`, inputs in `Pricing`): engine-seconds = generated tokens (as in
tokens_per_problem) / the engine's throughput (generated tokens per engine-second: what the sweep
measured, else model.est_tokens_per_s). Apportioning by tokens is what sharing a batched engine means:
a row's `latency_s` (queued to last token) runs while the engine serves every other request in its
batch, so latency x (the request's tokens per second / the engine's) = tokens / throughput.
Dollars per 1,000 queries: with token prices (model.price, USD per million tokens) a query is billed as
one request capped at B: input = prompt (+ the forcing suffix when forced), output = thinking + the
delimiter when the model closed thinking itself + answer; `cached_input` is not charged, since only
ttc's shared ladder re-reads a cached prefix. Without token prices: engine-seconds x
model.tensor_parallel_size GPUs x cost.gpu_hour_usd / 3600. Both are x N per problem, like tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.estimators import best_of_k, maj_at_k_estimate, mean_ci, pass_at_k, weighted_maj_at_k_estimate
from orchestrator.schema import AGGREGATORS, CELL_SCHEMA, VERIFIER_AGGREGATORS

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
    """(`problem_estimate`, its Monte-Carlo standard error): 0 unless maj@k or wmaj@k was estimated from
    random subsets, drawn with the seed `vote_seed(problem, k)`. bon@k and wmaj@k read the `score` column
    (null: unscored, ranked last by bon@k, abstaining in wmaj@k)."""
    if aggregator == "pass@k":
        return pass_at_k(len(g), int(g.correct.sum()), k), 0.0
    if aggregator == "bon@k":
        return best_of_k(list(g.score), list(g.correct), k), 0.0
    if aggregator == "wmaj@k":
        return weighted_maj_at_k_estimate(list(g.vote), list(g.score), CORRECT_VOTE, k,
                                          seed=vote_seed(str(g.problem_id.iloc[0]), k))
    return maj_at_k_estimate(list(g.vote), CORRECT_VOTE, k, seed=vote_seed(str(g.problem_id.iloc[0]), k))


def flops_per_sample(tokens: np.ndarray, shape: dict[str, int] | None) -> np.ndarray:
    """Forward FLOPs of sequences of `tokens` tokens: weights (2 P T) plus causal attention
    (2 x layers x heads x head_dim x T^2); NaN without a shape."""
    if not shape:
        return np.full(len(tokens), np.nan)
    t = tokens.astype(float)
    attention_width = shape["heads"] * shape["head_dim"]
    return 2.0 * shape["parameters"] * t + 2.0 * shape["layers"] * attention_width * t**2


@dataclass(frozen=True)
class Pricing:
    """What one model's queries cost: the inputs of its bill columns (`sample_bill`)."""

    tokens_per_s: float | None = None
    """The engine's throughput: generated tokens per engine-second (measured, else model.est_tokens_per_s)."""
    gpus: int = 1
    """GPUs one engine holds (model.tensor_parallel_size)."""
    gpu_hour_usd: float | None = None
    """USD per GPU-hour (cost.gpu_hour_usd)."""
    price: Mapping[str, float | None] | None = None
    """USD per million tokens, {input, output, cached_input} (model.price); when set, dollars come from it."""


def pricing_of(parts: Sequence, tokens_per_s: Mapping[str, float] | None = None) -> dict[str, Pricing]:
    """Each model's Pricing from a sweep's configs (one per (model, dataset) pair): `tokens_per_s[model]`
    where measured, else the model's planning figure model.est_tokens_per_s."""
    out = {}
    for cfg in parts:
        m = cfg.model
        measured = (tokens_per_s or {}).get(m.name)
        out[m.name] = Pricing(tokens_per_s=float(measured if measured else m.est_tokens_per_s),
                              gpus=m.tensor_parallel_size, gpu_hour_usd=cfg.cost.gpu_hour_usd,
                              price=getattr(m, "price", None))  # model.price: a ModelConfig key of issue 13
    return out


BILL_COLUMNS = ("engine_seconds_per_problem", "usd_per_1k_queries")


def sample_bill(rows: pd.DataFrame, pricing: Pricing | None) -> dict[str, float]:
    """One sample's bill, the mean over a cell's rows (think_tokens, answer_tokens, prompt_tokens, forced,
    suffix_tokens): {engine_seconds_per_problem, usd_per_1k_queries} for N = 1; a cell multiplies by N.
    NaN where `pricing` lacks what a column needs (the module docstring gives the formulas)."""
    nan = float("nan")
    if pricing is None or rows.empty:
        return dict.fromkeys(BILL_COLUMNS, nan)
    generated = (rows.think_tokens + rows.answer_tokens).astype(float)
    rate = pricing.tokens_per_s
    engine_s = float(generated.mean() / rate) if rate and rate > 0 else nan
    if pricing.price:
        suffix = rows.suffix_tokens.fillna(0).astype(float) if "suffix_tokens" in rows else 0.0
        forced = rows.forced.astype(bool)
        tokens_in = rows.prompt_tokens.astype(float) + np.where(forced, suffix, 0.0)
        tokens_out = generated + np.where(forced, 0.0, suffix)
        usd = float((tokens_in * (pricing.price.get("input") or 0.0)
                     + tokens_out * (pricing.price.get("output") or 0.0)).mean() / 1e6)
    elif pricing.gpu_hour_usd is not None:
        usd = engine_s * pricing.gpus * pricing.gpu_hour_usd / 3600.0
    else:
        usd = nan
    return {"engine_seconds_per_problem": engine_s, "usd_per_1k_queries": 1000.0 * usd}


def compute_cells(samples: pa.Table, ns: Sequence[int], shapes: dict[str, dict[str, int] | None] | None = None,
                  verifier_shape: dict[str, int] | None = None, pricing: Mapping[str, Pricing] | None = None
                  ) -> pa.Table:
    """The cells table for `samples`, one row per (model, dataset, budget, strategy, n, aggregator).
    `shapes` maps a model name to its `model_shape` (parameters, layers, heads, head_dim; for FLOPs).
    Where a verifier scored rows (`score` not all null) bon@k and wmaj@k join pass@k and maj@k, and
    their FLOPs add the verifier's (shape `verifier_shape`, NaN without one): one prefill of each scored
    row's sequence, counted in the generator's tokens (the same tokenizer for the toy verifier; for a verifier
    reading text, `verifier.input_template`, an estimate: its own tokenizer and chat template differ).
    `pricing` maps a model name to its Pricing (`pricing_of`), for the bill columns (NaN without)."""
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
        bill = sample_bill(group, (pricing or {}).get(model))
        scored = group.score.notna().to_numpy() if "score" in group else np.zeros(len(group), dtype=bool)
        verifier_flops = np.where(scored, flops_per_sample(group.sequence.to_numpy(), verifier_shape), 0.0).mean()
        for n in ns:
            if fewest < n:
                continue  # fewer samples than N: this N cannot be estimated here
            for aggregator in AGGREGATORS + (VERIFIER_AGGREGATORS if scored.any() else ()):
                estimates = np.array([problem_estimate_se(g, aggregator, n) for _, g in per_problem])
                values, errors = estimates[:, 0], estimates[:, 1]
                low, high = mean_ci(values, fewest, mc_se=float(np.sqrt(np.sum(errors ** 2)) / len(values)))
                rows.append({
                    "model": model, "dataset": dataset, "budget": int(budget), "strategy": strategy,
                    "n": int(n), "aggregator": aggregator, "accuracy": float(values.mean()),
                    "ci_low": low, "ci_high": high,
                    "mean_think_tokens": float(group.think_tokens.mean()),
                    "tokens_per_problem": float(n * mean_generated),
                    "flops_per_problem": float(n * (mean_flops + (verifier_flops if aggregator in VERIFIER_AGGREGATORS
                                                                  else 0.0))),
                    "problems": len(per_problem), "samples": len(group),
                    **{column: n * value for column, value in bill.items()},
                })
    return pa.Table.from_pylist(rows, schema=CELL_SCHEMA)
