"""Shared fixtures: a tiny random Llama for vLLM and a short arithmetic dataset, built once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny_arith.jsonl"
    rows = [{"id": f"t{i}", "problem": f"{i}+{i + 1}", "answer": str(2 * i + 1)} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_overrides(model: Path, dataset: Path, store: Path) -> list[str]:
    """A sweep of the tiny model on the tiny dataset, small enough for 2 CPU cores."""
    return [f"model.path={model}", "model.name=tiny", "model.max_model_len=128", "model.answer_max_tokens=8",
            "model.kv_cache_gib=0.0625", "model.temperature=1.0", "model.top_p=1.0", "model.enforce_eager=true",
            "model.dtype=float32", f"dataset.path={dataset}", "dataset.name=tiny_arith",
            "sweep.budgets=[0,8,24]", "sweep.n=[1,2,4]", "sweep.problems_per_unit=2", f"store.root={store}"]


def ttc(*args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    """Run the real `ttc` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)


TOY_OVERRIDES: list[str] = []  # the committed toy reasoner with its default config


@pytest.fixture(scope="session")
def toy_engine():
    """One real vLLM engine on the toy reasoner, shared by every test that needs it (~20 s to start)."""
    from orchestrator.compose import compose
    from orchestrator.engines.vllm import VLLMEngine

    engine = VLLMEngine(compose(TOY_OVERRIDES).model)
    yield engine
    engine.close()


def watched_backend(hold: dict[str, int] | None = None, cluster=None):
    """The real Ray backend, noting the replicas it started and those ready (and where), so a test
    can strike an engine known to be running units.

    `hold` maps a model name to a replica count: that model's replicas are reported ready only once
    that many are up, so every one of them gets work whatever order they start in. `cluster`: the
    ClusterConfig the backend sizes its actors' threads from (cluster.max_in_flight).
    """
    from orchestrator.dispatch import Placement, Ready, Replica
    from orchestrator.ray_backend import RayBackend

    class Watched(RayBackend):
        def __init__(self, hold: dict[str, int]) -> None:
            super().__init__(cluster)
            self.hold = hold
            self.held: list[Ready] = []
            self.started: list[str] = []
            self.ready: dict[str, Replica] = {}
            self.where: dict[str, Placement] = {}

        def start(self, replica) -> None:
            self.started.append(replica.name)
            super().start(replica)

        def wait(self):
            passed: list = []
            while not passed:
                for event in super().wait():
                    held = isinstance(event, Ready) and event.replica.model.name in self.hold
                    (self.held if held else passed).append(event)
                for name, count in list(self.hold.items()):
                    mine = [e for e in self.held if e.replica.model.name == name]
                    # With nothing else pending (a replica was lost while starting), holding on would wait for ever.
                    if len(mine) >= count or (mine and not self._refs):
                        del self.hold[name]
                        self.held = [e for e in self.held if e not in mine]
                        passed += mine
            for event in passed:
                if isinstance(event, Ready):
                    self.ready[event.replica.name] = event.replica
                    self.where[event.replica.name] = event.placement
            return passed

    return Watched(dict(hold or {}))
