"""Sample rows for tests: one builder of rows with every schema column, and one order to compare rows in.

    rows = [sample_row(problem_id=f"p{p}", sample_idx=s, budget=b, correct=True) for ...]
    table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
    df.sort_values(ROW_ORDER)
"""

from __future__ import annotations

from orchestrator.schema import SAMPLE_SCHEMA

ROW_ORDER = ["problem_id", "sample_idx", "budget"]
"""A sample row's place in its unit (each (problem, sample, budget) is one row): sort by it to compare two runs."""
TABLE_ORDER = [(column, "ascending") for column in ("unit_key", *ROW_ORDER)]
"""The same for the rows of several units, as a pyarrow sort (`table.sort_by(TABLE_ORDER)`)."""


def sample_row(**columns) -> dict:
    """A sample row: every column of SAMPLE_SCHEMA, plain defaults (one sample of problem "p0" at budget 0,
    wrong, no answer) overridden by `columns`; `seed` defaults to `sample_idx`, `vote_class` to 0 for a
    correct row. Columns the schema lacks are an error: a typo would otherwise test nothing."""
    unknown = set(columns) - set(SAMPLE_SCHEMA.names)
    if unknown:
        raise KeyError(f"not sample columns: {sorted(unknown)}")
    row = {name: None for name in SAMPLE_SCHEMA.names} | {
        "unit_key": "u", "model": "m", "dataset": "d", "problem_id": "p0", "sample_idx": 0, "budget": 0,
        "strategy": "cap", "think_tokens": 0, "answer_tokens": 3, "suffix_tokens": 1, "prompt_tokens": 10,
        "cached_tokens": 0, "forced": False, "finish_reason": "stop", "answer_text": "", "correct": False,
        "latency_s": 0.0, "engine": "vllm", "engine_version": "test"}
    row |= columns
    if "seed" not in columns:
        row["seed"] = row["sample_idx"]
    if "vote_class" not in columns and row["correct"]:
        row["vote_class"] = 0
    return row
