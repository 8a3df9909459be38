"""The dispatcher (orchestrator/dispatch.py) in the fast tier: simulated engines in virtual time, no Ray.

orchestrator/virtual_backend.py runs each replica as an in-process SimEngine on a virtual clock,
so these tests see every submit, finish, start and stop in order, and kill engines and nodes at
exact moments, without the races a live Ray brings. What only a real Ray shows (actors holding
GPUs, placement groups, a killed process, a removed node, a killed driver) stays in
tests/test_scheduler.py's end-to-end tier.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from orchestrator.config import ClusterConfig, ModelConfig, SimConfig
from orchestrator.datasets import Problem
from orchestrator.dispatch import IN_FLIGHT_CAP, Dispatcher, check_nodes, run_models
from orchestrator.engines.sim import SimEngine
from orchestrator.errors import PlacementError
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.units import Unit
from orchestrator.virtual_backend import VirtualCluster
from tests.rows import TABLE_ORDER


def sim_model(name: str = "sim", tp: int = 1, **sim) -> ModelConfig:
    # A KV cache of one unit's tokens (make_units): two units in flight, unless a test says otherwise.
    return ModelConfig(name=name, path=f"sim/{name}", engine="sim", tensor_parallel_size=tp,
                       sim=SimConfig(**{"think_mean_tokens": 30, "seconds_per_token": 0.01, "time_scale": 0,
                                        "capacity": UNIT_TOKENS} | sim))


def make_units(model: ModelConfig, n: int, budgets: tuple[int, ...] = (8, 32, 64)) -> list[Unit]:
    """n units of 2 problems x 3 samples (6 samples each)."""
    problems = [Problem(f"q{i}", f"problem number {i}", str(i % 10)) for i in range(2 * n)]
    return [Unit(f"{model.name}-u{j}", model, "arith", tuple(problems[2 * j:2 * j + 2]), budgets, 3, 0, "cap")
            for j in range(n)]


UNIT_TOKENS = 6 * (64 + 1 + 3 * ModelConfig(name="m", path="m").answer_max_tokens)
"""What one of make_units' units may generate (6 samples, budgets up to 64, three answers each): its
`max_decode_tokens`, the KV cache it may need at once."""


class Run:
    """One dispatch on a virtual cluster: results by unit key (a duplicate fails), notes, the outcome."""

    def __init__(self, backend: VirtualCluster, work, cluster: ClusterConfig | None = None, on_result=None):
        self.backend, self.got, self.notes = backend, {}, []

        def collect(unit, batch, info):
            assert unit.key not in self.got, f"unit {unit.key} delivered twice"
            assert info["engine"] == "sim"
            self.got[unit.key] = batch
            if on_result:
                on_result(self, unit)

        self.outcome = run_models(work, cluster or ClusterConfig(), collect, backend, on_note=self.notes.append)

    def rows(self) -> pa.Table:
        return pa.Table.from_batches(list(self.got.values()), schema=SAMPLE_SCHEMA).sort_by(TABLE_ORDER)

    def busy(self):
        """Replicas alive and holding units now."""
        return [r for r, units in self.backend.pending.items() if units and r not in self.backend.dead]

    def timeline(self):
        """(what, replica, unit key, units the replica held just before) per submit and finish."""
        held: dict[str, int] = {}
        out = []
        for _, what, replica, key in self.backend.log:
            if what in ("submit", "finish"):
                out.append((what, replica, key, held.get(replica, 0)))
                held[replica] = held.get(replica, 0) + (1 if what == "submit" else -1)
            elif what == "lost":
                held[replica] = 0
        return out


def expected(units: list[Unit]) -> pa.Table:
    return pa.Table.from_batches([SimEngine(u.model).simulate(u)[0] for u in units]).sort_by(TABLE_ORDER)


# --- order and units in flight ---------------------------------------------------------------

def test_longest_units_go_first_and_every_row_arrives_once():
    model = sim_model()
    short, long = make_units(model, 3, budgets=(8,)), make_units(sim_model(), 6, budgets=(8, 64))[3:]
    run = Run(VirtualCluster([0], capacity=None), [(model, short + long)])
    sent = [key for what, _, key, _ in run.timeline() if what == "submit"]
    assert sent == [u.key for u in long + short]  # by tokens the unit may generate; ties keep their order
    assert run.outcome.done == 6 and not run.outcome.failed and not run.notes
    assert run.rows().equals(expected(short + long))


@pytest.mark.parametrize("capacity, cluster, allowance", [
    (10 * UNIT_TOKENS, ClusterConfig(), 11),  # units at their longest fill the KV cache, and one unit more
    (10 * UNIT_TOKENS - 1, ClusterConfig(), 11),
    (10 * UNIT_TOKENS + 1, ClusterConfig(), 12),
    (UNIT_TOKENS, ClusterConfig(), 2),
    (UNIT_TOKENS // 3, ClusterConfig(), 2),  # a cache smaller than one unit: still one running and one waiting
    (1000 * UNIT_TOKENS, ClusterConfig(), IN_FLIGHT_CAP),
    (None, ClusterConfig(), 2),  # an engine that does not say: one running, one waiting
    (10 * UNIT_TOKENS, ClusterConfig(max_in_flight=3), 3),  # a number overrides the capacity
])
def test_units_in_flight_are_sized_from_the_engines_capacity(capacity, cluster, allowance):
    model = sim_model()
    units = make_units(model, 40)
    assert units[0].max_decode_tokens == UNIT_TOKENS
    run = Run(VirtualCluster([0], capacity=capacity), [(model, units)], cluster)
    most = max(held for what, _, _, held in run.timeline() if what == "submit") + 1
    assert most == min(allowance, len(units))
    assert run.outcome.done == 40 and run.rows().equals(expected(units))


def test_the_engines_own_capacity_reaches_the_dispatcher():
    model = sim_model(capacity=2 * UNIT_TOKENS)  # SimEngine.capacity(): model.sim.capacity
    run = Run(VirtualCluster([0]), [(model, make_units(model, 10))])
    assert max(held for what, _, _, held in run.timeline() if what == "submit") + 1 == 3


@pytest.mark.parametrize("capacity", [2 * UNIT_TOKENS, None])
def test_near_the_end_of_the_queue_the_last_units_spread_over_the_engines(capacity):
    model = sim_model(think_sigma=1.0)
    units = make_units(model, 16)
    run = Run(VirtualCluster([4], capacity=capacity), [(model, units)])  # four replicas of one GPU each
    held: dict[str, int] = {}
    left, checked = len(units), 0
    for _, what, replica, _ in run.backend.log:
        if what == "ready":
            held[replica] = 0
        elif what == "stop":
            held.pop(replica, None)
        elif what == "finish":
            held[replica] -= 1
        elif what == "submit":
            if left < len(held):  # fewer units queued than ready replicas when this one was sent
                checked += 1
                if capacity is None:
                    assert held[replica] == 0  # one at a time: only to an idle engine, never behind a straggler
                else:
                    assert all(held[replica] <= n for n in held.values())  # to the least busy engine
            held[replica] += 1
            left -= 1
    assert checked >= 3 and run.outcome.done == 16 and len(run.outcome.placements) == 4


# --- failures ----------------------------------------------------------------------------------

def kill_first_busy(run: Run, unit: Unit) -> None:
    if not run.backend.dead and run.busy():
        run.backend.kill(run.busy()[0])


def test_a_lost_one_at_a_time_engine_charges_only_the_unit_it_was_running():
    model = sim_model()
    units = make_units(model, 6)
    run = Run(VirtualCluster([0], capacity=None), [(model, units)], on_result=kill_first_busy)
    out = run.outcome
    assert out.engines_lost == 1 and out.retried == 2 and not out.failed and out.done == 6
    engine, running, waiting = run.notes
    assert engine.startswith("engine ttc.sim.") and " (model sim) lost holding 2 units: the actor was killed" in engine
    assert "it was running it (retry 1 of cluster.max_retries=2)" in running + waiting
    assert "it had not started it (no retry used)" in running + waiting
    assert run.rows().equals(expected(units)) and len(out.placements) == 2  # the lost engine and a fresh one


def test_a_lost_engine_running_units_at_once_charges_each_and_runs_them_alone_after():
    model = sim_model()
    units = make_units(model, 10)
    run = Run(VirtualCluster([0], capacity=2 * UNIT_TOKENS), [(model, units)], on_result=kill_first_busy)  # 3 in flight
    out = run.outcome
    assert out.engines_lost == 1 and out.retried == 3 and not out.failed and out.done == 10
    assert run.notes[0].endswith("lost holding 3 units: the actor was killed")
    assert all("it was running it (retry 1 of cluster.max_retries=2)" in n for n in run.notes[1:])
    requeued = {n.split()[1] for n in run.notes[1:]}
    # After the loss each charged unit ran alone: sent to an idle engine, and nothing joined it.
    lost_at = next(i for i, (_, what, _, _) in enumerate(run.backend.log) if what == "lost")
    alone = None
    for _, what, _replica, key in run.backend.log[lost_at:]:
        if what == "submit":
            assert alone is None, f"{key} joined {alone}, which runs alone"
            if key in requeued:
                alone = key
        elif what == "finish" and key == alone:
            alone = None
    assert run.rows().equals(expected(units))


@pytest.mark.parametrize("capacity", [None, 2 * UNIT_TOKENS])
def test_a_unit_that_kills_every_engine_fails_after_max_retries_and_the_others_finish(capacity):
    # u1 holds q2: every engine that runs it dies half way through, as a crashing engine would.
    model = sim_model(crash_on_problem="q2")
    units = make_units(model, 5)
    run = Run(VirtualCluster([0], capacity=capacity), [(model, units)], ClusterConfig(max_retries=1))
    out = run.outcome
    assert [u.key for u, _ in out.failed] == ["sim-u1"]
    assert "its engine died 2 times while running it (cluster.max_retries=1)" in out.failed[0][1]
    assert out.done == 4 and run.rows().equals(expected([u for u in units if u.key != "sim-u1"]))
    assert out.engines_lost == 2 and len(out.placements) == 3  # the first engine and one fresh one per crash


def test_engines_dying_while_starting_are_replaced_a_bounded_number_of_times():
    model = sim_model("doomed")
    run = Run(VirtualCluster([0], die_starting={"doomed": 10}), [(model, make_units(model, 3))],
              ClusterConfig(max_retries=1))
    out = run.outcome
    assert out.done == 0 and len(out.failed) == 3 and out.engines_lost == 2
    why = "its engine died while starting 2 times in a row (cluster.max_retries=1)"
    assert all(why in failed_why for _, failed_why in out.failed)
    assert [n.split(" lost ")[1] for n in run.notes] == ["while starting: the actor died while starting"] * 2


def test_a_unit_the_engine_raises_on_fails_without_a_retry():
    model = sim_model()
    units = make_units(model, 4)
    run = Run(VirtualCluster([0], raise_on_problem="q4"), [(model, units)])
    failed = [(u.key, why) for u, why in run.outcome.failed]
    assert failed == [("sim-u2", "the engine raised: problem q4 cannot be run")]
    assert run.outcome.done == 3 and run.outcome.retried == 0 and run.outcome.engines_lost == 0


def test_a_lost_node_takes_its_replicas_and_their_units_run_elsewhere():
    model = sim_model()
    units = make_units(model, 12)

    def lose_node_1(run: Run, unit: Unit) -> None:
        if 1 in run.backend.alive_nodes and any(run.backend.node_of[r] == 1 for r in run.busy()):
            run.backend.kill_node(1)

    run = Run(VirtualCluster([2, 2], capacity=2 * UNIT_TOKENS), [(model, units)], on_result=lose_node_1)
    out = run.outcome
    assert 1 not in run.backend.alive_nodes and out.engines_lost >= 1 and out.retried >= 1
    assert out.done == 12 and not out.failed and run.rows().equals(expected(units))
    assert not any(p.node_ids == ("node1",) for p in out.placements[4:])  # no replica replaced on the lost node


# --- models in turn and placement ------------------------------------------------------------

def test_without_gpus_a_models_replicas_stop_before_the_next_model_loads():
    a, b = sim_model("a"), sim_model("b", startup_s=5)
    run = Run(VirtualCluster([0]), [(a, make_units(a, 4)), (b, make_units(b, 4))])
    log = [(what, replica) for _, what, replica, _ in run.backend.log if what in ("start", "stop")]
    first_b = next(i for i, (what, r) in enumerate(log) if what == "start" and r.startswith("ttc.b."))
    assert all(what == "stop" or not r.startswith("ttc.a.") for what, r in log[first_b:])
    assert all(r.startswith("ttc.a.") for what, r in log[:first_b])  # every a replica started and stopped before
    assert sum(what == "stop" and r.startswith("ttc.a.") for what, r in log[:first_b]) == 1
    assert run.outcome.done == 8 and [p.model for p in run.outcome.placements] == ["a", "b"]


def test_with_gpus_larger_replicas_go_first_and_the_next_model_takes_the_gpus_they_free():
    small, big = sim_model("small", startup_s=1), sim_model("big", tp=2, startup_s=1)
    run = Run(VirtualCluster([4]), [(small, make_units(small, 6)), (big, make_units(big, 6))])
    starts = {}
    for t, what, replica, _ in run.backend.log:
        starts.setdefault((what, replica), t)
    big_stops = sorted(t for (what, r), t in starts.items() if what == "stop" and r.startswith("ttc.big."))
    small_ready = sorted(t for (what, r), t in starts.items() if what == "ready" and r.startswith("ttc.small."))
    assert [p.model for p in run.outcome.placements[:2]] == ["big", "big"]  # 2 x tp=2 fill the node's 4 GPUs
    assert len(small_ready) >= 2 and small_ready[0] >= big_stops[0] + 1  # loaded on GPUs a big replica freed
    assert run.outcome.done == 12 and not run.outcome.failed


def test_a_model_no_node_can_hold_is_refused_before_anything_starts():
    huge = sim_model("huge", tp=8)
    backend = VirtualCluster([4, 2])
    with pytest.raises(PlacementError, match=r"tensor_parallel_size=8 needs 8 GPUs .* largest node has 4 GPUs "
                                             r"\(GPUs per alive node: 4, 2\); a replica cannot span nodes"):
        run_models([(huge, make_units(huge, 2))], ClusterConfig(), lambda *a: None, backend)
    assert backend.log == []
    with pytest.raises(PlacementError, match=r"largest node has 4 GPUs"):
        check_nodes([sim_model("fits", tp=4), huge], ClusterConfig(), [(4.0, 8.0), (2.0, 4.0)])
    check_nodes([sim_model("fits", tp=4)], ClusterConfig(), [(4.0, 8.0)])
    with pytest.raises(PlacementError, match=r"tensor_parallel_size=2 .* the cluster has no GPUs"):
        check_nodes([sim_model("two", tp=2)], ClusterConfig(), [(0.0, 4.0)])
    vllm = ModelConfig(name="big-cache", path="some/model", kv_cache_gib=64)
    with pytest.raises(PlacementError, match=r"model.kv_cache_gib=64 is more than this machine's memory"):
        check_nodes([vllm], ClusterConfig(), [(0.0, 4.0)], memory=8 * 2**30)


def test_a_unit_listed_twice_runs_once():
    model = sim_model()
    units = make_units(model, 3)
    run = Run(VirtualCluster([0]), [(model, units + units[:2])])
    assert run.outcome.done == 3 and sorted(run.got) == sorted(u.key for u in units)


def test_replicas_requested_by_start_load_while_the_caller_works_and_close_stops_them():
    model = sim_model(startup_s=20)
    backend = VirtualCluster([2])
    dispatcher = Dispatcher([(model, make_units(model, 4))], ClusterConfig(), lambda *a: None, backend)
    dispatcher.start()  # what the driver does before creating the sweep directory and MLflow runs
    assert [what for _, what, _, _ in backend.log] == ["start", "start"] and backend.events  # loading
    got = []
    dispatcher.on_result = lambda unit, batch, info: got.append(unit.key)  # set once the driver is ready
    assert dispatcher.run().done == 4 and len(got) == 4 and not backend.node_of
    unused = Dispatcher([(model, make_units(model, 4))], ClusterConfig(), lambda *a: None, backend)
    unused.start()
    unused.close()  # the driver failed before running: nothing is left holding GPUs
    assert not backend.node_of and backend.free == [2]
