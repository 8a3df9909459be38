"""A dispatcher backend in virtual time: nodes with GPU counts, replicas as in-process simulated engines.

The dispatcher (orchestrator/dispatch.py) drives it exactly as it drives the Ray backend, but no
process starts and nothing sleeps: each replica is a SimEngine (orchestrator/engines/sim.py)
whose units take their simulated seconds on a virtual clock. bench/scheduler_scale.py runs a
256-GPU cluster on it, and tests/test_dispatch.py checks the dispatching logic in the fast tier.

What it models, and what it leaves out:
- A replica's start takes the model's `sim.startup_s`; waiting replicas get the first node with
  room, in request order (Ray's own choice of node is not modelled).
- A replica's units share its engine's throughput (`seconds_per_token` is the batched rate), so
  they finish one after another in the order sent, the last at the sum of their times, whether
  the engine runs them at once or one at a time.
- Its engines report `capacity` (an int, None for an engine that does not say, or "engine": the
  SimEngine's own `capacity()` if it has one).
- Failures: `kill(replica)` and `kill_node(node)` strike now (in virtual time) as a killed actor
  or a lost node would; a unit holding the model's `sim.crash_on_problem` kills its engine half way
  through; `raise_on_problem` makes the engine raise on units holding that problem; `die_starting`
  maps a model name to how many of its replicas die while starting.
`log` records (time, what, replica, unit key) for start, ready, submit, finish, stop and lost.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections import deque
from typing import Literal

from orchestrator.config import SimConfig
from orchestrator.dispatch import Event, Finished, Lost, Placement, Raised, Ready, Replica
from orchestrator.engines.sim import SimEngine
from orchestrator.errors import SchedulerError
from orchestrator.units import Unit


class VirtualCluster:
    """The nodes (GPUs per node, 2 CPUs per GPU, or `cpus` on a node without GPUs) and their replicas."""

    def __init__(self, gpus_per_node: list[int], capacity: int | None | Literal["engine"] = "engine",
                 cpus: int = 2, raise_on_problem: str | None = None, die_starting: dict[str, int] | None = None
                 ) -> None:
        self.total = list(gpus_per_node)
        self.free = list(gpus_per_node)
        self.cpus = [float(2 * g if g else cpus) for g in gpus_per_node]
        self.capacity = capacity
        self.raise_on_problem = raise_on_problem
        self.die_starting = dict(die_starting or {})
        self.alive_nodes = set(range(len(gpus_per_node)))
        self.clock = 0.0
        self.events: list = []
        self.seq = itertools.count()
        self.waiting: deque[Replica] = deque()
        self.node_of: dict[Replica, int] = {}
        self.engines: dict[Replica, SimEngine] = {}
        self.busy_until: dict[Replica, float] = {}
        self.pending: dict[Replica, list[Unit]] = {}  # units sent and not finished, in the order sent
        self.dead: set[Replica] = set()
        self.log: list[tuple[float, str, str, str]] = []
        self.unit_seconds: dict[str, tuple[float, int]] = {}  # unit key -> (seconds, GPUs)
        self.engine_cpu = 0.0
        self.startup_gpu_s = 0.0  # GPU-seconds spent loading engines

    def nodes(self) -> list[tuple[float, float]]:
        return [(float(self.total[i]), self.cpus[i]) for i in sorted(self.alive_nodes)]

    def _push(self, at: float, event) -> None:
        heapq.heappush(self.events, (at, next(self.seq), event))

    def _note(self, what: str, replica: Replica, unit: Unit | None = None) -> None:
        self.log.append((self.clock, what, replica.name, unit.key if unit else ""))

    def _place(self) -> None:
        """Give waiting replicas the first node with room, in request order (later small ones may pass)."""
        still: deque[Replica] = deque()
        for replica in self.waiting:
            need = replica.spec.gpus
            node = next((i for i in sorted(self.alive_nodes) if self.free[i] >= need
                         and (need or self.cpus[i] >= 1)), None)
            if node is None:
                still.append(replica)
                continue
            self.free[node] -= need
            self.node_of[replica] = node
            t = time.process_time()
            model = replica.model
            if model.sim is None or model.sim.time_scale != 0:  # virtual time: the engine never sleeps
                model = dataclasses.replace(model, sim=dataclasses.replace(model.sim or SimConfig(), time_scale=0))
            engine = self.engines[replica] = SimEngine(model)
            self.engine_cpu += time.process_time() - t
            ready_at = self.clock + engine.settings.startup_s
            self.startup_gpu_s += engine.settings.startup_s * need
            self.busy_until[replica] = ready_at
            self.pending[replica] = []
            if self.die_starting.get(model.name, 0) > 0:
                self.die_starting[model.name] -= 1
                self._push(ready_at, ("die", replica, "the actor died while starting"))
                continue
            capacity = self.capacity
            if capacity == "engine":
                capacity = engine.capacity() if callable(getattr(engine, "capacity", None)) else None
            self._push(ready_at, Ready(replica, engine.info(), Placement(
                replica.model.name, replica.name, (f"node{node}",), (), replica.spec.placement_group), capacity))
        self.waiting = still

    def start(self, replica: Replica) -> None:
        self._note("start", replica)
        self.waiting.append(replica)
        self._place()

    def submit(self, replica: Replica, unit: Unit) -> None:
        self._note("submit", replica, unit)
        engine = self.engines[replica]
        t = time.process_time()
        batch, seconds = engine.simulate(unit)
        self.engine_cpu += time.process_time() - t
        self.unit_seconds[unit.key] = (seconds, replica.spec.gpus)
        begin = max(self.clock, self.busy_until[replica])  # the engine's throughput is shared: one after another
        self.busy_until[replica] = begin + seconds
        self.pending[replica].append(unit)
        ids = {p.id for p in unit.problems}
        if engine.settings.crash_on_problem in ids:
            self._push(begin + seconds / 2, ("die", replica, "the engine's process exited"))
        elif self.raise_on_problem in ids:
            self._push(begin + seconds, Raised(replica, unit, f"problem {self.raise_on_problem} cannot be run"))
        else:
            self._push(begin + seconds, Finished(replica, unit, batch))

    def kill(self, replica: Replica, message: str = "the actor was killed") -> None:
        """The replica dies now: a Lost event for each unit it held (or one, unit None, while it starts)."""
        if replica in self.dead or (replica not in self.node_of and replica not in self.waiting):
            return
        self.dead.add(replica)
        self._note("lost", replica)
        units = self.pending.get(replica, [])
        for unit in units or [None]:
            self._push(self.clock, Lost(replica, unit, message))
        units.clear()

    def kill_node(self, node: int) -> None:
        """The node is lost with every replica on it; it no longer counts among the alive nodes."""
        self.alive_nodes.discard(node)
        self.free[node] = 0
        for replica in [r for r, n in self.node_of.items() if n == node]:
            self.kill(replica, "the node was lost")

    def stop(self, replica: Replica) -> None:
        self._note("stop", replica)
        if replica in self.node_of:
            node = self.node_of.pop(replica)
            if node in self.alive_nodes:
                self.free[node] += replica.spec.gpus
            del self.engines[replica]
            self.dead.add(replica)  # a stopped replica reports nothing more
            self._place()
        elif replica in self.waiting:
            self.waiting.remove(replica)

    def wait(self) -> list[Event]:
        while self.events:
            at, _, event = heapq.heappop(self.events)
            self.clock = at
            if isinstance(event, tuple):  # a death scheduled in virtual time
                _, replica, message = event
                self.kill(replica, message)
                continue
            if isinstance(event, Lost):
                return [event]
            if event.replica in self.dead:  # a result of a dead or stopped replica never arrives
                continue
            if isinstance(event, (Finished, Raised)):
                self.pending[event.replica].remove(event.unit)
                self._note("finish", event.replica, event.unit)
            else:
                self._note("ready", event.replica)
            return [event]
        raise SchedulerError(f"virtual cluster: nothing is running and {len(self.waiting)} replicas wait for a "
                             "node that will never have room")

    def close(self) -> None:
        for replica in list(self.node_of) + list(self.waiting):
            self.stop(replica)
