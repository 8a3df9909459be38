"""Scheduling units on Ray: engine actors per model, a bounded number of units in flight each.

The only module that imports ray. Models run one after another: a model's actors are
started, fed units (longest first) until none is left, then killed before the next model
loads. Each finished unit comes back as one Arrow RecordBatch and is handed to `on_result`
at once, so it is stored before anything else can go wrong. A unit whose actor died is
re-queued on a fresh actor (Ray itself never retries it), up to `cluster.max_retries` times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from orchestrator.config import ClusterConfig, ModelConfig
from orchestrator.engines import ENGINES
from orchestrator.plan import Unit

IN_FLIGHT_PER_ACTOR = 2  # one running, one queued: the engine never waits for the driver


class SchedulerError(RuntimeError):
    """The sweep cannot go on (an engine cannot start, no resources); the message says why."""


@dataclass
class Outcome:
    done: int = 0
    failed: list[tuple[Unit, str]] = field(default_factory=list)


def start_ray(cluster: ClusterConfig) -> None:
    if not ray.is_initialized():
        # A local instance of our own, even if RAY_ADDRESS points elsewhere; logs stay in Ray's session dir.
        ray.init(address="local", num_cpus=cluster.num_cpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def _start_actor(model: ModelConfig, gpus_available: float):
    num_gpus = model.tensor_parallel_size if gpus_available > 0 else 0
    actor_cls = ray.remote(num_cpus=1, num_gpus=num_gpus, max_restarts=0, max_task_retries=0)(ENGINES[model.engine])
    actor = actor_cls.remote(model)
    try:
        info = ray.get(actor.info.remote())
    except RayActorError as err:
        raise SchedulerError(f"the engine for model '{model.name}' ({model.path}) failed to start: "
                             f"{_cause(err)}") from None
    return actor, info


def _cause(err: BaseException) -> str:
    text = str(getattr(err, "cause", None) or err)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def run_model(model: ModelConfig, units: list[Unit], cluster: ClusterConfig,
              on_result: Callable[[Unit, pa.RecordBatch, dict], None]) -> Outcome:
    """Run one model's units on `cluster.replicas` engine actors; hand each result to `on_result`."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus and model.tensor_parallel_size > gpus:
        raise SchedulerError(f"model.tensor_parallel_size={model.tensor_parallel_size} but the cluster has "
                             f"{gpus:g} GPUs")
    queue = deque(sorted(units, key=lambda u: u.rows, reverse=True))  # longest first
    attempts: dict[str, int] = {}
    outcome = Outcome()
    actors = [_start_actor(model, gpus) for _ in range(min(cluster.replicas, len(units)))]
    running: dict[ray.ObjectRef, tuple[Unit, int]] = {}  # ref -> (unit, actor slot)
    load = [0] * len(actors)
    try:
        while queue or running:
            for slot in range(len(actors)):
                while queue and load[slot] < IN_FLIGHT_PER_ACTOR:
                    unit = queue.popleft()
                    running[actors[slot][0].run_unit.remote(unit)] = (unit, slot)
                    load[slot] += 1
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            unit, slot = running.pop(ref)
            load[slot] -= 1
            try:
                batch = ray.get(ref)
            except (ActorDiedError, ActorUnavailableError, RayActorError) as err:
                attempts[unit.key] = attempts.get(unit.key, 0) + 1
                if attempts[unit.key] > cluster.max_retries:
                    outcome.failed.append((unit, _cause(err)))
                else:
                    queue.appendleft(unit)
                _replace_dead_actor(actors, slot, model, gpus)
                continue
            except RayTaskError as err:  # the engine raised: deterministic, so not retried
                outcome.failed.append((unit, _cause(err)))
                continue
            on_result(unit, batch, actors[slot][1])
            outcome.done += 1
    finally:
        for actor, _ in actors:
            ray.kill(actor)
    return outcome


def _replace_dead_actor(actors: list, slot: int, model: ModelConfig, gpus: float) -> None:
    """Swap a dead actor for a fresh one; its other in-flight units fail on their own and re-queue."""
    actor, _ = actors[slot]
    try:
        ray.get(actor.info.remote(), timeout=5)
        return  # the actor lives: the unit's task failed, not the engine
    except Exception:  # noqa: BLE001 - any failure to answer means the actor is gone
        pass
    ray.kill(actor)
    actors[slot] = _start_actor(model, gpus)
