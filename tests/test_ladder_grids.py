"""A budget's rows do not depend on the other budgets of the grid (on the real engine, the toy reasoner).

The toy thinks in 5-token steps, so samples that think exactly 15 or 50 tokens and then close
are common: the boundary samples that a delimiter counted against the budget used to force at
the largest budget only. Grids [15, 50] and [15, 50, 55] must give identical rows at 15 and 50,
with the cap strategy and with extend rounds.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from orchestrator.compose import compose
from orchestrator.datasets import load_problems
from orchestrator.plan import plan_units
from tests.conftest import TOY_OVERRIDES
from tests.rows import ROW_ORDER

pytestmark = pytest.mark.e2e

SHARED = (15, 50)
# Everything a row says about the sample, except what depends on the run rather than the sample:
# its unit key, its latency, the prefix cache's hits, and the labels of its vote class (compared
# as a partition below: wrong classes are numbered by first appearance over all budgets).
SAME = ["problem_id", "sample_idx", "seed", "budget", "think_tokens", "answer_tokens", "suffix_tokens",
        "prompt_tokens", "forced", "finish_reason", "answer_text", "extracted_answer", "correct"]


def _rows(engine, budgets: str, *overrides: str):
    cfg = compose([*TOY_OVERRIDES, "dataset.limit=64", "sweep.problems_per_unit=64", f"sweep.budgets={budgets}",
                   "sweep.n=[1,4]", *overrides])
    (unit,) = plan_units(cfg, load_problems(cfg.dataset))
    rows = pa.Table.from_batches([engine.run_unit(unit)]).to_pandas()
    return unit, rows[rows.budget.isin(SHARED)].sort_values(ROW_ORDER).reset_index(drop=True)


def _partition(rows) -> list:
    """Each row's vote class relabelled by first appearance within its (problem, budget), 0 kept."""
    out = []
    for _, group in rows.groupby(["problem_id", "budget"], sort=True):
        labels: dict = {0: 0}
        out += [None if c != c or c is None else labels.setdefault(c, len(labels)) for c in group.vote_class]
    return out


def test_two_grids_that_share_budgets_give_identical_rows_there(toy_engine):
    small_unit, small = _rows(toy_engine, "[15,50]")
    large_unit, large = _rows(toy_engine, "[15,50,55]")
    assert small_unit.key != large_unit.key
    assert len(small) == len(large) == 64 * 4 * len(SHARED)
    assert small[SAME].equals(large[SAME])
    assert _partition(small) == _partition(large)
    boundary = {b: int(((small.budget == b) & (small.think_tokens == b) & ~small.forced
                        & (small.suffix_tokens == 1)).sum()) for b in SHARED}
    natural = {b: int(((small.budget == b) & ~small.forced).sum()) for b in SHARED}
    print(f"boundary samples (exactly B thinking tokens, then closed) per shared budget: {boundary}; "
          f"natural rows: {natural}; rows compared: {len(small)}")
    assert all(count >= 1 for count in boundary.values())
    assert (small.vote_class.isna() == small.extracted_answer.isna()).all()
    assert ((small.vote_class == 0) == small.correct).all()


def test_extend_rounds_follow_the_same_definition(toy_engine):
    # A sample extended under B_max = 55 but not under 50 (its close plus the wait string leaves no
    # room below 50) must read at 50 as it would have stopped there.
    extend = ("sweep.strategy=extend", "sweep.extend_rounds=2")
    _, small = _rows(toy_engine, "[15,50]", *extend)
    _, large = _rows(toy_engine, "[15,50,55]", *extend)
    assert small[SAME].equals(large[SAME]) and _partition(small) == _partition(large)
    assert (small.think_tokens <= small.budget).all() and set(small.strategy) == {"extend"}
