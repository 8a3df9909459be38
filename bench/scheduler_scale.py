"""Scheduler at cluster scale: 256 logical GPUs, three models (tp 1, 2, 8), 10,000 units, heavy-tailed lengths.

    .venv/bin/python bench/scheduler_scale.py              # ~1 minute on 2 CPU cores
    .venv/bin/python bench/scheduler_scale.py --runs 1 --ray-units 0

What runs, honestly:
- The 256-GPU sweep runs the real dispatcher (orchestrator.dispatch.run_models: placement,
  longest-first streaming, bounded in-flight, models in turn, replica retirement) against the
  virtual-time backend (orchestrator/virtual_backend.py): 32 simulated nodes x 8 GPUs, each
  replica an in-process SimEngine (orchestrator/engines/sim.py) whose units take their
  simulated seconds on a virtual clock instead of sleeping. 256 real Ray actors (one process each)
  cannot start on 2 cores and
  24 GB, and a makespan of hours cannot be slept through; the virtual clock gives the same
  schedule the dispatcher would produce on a real cluster whose engines took those times.
  What the virtual backend leaves out is Ray's own latency (milliseconds against units of
  seconds to minutes) and Ray's choice of node for a waiting replica (first fit here).
- Driver time per unit is the driver process's CPU time in the dispatcher, excluding the
  simulated engines' own work (drawing lengths, building Arrow rows), which runs in-process
  here but in the actors on a real cluster.
- A second, real-Ray measurement (--ray-units) runs the same dispatcher through RayBackend
  on a local Ray with logical GPUs and sim actors that do not sleep, to show the driver's
  cost per unit including Ray's task submission, ray.wait and Arrow transfer.
- Units in flight per replica: as the dispatcher sizes them from the engine's capacity (the
  SimEngine's `capacity()`, if it has one; else 2). The virtual backend runs a replica's units one
  after another at the engine's batched throughput, so more units in flight only commit work to a
  replica earlier: it shows the cost of that at the end of a model's queue, not the gain of a fuller
  batch (which a throughput-based simulation cannot show).
- Static sharding is the baseline of lm-eval's data_parallel_size and SkyThought: each model
  in turn on all 256 GPUs, its units cut into equal contiguous slices, one per replica, up front.
The lower bound is max(total GPU-seconds / 256, the longest single unit); model start-up
(loading weights) is part of the makespan but not of the bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import ClusterConfig, ModelConfig, SimConfig
from orchestrator.datasets import Problem
from orchestrator.dispatch import run_models
from orchestrator.engines.sim import SimEngine
from orchestrator.units import Unit, unit_key
from orchestrator.virtual_backend import VirtualCluster

NODES, GPUS_PER_NODE = 32, 8
BUDGETS, N_SAMPLES, PROBLEMS_PER_UNIT = (1024, 4096, 16384), 4, 2
LENGTHS = {"think_mean_tokens": 2000, "think_sigma": 0.8, "problem_sigma": 0.8, "answer_tokens": 16,
           "time_scale": 0}
# name, tp, units, seconds per generated token, start-up seconds (loading weights)
MODELS = [("big-70b", 8, 1200, 0.004, 60.0), ("mid-14b", 2, 2800, 0.0015, 30.0), ("small-1.5b", 1, 6000, 0.001, 20.0)]


def make_work(seed: int) -> list[tuple[ModelConfig, list[Unit]]]:
    """Three simulated models, each with its own problems chunked into units as plan.py does."""
    work = []
    for name, tp, n_units, spt, startup in MODELS:
        model = ModelConfig(name=name, path=f"sim/{name}", engine="sim", tensor_parallel_size=tp,
                            answer_max_tokens=32, max_model_len=32768,
                            sim=SimConfig(**LENGTHS, seconds_per_token=spt, startup_s=startup, seed=seed))
        base = {"model": name, "budgets": list(BUDGETS), "n_samples": N_SAMPLES, "seed": seed}
        problems = [Problem(f"{name}-q{i}", f"problem {i} for {name}", "0") for i in range(n_units * PROBLEMS_PER_UNIT)]
        units = []
        for start in range(0, len(problems), PROBLEMS_PER_UNIT):
            chunk = tuple(problems[start:start + PROBLEMS_PER_UNIT])
            units.append(Unit(unit_key(base, chunk), model, "bench", chunk, BUDGETS, N_SAMPLES, seed, "cap"))
        work.append((model, units))
    return work


def run_dynamic(work, cluster: ClusterConfig) -> dict:
    backend = VirtualCluster([GPUS_PER_NODE] * NODES)
    seen: set[str] = set()
    rows = 0
    callback_cpu = 0.0

    def on_result(unit, batch, info) -> None:
        nonlocal rows, callback_cpu
        t = time.process_time()
        assert unit.key not in seen, f"unit {unit.key} delivered twice"
        seen.add(unit.key)
        rows += batch.num_rows
        callback_cpu += time.process_time() - t

    cpu, wall = time.process_time(), time.perf_counter()
    outcome = run_models(work, cluster, on_result, backend)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    units = sum(len(u) for _, u in work)
    assert outcome.done == units == len(seen) and not outcome.failed, (outcome.done, units, outcome.failed[:3])
    assert rows == sum(u.rows for _, us in work for u in us)
    gpus = NODES * GPUS_PER_NODE
    busy = sum(s * g for s, g in backend.unit_seconds.values())
    longest = max(s for s, _ in backend.unit_seconds.values())
    bound = max(busy / gpus, longest)
    return {"makespan": backend.clock, "bound": bound, "ratio": backend.clock / bound,
            "util": busy / (gpus * backend.clock), "busy": busy, "longest": longest,
            "startup": backend.startup_gpu_s / (gpus * backend.clock),
            "driver_ms": 1e3 * (cpu - backend.engine_cpu - callback_cpu) / units, "wall_s": wall,
            "units": units, "replicas": len(outcome.placements)}


def run_static(work, bound: float, busy: float) -> dict:
    """Each model in turn on every GPU; its units in equal contiguous slices, one per replica, up front."""
    makespan = 0.0
    for model, units in work:
        engine = SimEngine(model)
        replicas = (GPUS_PER_NODE // model.tensor_parallel_size) * NODES
        size = -(-len(units) // replicas)
        slices = [units[i:i + size] for i in range(0, len(units), size)]
        makespan += engine.settings.startup_s + max(sum(engine.unit_seconds(u) for u in s) for s in slices)
    gpus = NODES * GPUS_PER_NODE
    return {"makespan": makespan, "ratio": makespan / bound, "util": busy / (gpus * makespan)}


def ray_driver_cost(n_units: int) -> dict:
    """The same dispatcher through RayBackend: a local Ray with 8 logical GPUs, 4 sim actors that never sleep."""
    from orchestrator.ray_backend import RayBackend, start_ray, stop_ray

    start_ray(ClusterConfig(num_cpus=4, num_gpus=8))
    try:
        model = ModelConfig(name="ray-sim", path="sim/ray-sim", engine="sim", answer_max_tokens=32,
                            sim=SimConfig(**{**LENGTHS, "think_mean_tokens": 200}, seconds_per_token=0.001))
        problems = [Problem(f"r{i}", f"problem {i}", "0") for i in range(n_units * PROBLEMS_PER_UNIT)]
        units = [Unit(f"ray-{j}", model, "bench", tuple(problems[2 * j:2 * j + 2]), BUDGETS, N_SAMPLES, 0, "cap")
                 for j in range(n_units)]
        # Warm up: start the actors, so the measurement is of units, not of process start-up.
        cluster = ClusterConfig(replicas=4)
        run_models([(model, units[:8])], cluster, lambda *a: None, RayBackend(cluster))
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = run_models([(model, units[8:])], cluster, lambda *a: None, RayBackend(cluster))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert outcome.done == n_units - 8 and not outcome.failed
        return {"driver_ms": 1e3 * cpu / outcome.done, "wall_ms": 1e3 * wall / outcome.done, "units": outcome.done}
    finally:
        stop_ray()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="virtual-time runs (workload seeds 0..runs-1)")
    parser.add_argument("--ray-units", type=int, default=1500, help="units for the real-Ray driver cost (0: skip)")
    args = parser.parse_args()

    print(f"cluster: {NODES} nodes x {GPUS_PER_NODE} GPUs = {NODES * GPUS_PER_NODE} logical GPUs (virtual time)")
    for name, tp, n, spt, startup in MODELS:
        print(f"  model {name:11s} tp={tp}  {n:5d} units of {PROBLEMS_PER_UNIT} problems x {N_SAMPLES} samples, "
              f"budgets {list(BUDGETS)}, {spt * 1e3:g} ms/token, start-up {startup:g} s")
    print(f"  thinking lengths: lognormal, mean {LENGTHS['think_mean_tokens']} tokens, sigma "
          f"{LENGTHS['think_sigma']} per sample x difficulty sigma {LENGTHS['problem_sigma']} per problem")
    dynamic, static = [], []
    for seed in range(args.runs):
        work = make_work(seed)
        d = run_dynamic(work, ClusterConfig())
        s = run_static(work, d["bound"], d["busy"])
        dynamic.append(d)
        static.append(s)
        print(f"run {seed}: makespan {d['makespan']:.0f} s, bound {d['bound']:.0f} s (longest unit "
              f"{d['longest']:.0f} s), ratio {d['ratio']:.3f}, GPU util {d['util']:.1%} (loading engines "
              f"{d['startup']:.1%}, idle {1 - d['util'] - d['startup']:.1%}), {d['replicas']} replicas started, "
              f"driver {d['driver_ms']:.3f} ms/unit CPU ({d['wall_s']:.1f} s wall for {d['units']} units) | "
              f"static: makespan {s['makespan']:.0f} s, ratio {s['ratio']:.3f}, GPU util {s['util']:.1%}")

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"dynamic (median of {args.runs}): makespan/bound {med(dynamic, 'ratio'):.3f}, GPU utilisation "
          f"{med(dynamic, 'util'):.1%}, driver time {med(dynamic, 'driver_ms'):.3f} ms/unit (virtual backend)")
    print(f"static  (median of {args.runs}): makespan/bound {med(static, 'ratio'):.3f}, GPU utilisation "
          f"{med(static, 'util'):.1%}")
    if args.ray_units:
        r = ray_driver_cost(args.ray_units)
        print(f"real Ray (local, 4 sim actors, no sleeping): driver {r['driver_ms']:.2f} ms/unit CPU, "
              f"{r['wall_ms']:.2f} ms/unit wall over {r['units']} units (actors share the same 2 cores)")
    print(f"makespan_ratio={med(dynamic, 'ratio'):.3f}")
    print(f"static_ratio={med(static, 'ratio'):.3f}")


if __name__ == "__main__":
    main()
