"""The two tables of the data contract (DESIGN.md): sample rows and cells, as pyarrow schemas.

Every writer casts to these; every reader can rely on them. A sample row is one
problem x sample index x budget; a cell is one (model, dataset, budget, strategy, n,
aggregator) point of the grid.
"""

from __future__ import annotations

import pyarrow as pa

SAMPLE_SCHEMA = pa.schema([
    ("unit_key", pa.string()),
    ("model", pa.string()),
    ("model_revision", pa.string()),
    ("dataset", pa.string()),
    ("problem_id", pa.string()),
    ("sample_idx", pa.int32()),
    ("seed", pa.int64()),
    ("budget", pa.int32()),
    ("strategy", pa.string()),
    ("think_tokens", pa.int32()),
    ("answer_tokens", pa.int32()),
    # Tokens between thinking and answer that pass through the model: the forcing suffix's length
    # when forced, 1 (the delimiter) when the model closed thinking, 0 if it ended inside thinking.
    ("suffix_tokens", pa.int32()),
    ("prompt_tokens", pa.int32()),
    ("cached_tokens", pa.int32()),
    ("forced", pa.bool_()),
    ("finish_reason", pa.string()),
    ("answer_text", pa.string()),
    ("extracted_answer", pa.string()),
    ("correct", pa.bool_()),
    # maj@k's vote class among all rows of the problem: 0 = equal to the reference (exactly the rows
    # graded correct), 1, 2, ... = classes of mathematically equal wrong answers; null = no answer.
    ("vote_class", pa.int32()),
    # The verifier's score of (problem, thinking, answer), its probability that the answer is correct, for
    # bon@k and wmaj@k; null without a verifier or without an extracted answer (the sample abstains).
    ("score", pa.float64()),
    ("latency_s", pa.float64()),
    ("engine", pa.string()),
    ("engine_version", pa.string()),
])

CELL_SCHEMA = pa.schema([
    ("model", pa.string()),
    ("dataset", pa.string()),
    ("budget", pa.int32()),
    ("strategy", pa.string()),
    ("n", pa.int32()),
    ("aggregator", pa.string()),
    ("accuracy", pa.float64()),
    ("ci_low", pa.float64()),
    ("ci_high", pa.float64()),
    ("mean_think_tokens", pa.float64()),
    ("tokens_per_problem", pa.float64()),
    ("flops_per_problem", pa.float64()),
    ("problems", pa.int32()),
    ("samples", pa.int32()),
    # The bill (analysis/cells.py, `sample_bill`): engine time and dollars a query of this cell costs.
    ("engine_seconds_per_problem", pa.float64()),
    ("usd_per_1k_queries", pa.float64()),
])

AGGREGATORS = ("pass@k", "maj@k")

VERIFIER_AGGREGATORS = ("bon@k", "wmaj@k")
"""Aggregators of the cells of rows a verifier scored: best-of-N and the score-weighted vote."""

LATER_COLUMNS = ("score",)
"""Sample columns added after units were stored, all nullable: a stored unit without them is whole, and
reading it with SAMPLE_SCHEMA fills them with nulls (e.g. no verifier scores)."""
