"""model.engine=openai end to end: a REAL vLLM OpenAI server (`python -m vllm.entrypoints.openai.api_server`)
serving the toy reasoner on 127.0.0.1, and the chat path through Ray against the API stand-in.

- The rows through the server equal the in-process engine's on the same grid (the server started with the
  in-process engine's settings: orchestrator/engines/openai.py vllm_serve_command), but for what a run's
  timing decides (latency_s, the prefix cache's cached_tokens) and what names the engine.
- The server killed mid-sweep: the sweep ends with its finished units stored and one line per failed unit
  and a last line saying to re-run; with the server back, the same command runs only what is missing.
- `ttc sweep model=o3-mini` through Ray on the stand-in of a closed API: cells for every effort level.
One server is shared by the module (it takes ~30 s to start on 2 cores).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest

from orchestrator.compose import compose
from orchestrator.datasets import load_problems
from orchestrator.engines.openai import OpenAIEngine, vllm_serve_command
from orchestrator.plan import plan_units
from tests.conftest import PROJECT, ttc

pytestmark = pytest.mark.e2e

# What differs between the two engines' rows by design: the engine's names, and what a run's timing decides.
NOT_COMPARED = ["unit_key", "model", "engine", "engine_version", "latency_s", "cached_tokens"]


class Server:
    """A vLLM OpenAI server in its own process group (vLLM starts an engine-core child), killed by that group."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = compose(["model=openai-server", f"model.base_url={self.base_url}"]).model
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 300) -> None:
        cmd = vllm_serve_command(self.model, self.port, python=sys.executable)
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"the vLLM server did not answer in {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL its process group: the server and its engine core go at once, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("vllm-server") / "server.log")
    srv.start()
    yield srv
    srv.stop()


def test_rows_through_the_server_equal_the_in_process_engines(server, toy_engine):
    grid = ["dataset.limit=16", "sweep.problems_per_unit=8", "sweep.n=[1,4]"]
    served_cfg = compose(["model=openai-server", f"model.base_url={server.base_url}", *grid])
    local_cfg = compose(grid)
    problems = load_problems(local_cfg.dataset)
    engine = OpenAIEngine(served_cfg.model)
    try:
        served = pa.Table.from_batches([engine.run_unit(u) for u in plan_units(served_cfg, problems)])
    finally:
        engine.close()
    local = pa.Table.from_batches([toy_engine.run_unit(u) for u in plan_units(local_cfg, problems)])
    assert served.num_rows == local.num_rows == 16 * 4 * len(local_cfg.sweep.budgets)
    assert set(served.column("engine").to_pylist()) == {"openai"}
    a, b = served.drop_columns(NOT_COMPARED), local.drop_columns(NOT_COMPARED)
    differing = {c: sum(x != y for x, y in zip(a.column(c).to_pylist(), b.column(c).to_pylist()))
                 for c in a.column_names}
    assert a.equals(b), f"rows differing per column: { {c: n for c, n in differing.items() if n} }"


def test_chat_api_sweep_through_ray_on_the_stand_in(tmp_path):
    from tests.openai_standin import StandIn

    problems = load_problems(compose(["dataset.limit=6"]).dataset)
    with StandIn({p.problem: p.answer for p in problems}, key="sk-e2e-secret") as api:
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "sweep", "model=o3-mini", f"model.base_url={api.base_url}",
             "model.api_key_env=TTC_E2E_KEY", "dataset.limit=6", "sweep.budgets=[2000,6000,16000]", "sweep.n=[1,2]",
             "sweep.problems_per_unit=3", "tracking=none", f"store.root={tmp_path}"],
            cwd=PROJECT, capture_output=True, text=True, timeout=600, env=dict(os.environ, TTC_E2E_KEY="sk-e2e-secret"))
        assert run.returncode == 0, run.stdout + run.stderr
        assert len(api.requests) == 6 * 2 * 3
    assert "sk-e2e-secret" not in run.stdout + run.stderr
    import pyarrow.parquet as pq

    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    cells = pq.read_table(sweep_dir / "cells.parquet").to_pylist()
    assert {c["budget"] for c in cells} == {2000, 6000, 16000}
    assert all(c["mean_think_tokens"] > 0 for c in cells)


def test_server_killed_mid_sweep_keeps_finished_units_and_a_rerun_runs_only_the_missing(server, tmp_path):
    units = 6
    args = ["sweep", "model=openai-server", f"model.base_url={server.base_url}", f"dataset.limit={4 * units}",
            "sweep.problems_per_unit=4", "sweep.n=[1,4]", "model.max_retries=1", "cluster.max_in_flight=1",
            "tracking=none", f"store.root={tmp_path}"]
    samples = tmp_path / "samples"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        while len(list(samples.rglob("*.parquet"))) < 2:  # two units stored: kill the server under the third
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        server.kill()
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = len(list(samples.rglob("*.parquet")))
    text = out + err
    assert proc.returncode == 1, text
    assert 2 <= stored < units, text
    assert f"{units - stored} units failed" in text and "re-run the same command" in text, text
    assert "failed 2 times (model.max_retries=1)" in text, text

    server.start()
    rerun = ttc(*args)
    text = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, text
    assert f"({units - stored} units run, {stored} from the store)" in text, text
    assert len(list(samples.rglob("*.parquet"))) == units
