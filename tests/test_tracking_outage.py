"""MLflow outage: a real `mlflow server` killed mid-sweep; the sweep finishes, `ttc sync` replays, twice safely."""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_overrides, ttc

pytestmark = pytest.mark.e2e

BUDGETS, NS = [0, 8, 24], [1, 2, 4]


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _port_below_ephemeral_range() -> int:
    """A free port that no outgoing connection (local Ray opens many) can take while the server is down."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(20000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in [20000, {low})")


class MlflowServer:
    """A tracking server on 127.0.0.1 with a sqlite backend, started and stopped by handle."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "server.log"
        self.port = _port_below_ephemeral_range()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
               "--artifacts-destination", (self.root / "artifacts").as_uri()]
        with self.log.open("ab") as log:  # appended to across restarts
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not start in 120 s:\n{_tail(self.log)}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group we started: uvicorn and its workers
            self.proc.wait()


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path / "server")
    s.root.mkdir()
    s.start()
    yield s
    s.kill()


def _sweep_id(stdout: str) -> str:
    return json.loads(stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line


def _runs(uri: str, sweep_id: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ttc")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}'")
    return client, runs


def _assert_logged_once(uri: str, sweep_id: str) -> None:
    client, runs = _runs(uri, sweep_id)
    parents = [r for r in runs if r.data.tags["ttc.kind"] == "sweep"]
    children = [r for r in runs if r.data.tags["ttc.kind"] == "cell"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["budget"]) for c in children) == BUDGETS
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        for metric in ("maj_accuracy", "pass_at_k", "tokens_per_problem", "running_pass_at_1"):
            points = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(child.info.run_id, metric)]
            assert points and max(Counter(points).values()) == 1, f"{metric} has duplicate points"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "maj_accuracy")]
        assert sorted(steps) == NS
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"cells.parquet", "config.yaml", "plots"} <= artifacts


def test_server_killed_mid_sweep_then_synced_twice(server, tiny_model, tiny_dataset, tmp_path):
    store = tmp_path / "store"
    args = ["sweep", "--json", *tiny_overrides(tiny_model, tiny_dataset, store), f"tracking.uri={server.uri}"]
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"  # files, not pipes: nothing drains them while we poll
    with out.open("w") as stdout_file, err.open("w") as stderr_file:
        sweep = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=Path(__file__).parents[1],
                                 stdout=stdout_file, stderr=stderr_file)

    def output() -> str:
        return f"--- stdout\n{_tail(out)}\n--- stderr\n{_tail(err)}"

    try:
        # The runs exist as soon as the sweep starts; the engine takes ~20 s more to load: kill the server then.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert sweep.poll() is None, f"the sweep exited before the server was killed:\n{output()}"
            client = MlflowClient(tracking_uri=server.uri)
            experiment = client.get_experiment_by_name("ttc")
            if experiment and client.search_runs([experiment.experiment_id]):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"no run reached the server within 300 s:\n{output()}")
        manifest_lines_at_kill = len(list((store / "sweeps").glob("*/manifest.jsonl")))
        server.kill()
        sweep.wait(timeout=900)
    finally:
        if sweep.poll() is None:  # a failure above: stop the sweep we started
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, output()
    stdout = out.read_text()
    assert manifest_lines_at_kill == 0  # the outage began before any unit finished
    sweep_id = _sweep_id(stdout)
    # The printed command names the store and server the sweep used, so it works as printed.
    printed = next(line.strip() for line in stdout.splitlines() if line.strip().startswith(f"ttc sync {sweep_id}"))
    command = shlex.split(printed)
    assert command == ["ttc", "sync", sweep_id, f"store.root={store}", f"tracking.uri={server.uri}"]
    # The Parquet store is complete.
    rows = pq.ParquetDataset(sorted((store / "samples").rglob("*.parquet")), partitioning=None).read()
    assert rows.num_rows == 5 * 4 * len(BUDGETS)
    pending = store / "sweeps" / sweep_id / "tracking_pending.jsonl"
    assert pending.is_file()

    # Still down: one line, exit 1, the journal as it was.
    journal = pending.read_bytes()
    down = ttc(*command[1:], cwd=tmp_path)
    assert down.returncode == 1 and not down.stdout, down.stdout + down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and down.stderr.startswith("ttc: sync failed: "), down.stderr
    assert pending.read_bytes() == journal

    server.start()
    for expected in ("replayed", "nothing to sync"):
        synced = ttc(*command[1:], cwd=tmp_path)  # from another directory: the printed command works as is
        assert synced.returncode == 0 and expected in synced.stdout, synced.stdout + synced.stderr
    assert not pending.exists()
    _assert_logged_once(server.uri, sweep_id)

    # Replaying the journal once more (as if sync ran twice before cleaning up) changes nothing.
    (store / "sweeps" / sweep_id / "tracking_synced.jsonl").rename(pending)
    again = ttc("sync", sweep_id, f"store.root={store}")
    assert again.returncode == 0 and "replayed" in again.stdout
    _assert_logged_once(server.uri, sweep_id)


def test_server_unreachable_at_start(server, tiny_model, tiny_dataset, tmp_path):
    store = tmp_path / "store"
    overrides = tiny_overrides(tiny_model, tiny_dataset, store)
    first = ttc("sweep", *overrides, "tracking=none")  # fill the store; this sweep logs nothing
    assert first.returncode == 0, first.stderr
    with socket.socket() as refusing:  # bound but never listening: every connection to it is refused
        refusing.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{refusing.getsockname()[1]}"
        # every unit from the store, no MLflow at all
        second = ttc("sweep", "--json", *overrides, f"tracking.uri={dead}")
    assert second.returncode == 0, second.stderr
    sweep_id = _sweep_id(second.stdout)
    assert "(0 units run, 3 from the store)" in second.stdout and f"ttc sync {sweep_id}" in second.stdout
    synced = ttc("sync", sweep_id, f"store.root={store}", f"tracking.uri={server.uri}")
    assert synced.returncode == 0 and "replayed" in synced.stdout, synced.stdout + synced.stderr
    client, runs = _runs(server.uri, sweep_id)
    assert len([r for r in runs if r.data.tags["ttc.kind"] == "sweep"]) == 1
    assert not (tmp_path / "mlruns").exists() and not first.stdout.count("mlflow:")
