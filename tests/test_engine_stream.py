"""The streaming engine (AsyncLLM on its own loop) on the real toy reasoner: units run at once from several
threads give the same rows as units run one by one, and the engine reports its KV-cache capacity in tokens."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.compose import compose
from orchestrator.datasets import load_problems
from orchestrator.plan import plan_units
from tests.conftest import TOY_OVERRIDES

pytestmark = pytest.mark.e2e

# Rows say the same about a sample however its requests interleaved, except its wall-clock latency and
# the prefix cache's hits (what other requests left in the cache).
RUN_DEPENDENT = ["latency_s", "cached_tokens"]


def test_units_run_at_once_from_threads_give_the_rows_they_give_alone(toy_engine):
    cfg = compose([*TOY_OVERRIDES, "dataset.limit=24", "sweep.problems_per_unit=8", "sweep.n=[1,4]"])
    units = plan_units(cfg, load_problems(cfg.dataset))
    assert len(units) == 3
    alone = [toy_engine.run_unit(u).drop_columns(RUN_DEPENDENT) for u in units]
    with ThreadPoolExecutor(len(units)) as pool:
        together = [b.drop_columns(RUN_DEPENDENT) for b in pool.map(toy_engine.run_unit, units)]
    assert all(a.equals(t) for a, t in zip(alone, together))
    assert sum(b.num_rows for b in together) == 24 * 4 * len(cfg.sweep.budgets)


def test_capacity_is_the_tokens_the_kv_cache_holds(toy_engine):
    cache = toy_engine.llm.vllm_config.cache_config
    assert toy_engine.capacity() == cache.num_gpu_blocks * cache.block_size >= toy_engine.model.max_model_len
