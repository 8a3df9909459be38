"""The cells table from sample rows: estimators per problem, compute per problem, schema."""

import numpy as np
import pyarrow as pa
import pytest

from analysis.cells import compute_cells, flops_per_sample
from analysis.estimators import maj_at_k, pass_at_k
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA


def _samples(rng, problems=6, n=4, budgets=(0, 10)):
    rows = []
    for p in range(problems):
        for s in range(n):
            for b in budgets:
                correct = bool(rng.random() < 0.2 + 0.05 * b)
                rows.append({"unit_key": "u", "model": "m", "model_revision": None, "dataset": "d",
                             "problem_id": f"p{p}", "sample_idx": s, "seed": s, "budget": b, "strategy": "cap",
                             "think_tokens": min(b, 7), "answer_tokens": 3, "prompt_tokens": 11,
                             "cached_tokens": 0, "forced": True, "finish_reason": "stop", "answer_text": "",
                             "extracted_answer": "1" if correct else rng.choice(["2", "3", None]),
                             "correct": correct, "latency_s": 0.0, "engine": "vllm", "engine_version": "x"})
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def test_cells_match_the_estimators_row_by_row():
    samples = _samples(np.random.default_rng(0))
    shape = {"parameters": 1000, "layers": 2, "hidden": 8}
    cells = compute_cells(samples, [1, 2, 4], {"m": shape})
    assert cells.schema == CELL_SCHEMA and cells.num_rows == 2 * 3 * 2
    df, raw = cells.to_pandas(), samples.to_pandas()
    for cell in df.itertuples():
        g = raw[raw.budget == cell.budget]
        per_problem = []
        for _, p in g.groupby("problem_id"):
            if cell.aggregator == "pass@k":
                per_problem.append(pass_at_k(len(p), int(p.correct.sum()), cell.n))
            else:
                votes = ["ok" if c else a for c, a in zip(p.correct, p.extracted_answer)]
                per_problem.append(maj_at_k(votes, "ok", cell.n))
        assert cell.accuracy == pytest.approx(np.mean(per_problem))
        assert cell.tokens_per_problem == pytest.approx(cell.n * (g.think_tokens + g.answer_tokens).mean())
        t = (g.prompt_tokens + g.think_tokens + g.answer_tokens).to_numpy(dtype=float)
        assert cell.flops_per_problem == pytest.approx(cell.n * np.mean(2000 * t + 32 * t**2))
        assert cell.problems == 6 and cell.samples == 24


def test_unknown_shape_gives_nan_flops_and_n_beyond_samples_is_skipped():
    cells = compute_cells(_samples(np.random.default_rng(1)), [1, 8]).to_pandas()
    assert set(cells.n) == {1} and cells.flops_per_problem.isna().all()
    assert np.isnan(flops_per_sample(np.array([3]), None)).all()
