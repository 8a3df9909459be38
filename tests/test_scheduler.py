"""The Ray backend on a multi-node local Ray cluster with logical GPUs, driving the simulated engine.

Fast tier: the sim engine's rows and settings, the cluster config. End-to-end tier (`e2e`): what
only a real Ray can show: placement of TP=2 and TP=4 replicas (actors holding GPUs, a STRICT_PACK
placement group), a too-large TP refused against the live cluster's nodes, an engine actor killed
mid-unit, a node removed mid-sweep; through the real `ttc sweep` command, an engine killed (the
lines, the summary, the MLflow figures) and the driver killed and the sweep resumed (its status,
its MLflow runs KILLED, the re-run naming the sweep it completes). The dispatching logic itself
(order, units in flight, retries, models in turn) is tested in the fast tier: tests/test_dispatch.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.compose import compose
from orchestrator.config import ClusterConfig, ModelConfig, SimConfig
from orchestrator.datasets import Problem
from orchestrator.dispatch import run_models
from orchestrator.engines.sim import SimEngine
from orchestrator.errors import ConfigError, PlacementError
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.units import Unit, derive_seed
from tests.conftest import PROJECT, watched_backend
from tests.rows import TABLE_ORDER


def sim_model(name: str = "sim", tp: int = 1, **sim) -> ModelConfig:
    # A KV cache of one unit's samples (make_units: 2 problems x 3): two units in flight per replica.
    return ModelConfig(name=name, path=f"sim/{name}", engine="sim", tensor_parallel_size=tp,
                       sim=SimConfig(**{"think_mean_tokens": 30, "seconds_per_token": 0.001, "capacity": 6} | sim))


def make_units(model: ModelConfig, n: int, problems_per_unit: int = 2, seed: int = 0) -> list[Unit]:
    problems = [Problem(f"q{i}", f"problem number {i}", str(i % 10)) for i in range(n * problems_per_unit)]
    return [Unit(f"{model.name}-u{j}", model, "arith",
                 tuple(problems[j * problems_per_unit:(j + 1) * problems_per_unit]),
                 (8, 32, 64), 3, seed, "cap") for j in range(n)]


# --- fast tier: the simulated engine -------------------------------------------------------

def test_sim_rows_are_deterministic_and_never_graded():
    model = sim_model(think_mean_tokens=40, think_sigma=1.0, time_scale=0)
    unit = make_units(model, 1, problems_per_unit=4)[0]
    batch = SimEngine(model).run_unit(unit)
    assert batch.schema.equals(SAMPLE_SCHEMA)
    assert batch.equals(SimEngine(model).run_unit(unit))  # a re-run (a fresh engine) gives identical rows
    df = batch.to_pandas()
    assert len(df) == unit.rows
    assert (df.engine == "sim").all() and not df.correct.any() and df.extracted_answer.isna().all()
    assert (df.think_tokens <= df.budget).all()
    for (pid, si), g in df.groupby(["problem_id", "sample_idx"]):
        assert (g.seed == derive_seed(unit.seed, pid, si)).all()  # the real engine's per-sample seeds
        g = g.sort_values("budget")
        assert list(g.think_tokens) == sorted(g.think_tokens)  # thinking at a budget is a prefix of the next
        natural = g[~g.forced]
        assert natural.think_tokens.nunique() <= 1 and (natural.think_tokens <= natural.budget).all()
    other = SimEngine(model).run_unit(make_units(model, 1, problems_per_unit=4, seed=1)[0])
    assert other.column("think_tokens") != batch.column("think_tokens")  # another sweep seed, other draws


def test_sim_lengths_follow_the_configured_lognormal():
    model = sim_model(think_mean_tokens=200, think_sigma=0.5, problem_sigma=0.0, time_scale=0)
    unit = Unit("big", model, "arith", tuple(Problem(f"p{i}", "x", "0") for i in range(400)), (100_000,), 4, 0, "cap")
    think = SimEngine(model).run_unit(unit).column("think_tokens").to_pylist()
    mean = sum(think) / len(think)
    assert 185 < mean < 215  # 1,600 draws: the mean's standard error is ~2.7 tokens
    assert SimEngine(model).unit_seconds(unit) == pytest.approx((sum(think) + 8 * len(think)) * 0.001)


@pytest.mark.parametrize("sim, needle", [
    ({"think_mean": 5}, "model.sim.think_mean is not a known key"),
    ({"think_sigma": -1}, "model.sim.think_sigma=-1"),
    ({"answer_tokens": 100}, "model.sim.answer_tokens=100"),
    ({"seed": 1.5}, "model.sim.seed=1.5"),
])
def test_sim_settings_name_the_bad_key(sim, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):  # checked with the config, before any engine
        compose(["model.engine=sim", "model.name=s", "model.path=sim/s",
                 *(f"model.sim.{k}={v}" for k, v in sim.items())])


def test_cluster_config():
    assert compose(["cluster=ray"]).cluster.kind == "ray"
    assert compose(["cluster=ray", "cluster.address=10.0.0.1:6379"]).cluster.address == "10.0.0.1:6379"
    assert compose([]).cluster.replicas is None
    assert compose([]).cluster.max_in_flight is None  # sized from the engine's capacity
    assert compose(["cluster.max_in_flight=3"]).cluster.max_in_flight == 3
    for override, needle in [("cluster.kind=k8s", "cluster.kind"), ("cluster.address=h:1", "cluster.address"),
                             ("cluster.max_in_flight=0", "cluster.max_in_flight"),
                             ("cluster.replicas=0", "cluster.replicas")]:
        with pytest.raises(ConfigError, match=needle):
            compose([override])


# --- end-to-end tier: a local multi-node Ray cluster with logical GPUs -------------------------

@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    # Fast failure detection, so a removed node is declared dead within seconds.
    # Not so fast that a raylet stalled for a second on a loaded machine is declared dead.
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
              "health_check_failure_threshold": 5, "health_check_timeout_ms": 2000}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "_system_config": system,
                                                      "include_dashboard": False})
    try:
        c.add_node(wait=False, num_cpus=4, num_gpus=4)
        c.add_node(wait=False, num_cpus=3, num_gpus=2)
        c.wait_for_nodes(timeout=120)
        ray.init(address=c.address, log_to_driver=False, configure_logging=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def node_with(gpus: int) -> list[str]:
    import ray

    return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) == gpus]


def collect():
    """An on_result that keeps every batch by unit key and fails on a duplicate."""
    got: dict[str, pa.RecordBatch] = {}

    def on_result(unit, batch, info):
        assert unit.key not in got, f"unit {unit.key} delivered twice"
        assert info["engine"] == "sim"
        got[unit.key] = batch
    return got, on_result


def expected_rows(units: list[Unit]) -> pa.Table:
    """What an uninterrupted run yields: the sim is deterministic, so each unit's rows computed directly."""
    return pa.Table.from_batches([SimEngine(u.model).simulate(u)[0] for u in units]).sort_by(TABLE_ORDER)


def as_table(got: dict[str, pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(got.values()), schema=SAMPLE_SCHEMA).sort_by(TABLE_ORDER)


@pytest.mark.e2e
def test_tp2_and_tp4_replicas_each_on_one_node(cluster):
    tp4, tp2 = sim_model("tp4", tp=4), sim_model("tp2", tp=2)
    work = [(tp2, make_units(tp2, 6)), (tp4, make_units(tp4, 3))]
    got, on_result = collect()
    # tp2's replicas on the 4-GPU node wait for tp4's to go; until all three are up, none gets work
    # (else the one on the 2-GPU node could finish everything and the other two would be dropped).
    backend = watched_backend(hold={"tp2": 3})
    outcome = run_models(work, ClusterConfig(placement_group_min_tp=4), on_result, backend)
    assert outcome.done == 9 and not outcome.failed
    assert as_table(got).equals(expected_rows(work[0][1] + work[1][1]))
    four, two = node_with(4)[0], node_with(2)[0]
    by_model = {m: [p for p in outcome.placements if p.model == m] for m in ("tp4", "tp2")}
    # tp=4: only the 4-GPU node can hold a replica (6 GPUs in all, but 2 + 4 on separate nodes).
    assert len(by_model["tp4"]) == 1
    assert by_model["tp4"][0].placement_group and by_model["tp4"][0].node_ids == (four,)
    # tp=2: one actor holding 2 GPUs; the nodes hold 2 + 1 such replicas.
    assert len(by_model["tp2"]) == 3
    assert all(len(p.node_ids) == 1 and len(p.gpu_ids) == 2 and not p.placement_group for p in by_model["tp2"])
    assert sorted(p.node_ids[0] for p in by_model["tp2"]) == sorted([four, four, two])
    assert outcome.placements.index(by_model["tp4"][0]) == 0  # the larger replicas go first
    _assert_no_engine_actors()


@pytest.mark.e2e
def test_too_large_tp_fails_at_once(cluster):
    from orchestrator.ray_backend import RayBackend, check_placement

    model = sim_model("huge", tp=8)
    with pytest.raises(PlacementError, match=r"tensor_parallel_size=8 .* largest node has 4 GPUs"):
        check_placement([sim_model("fits", tp=4), model], ClusterConfig())
    with pytest.raises(PlacementError, match=r"tensor_parallel_size=8 .* largest node has 4 GPUs"):
        run_models([(model, make_units(model, 2))], ClusterConfig(), lambda *a: None, RayBackend())
    _assert_no_engine_actors()


@pytest.mark.e2e
def test_actor_killed_mid_unit_is_rerun(cluster):
    import ray

    model = sim_model("killed", seconds_per_token=0.002)  # ~0.6 s per unit
    units = make_units(model, 10)
    got, collect_result = collect()
    backend = watched_backend(hold={"killed": 2})  # both engines get work
    killed = []
    notes: list[str] = []

    def on_result(unit, batch, info):
        collect_result(unit, batch, info)
        busy = [r for r in backend.ready.values() if r.state == "ready" and r.units]
        if not killed and busy:  # kill an engine mid-unit
            ray.kill(ray.get_actor(busy[0].name))
            killed.append(busy[0].name)

    outcome = run_models([(model, units)], ClusterConfig(replicas=2), on_result, backend, on_note=notes.append)
    assert killed and outcome.retried >= 1 and not outcome.failed
    # Told as it happened: one line for the engine, one per unit re-queued.
    assert outcome.engines_lost == 1 and len(notes) == 1 + outcome.retried, notes
    assert notes[0].startswith(f"engine {killed[0]} (model killed) lost holding {outcome.retried} units: ")
    assert all(n.startswith("unit killed-u") and f"re-queued: its engine {killed[0]} was lost" in n for n in notes[1:])
    # The engine runs the units it holds at once: each of them loses an attempt.
    assert all("it was running it (retry 1 of cluster.max_retries=2)" in n for n in notes[1:])
    assert outcome.done == len(units) == len(got)
    assert as_table(got).equals(expected_rows(units))  # no duplicate, no missing row
    assert len(backend.started) == 3  # two replicas, and a fresh one for the killed
    assert killed[0] in {p.replica for p in outcome.placements}
    _assert_no_engine_actors()


@pytest.mark.e2e
def test_node_removed_mid_sweep(cluster):
    import ray

    node = cluster.add_node(wait=False, num_cpus=2, num_gpus=2)
    cluster.wait_for_nodes(timeout=120)
    # Slow enough that a unit on the removed node is still running when it goes (at 0.002 s a token its
    # results could all be back before the removal, and nothing was lost to re-queue).
    model = sim_model("lost", tp=2, seconds_per_token=0.01)
    units = make_units(model, 14)
    got, collect_result = collect()
    backend = watched_backend(hold={"lost": 4})  # every replica, the new node's too, gets work
    removed = []

    def on_result(unit, batch, info):
        collect_result(unit, batch, info)
        busy_there = [r for r in backend.ready.values()
                      if r.state == "ready" and r.units and node.node_id in backend.where[r.name].node_ids]
        if not removed and busy_there:
            cluster.remove_node(node, allow_graceful=False)  # as a crash: no goodbye to the cluster
            removed.append(node)

    outcome = run_models([(model, units)], ClusterConfig(), on_result, backend)
    assert removed and not outcome.failed
    assert outcome.done == len(units) == len(got)
    assert as_table(got).equals(expected_rows(units))
    # Every GPU held a replica (2 + 1 + 1), so the lost node had one, and its units ran elsewhere.
    lost_node = node.node_id
    assert sum(p.node_ids == (lost_node,) for p in outcome.placements) == 1
    assert outcome.retried >= 1
    # The cluster declares the node dead after its missed health checks (seconds; more under load).
    deadline = time.monotonic() + 120
    while lost_node in {n["NodeID"] for n in ray.nodes() if n["Alive"]} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lost_node not in {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    _assert_no_engine_actors()


def _engine_actors(prefix: str = "ttc.") -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def _assert_no_engine_actors():
    deadline = time.monotonic() + 30  # ray.kill is asynchronous
    while _engine_actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _engine_actors()


# --- the driver killed and the sweep resumed, through `ttc sweep` ----------------------------

def _sweep_cmd(cluster, store: Path, dataset: Path, tracking: bool = False) -> list[str]:
    # ~1.5 s per unit: time to kill the driver; a KV cache of 4 tokens, less than one unit: two in flight.
    sim = "{think_mean_tokens: 20, seconds_per_token: 0.01, seed: 3, capacity: 4}"
    return [sys.executable, "-m", "orchestrator.cli", "sweep", "--json", "model.engine=sim", "model.name=simtoy",
            "model.path=sim/toy", f"model.sim={sim}", f"dataset.path={dataset}", "dataset.name=simarith",
            "sweep.budgets=[8,32]", "sweep.n=[1,2]", "sweep.problems_per_unit=2",
            *([] if tracking else ["tracking=none"]),
            "cluster=ray", f"cluster.address={cluster.address}", "cluster.replicas=1", f"store.root={store}"]


def _arith(tmp_path: Path) -> Path:
    dataset = tmp_path / "arith.jsonl"
    dataset.write_text("".join(json.dumps({"id": f"a{i}", "problem": f"{i}+{i}", "answer": str(2 * i)}) + "\n"
                               for i in range(12)), encoding="utf-8")
    return dataset


def _mlflow_runs(store: Path, sweep_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ttc").experiment_id
    return client.search_runs([experiment], filter_string=f"tags.sweep_id = '{sweep_id}'")


def _store_rows(store: Path) -> pa.Table:
    files = sorted((store / "samples").rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f, schema=SAMPLE_SCHEMA) for f in files]).sort_by(TABLE_ORDER)


@pytest.mark.e2e
def test_driver_killed_and_resumed_equals_an_uninterrupted_run(cluster, tmp_path):
    from orchestrator.store import Store

    dataset = _arith(tmp_path)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    first = subprocess.run(_sweep_cmd(cluster, whole, dataset), cwd=PROJECT, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(6 units run, 0 from the store)" in first.stdout

    driver = subprocess.Popen(_sweep_cmd(cluster, resumed, dataset, tracking=True), cwd=PROJECT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while len(list((resumed / "samples").rglob("*.parquet"))) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    kept = {f: f.stat().st_mtime_ns for f in (resumed / "samples").rglob("*.parquet")}
    assert 2 <= len(kept) < 6
    store = Store(resumed)
    [dead] = store.sweep_ids()
    status = store.sweep_status(dead)
    assert status.state == "dead" and f"driver pid {driver.pid} " in status.detail and not status.closed
    assert {r.info.status for r in _mlflow_runs(resumed, dead)} == {"RUNNING"}  # what a dead driver leaves

    again = subprocess.run(_sweep_cmd(cluster, resumed, dataset, tracking=True), cwd=PROJECT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"sweep {dead} is dead (its driver is gone): its MLflow runs are now KILLED" in again.stderr
    assert f"this sweep completes the unfinished sweep {dead} (the same 6 planned units" in again.stderr
    assert f"({6 - len(kept)} units run, {len(kept)} from the store); completes sweep {dead}" in again.stdout
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())  # finished units are never re-run
    assert _store_rows(resumed).equals(_store_rows(whole))  # row for row
    runs = _mlflow_runs(resumed, dead)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}  # the parent and a child per budget
    done = json.loads(again.stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line
    parent = [r for r in _mlflow_runs(resumed, done) if r.data.tags["ttc.kind"] == "sweep"]
    assert parent[0].info.status == "FINISHED" and parent[0].data.tags["ttc.completes"] == dead

    shown = subprocess.run([sys.executable, "-m", "orchestrator.cli", "show", f"store.root={resumed}"], cwd=PROJECT,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and not shown.stderr, shown.stderr  # closed once, by the re-run
    listed = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert listed[dead].startswith("dead ") and f"MLflow runs marked KILLED; completed by sweep {done}" in listed[dead]
    assert listed[done].startswith("finished ")


@pytest.mark.e2e
def test_engine_killed_under_ttc_sweep_is_told(cluster, tmp_path):
    import ray

    store = tmp_path / "store"
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"
    with out.open("w") as stdout_file, err.open("w") as stderr_file:
        driver = subprocess.Popen(_sweep_cmd(cluster, store, _arith(tmp_path), tracking=True), cwd=PROJECT,
                                  stdout=stdout_file, stderr=stderr_file)
    try:
        deadline = time.monotonic() + 240
        while not list((store / "samples").rglob("*.parquet")) and time.monotonic() < deadline:
            assert driver.poll() is None, err.read_text()
            time.sleep(0.05)
        # The engine now holds the next units (one running, one waiting): strike it.
        [engine] = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("ttc.simtoy.")]
        ray.kill(ray.get_actor(engine["name"], namespace=engine["namespace"]))
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert driver.returncode == 0, stdout + stderr
    assert len(re.findall(rf"engine {re.escape(engine['name'])} \(model simtoy\) lost holding \d units: ", stderr)) == 1
    requeued = re.findall(rf"unit \w+ re-queued: its engine {re.escape(engine['name'])} was lost; ", stderr)
    assert requeued, stderr
    units = "unit" if len(requeued) == 1 else "units"
    assert f"(6 units run, 0 from the store); 1 engine lost, {len(requeued)} {units} re-queued" in stdout
    sweep_id = json.loads(stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line
    [parent] = [r for r in _mlflow_runs(store, sweep_id) if r.data.tags["ttc.kind"] == "sweep"]
    assert parent.data.metrics["units_retried"] == len(requeued) and parent.data.metrics["engines_lost"] == 1
