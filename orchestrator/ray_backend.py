"""The Ray backend of the dispatcher (orchestrator/dispatch.py): engine actors, placement groups, Ray's start
and stop. The only module that imports ray.

- A replica is one engine actor holding `num_gpus=tp`, or, for tp >= `cluster.placement_group_min_tp`,
  a STRICT_PACK placement group of one-GPU bundles on one node (vLLM runs its workers in it).
- The actor is threaded: several `run_unit` calls run at once in one engine (the vLLM engine is
  thread-safe and shares one running batch between them); `ready()` reports the engine's
  `capacity()`, from which the dispatcher sizes the units it sends. An engine class without
  `capacity()` gets a one-thread actor: one unit at a time, in the order sent.
- Ray never retries (max_restarts=0, max_task_retries=0): a dead actor's units are re-queued by the
  dispatcher, at the application level, and no unit's rows reach the driver twice.

    start_ray(cfg.cluster); run_models(work, cfg.cluster, on_result, RayBackend(cfg.cluster)); stop_ray()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from orchestrator.config import ClusterConfig, ModelConfig
from orchestrator.dispatch import IN_FLIGHT_CAP, Event, Finished, Lost, Placement, Raised, Ready, Replica, check_nodes
from orchestrator.engines import ENGINES
from orchestrator.errors import ConfigError, SchedulerError
from orchestrator.units import Unit


def start_ray(cluster: ClusterConfig) -> None:
    """Start a local Ray (cluster.kind=local) or connect to a running cluster (kind=ray); a cluster that
    does not answer within cluster.connect_timeout_s is a ConfigError (one line), not a hang."""
    if ray.is_initialized():
        return
    if cluster.kind == "local":
        # A local instance of our own, even if RAY_ADDRESS points elsewhere; logs stay in Ray's session dir.
        # Ray's default token authentication stays on; only its notice about it is kept off the terminal.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(address="local", num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        return
    import socket


    address = cluster.address or os.environ.get("RAY_ADDRESS") or "auto"
    fix = "set cluster.address or RAY_ADDRESS, or start one with `ray start --head`"
    # ray.init retries an address where nothing answers for many minutes, printing warnings. A TCP
    # connection to the address Ray itself would dial fails fast, or within cluster.connect_timeout_s.
    # (Something listening there that is not Ray can still keep ray.init waiting: not checked.)
    try:
        if address.startswith("ray://"):  # Ray Client: host:port after the scheme
            target = address.removeprefix("ray://").split("/")[0]
        else:  # `auto` reads the address of a cluster started on this machine; localhost becomes the node IP
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(address) or ""
        host, _, port = target.rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), timeout=cluster.connect_timeout_s).close()
    except (OSError, ValueError) as err:  # refused, timed out, unknown host, no cluster to auto-detect
        why = (err.strerror if isinstance(err, OSError) and err.strerror else _first_line(err)) or "timed out"
        raise ConfigError(f"cluster=ray: no Ray cluster answers at {address!r} within cluster.connect_timeout_s="
                          f"{cluster.connect_timeout_s:g} s ({why}); {fix}") from None
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cluster=ray: cannot connect to a Ray cluster at {address!r} ({_first_line(err)}); "
                          f"{fix}") from None


def stop_ray() -> None:
    """Stop the local Ray, or disconnect from a running cluster (which keeps running)."""
    if ray.is_initialized():
        ray.shutdown()


class _EngineActor:
    """The Ray actor around one engine (ENGINES[model.engine]); it also says where it runs and its capacity."""

    def __init__(self, model: ModelConfig) -> None:
        self.engine = ENGINES[model.engine](model)

    def ready(self) -> tuple[dict, dict, int | None]:
        ctx = ray.get_runtime_context()
        gpus = ctx.get_accelerator_ids().get("GPU", [])
        capacity = self.engine.capacity() if _concurrent(type(self.engine)) else None
        return self.engine.info(), {"node_id": ctx.get_node_id(), "gpu_ids": [str(g) for g in gpus]}, capacity

    def run_unit(self, unit: Unit) -> pa.RecordBatch:
        try:
            return self.engine.run_unit(unit)
        except Exception:
            if getattr(self.engine, "dead", lambda: False)():
                # vLLM's engine process died under this live actor. Reported as the unit's error, it would
                # charge every unit held and keep a replica that fails all that follow; ended, the actor
                # is a lost engine: replaced, and its units re-queued.
                logging.getLogger(__name__).error("the engine process died; ending the actor")
                os._exit(1)
            raise


def _concurrent(engine: type) -> bool:
    """Engines with `capacity()` run several units at once, thread-safe; others one at a time, in order sent."""
    return callable(getattr(engine, "capacity", None))


_SETTLE_S = 30.0  # a dead engine's other results resolve at once; this only bounds a lost node's


class RayBackend:
    """Replicas as Ray actors (and placement groups) on the cluster `ray.init` connected to."""

    def __init__(self, cluster: ClusterConfig | None = None) -> None:
        # Threads per actor: as many as the units the dispatcher may send it (cluster.max_in_flight, else the cap).
        self._threads = (cluster.max_in_flight if cluster else None) or IN_FLIGHT_CAP
        self._actor = ray.remote(_EngineActor)
        self._refs: dict[ray.ObjectRef, tuple[Replica, Unit | None]] = {}
        self._live: dict[Replica, tuple[Any, Any, ray.ObjectRef]] = {}  # replica -> (actor, pg, ready ref)

    def nodes(self) -> list[tuple[float, float]]:
        return _alive_nodes()

    def start(self, replica: Replica) -> None:
        spec = replica.spec
        threads = self._threads if _concurrent(ENGINES[replica.model.engine]) else 1
        options: dict[str, Any] = {"name": replica.name, "num_cpus": 1, "max_restarts": 0, "max_task_retries": 0,
                                   "max_concurrency": threads}
        pg = None
        if spec.placement_group:
            # The engine actor sits in bundle 0 without a GPU; vLLM puts one worker in each GPU bundle.
            pg = placement_group([{"GPU": 1, "CPU": 1}] + [{"GPU": 1}] * (spec.gpus - 1), strategy="STRICT_PACK",
                                 name=replica.name)
            options |= {"num_gpus": 0, "scheduling_strategy": PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)}
        else:
            options["num_gpus"] = spec.gpus
        actor = self._actor.options(**options).remote(replica.model)
        ready = actor.ready.remote()
        self._refs[ready] = (replica, None)
        self._live[replica] = (actor, pg, ready)

    def submit(self, replica: Replica, unit: Unit) -> None:
        actor = self._live[replica][0]
        self._refs[actor.run_unit.remote(unit)] = (replica, unit)

    def stop(self, replica: Replica) -> None:
        actor, pg, ready = self._live.pop(replica, (None, None, None))
        if actor is None:
            return
        self._refs.pop(ready, None)  # a replica stopped while starting reports nothing more
        ray.kill(actor, no_restart=True)
        if pg is not None:
            remove_placement_group(pg)

    def wait(self) -> list[Event]:
        if not self._refs:
            raise SchedulerError("internal error: the scheduler waits with nothing running")
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        events = [self._event(ref, *self._refs.pop(ref)) for ref in ready]
        # The dispatcher charges a death to the units the engine held that had not finished. A unit
        # that finished just before the crash may not have been seen yet: once an actor is dead every
        # one of its refs resolves, so collect them all and hand finished ones over first.
        dead = {event.replica for event in events if isinstance(event, Lost)}
        theirs = [ref for ref, (replica, _) in self._refs.items() if replica in dead]
        if theirs:
            settled, _ = ray.wait(theirs, num_returns=len(theirs), timeout=_SETTLE_S)
            events += [self._event(ref, *self._refs.pop(ref)) for ref in settled]
        return sorted(events, key=lambda event: isinstance(event, Lost))  # stable: order kept otherwise

    def _event(self, ref: ray.ObjectRef, replica: Replica, unit: Unit | None) -> Event:
        try:
            value = ray.get(ref)
        except RayActorError as err:  # the actor died (or an actor inside the engine did)
            return Lost(replica, unit, _cause(err), init_failed=bool(getattr(err, "actor_init_failed", False)))
        except RayTaskError as err:  # the engine raised
            return Lost(replica, None, _cause(err), init_failed=True) if unit is None else Raised(
                replica, unit, _cause(err))
        except RayError as err:  # the result was lost with its node
            return Lost(replica, unit, _cause(err))
        if unit is not None:
            return Finished(replica, unit, value)
        info, where, capacity = value
        _, pg, _ = self._live.get(replica, (None, None, None))
        nodes = (where["node_id"],)
        if pg is not None:
            nodes = tuple(dict.fromkeys(placement_group_table(pg)["bundles_to_node_id"].values()))
        return Ready(replica, info, Placement(replica.model.name, replica.name, nodes, tuple(where["gpu_ids"]),
                                              pg is not None), capacity)

    def close(self) -> None:
        for replica in list(self._live):
            self.stop(replica)
        self._refs.clear()


def _alive_nodes() -> list[tuple[float, float]]:
    return [(float(n["Resources"].get("GPU", 0)), float(n["Resources"].get("CPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _cause(err: BaseException) -> str:
    text = str(getattr(err, "cause", None) or err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def check_placement(models: Sequence[ModelConfig], cluster: ClusterConfig, local: bool = False) -> None:
    """Raise PlacementError if a model cannot be placed on
    the cluster Ray is connected to; starts nothing. For a driver that checks before writing anything.

    `local=True`: check against the node a local Ray (cluster.kind=local) would have on this machine,
    before Ray is started (cluster.num_gpus / num_cpus, else what Ray would detect). Without GPUs an
    engine runs on the CPU: one replica, tensor_parallel_size 1.
    """
    if not local:
        check_nodes(models, cluster, _alive_nodes())
        return
    try:  # Ray's own detection, without starting Ray (CUDA_VISIBLE_DEVICES, the driver's devices)
        from ray._private.accelerators import get_accelerator_manager_for_resource

        gpus = cluster.num_gpus if cluster.num_gpus is not None else (
            get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators())
    except (ImportError, AttributeError):  # moved in another Ray: the check after start_ray still holds
        return
    nodes = [(float(gpus), float(cluster.num_cpus or os.cpu_count() or 1))]
    check_nodes(models, cluster, nodes, memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
