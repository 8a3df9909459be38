"""The MLflow UI as a new user meets it: `ttc ui` on a store holding a finished sweep, its printed link loaded in
headless Chromium (Debian's, driven by Playwright), the runs and the maj_accuracy chart on the first screen.

The sweep is logged through the same Tracker calls `ttc sweep` makes (start, live progress, cells, end), with a
made-up cells table, so no engine starts: the sweep tests check what a real sweep logs, this one checks what the
UI shows of it. Screenshots are kept under the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from orchestrator.compose import compose
from orchestrator.schema import CELL_SCHEMA
from orchestrator.store import Store, new_sweep_id
from orchestrator.tracking import Tracker
from tests.conftest import PROJECT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUDGETS, NS, PROBLEMS = [0, 15, 30, 50], [1, 2, 4, 8, 16], 64


def made_up_cells() -> pa.Table:
    """Cells shaped like the default sweep's: accuracy rising with B and, past one half, with N."""
    rows = []
    for b in BUDGETS:
        p1 = 0.12 + 0.0115 * b
        for n in NS:
            for aggregator, acc in (("pass@k", 1 - (1 - p1) ** n),
                                    ("maj@k", min(1.0, p1 + (p1 - 0.45) * 0.3 * (n - 1) ** 0.5))):
                acc = max(0.0, acc)
                rows.append({"model": "toy", "dataset": "toy_arith", "budget": b, "strategy": "cap", "n": n,
                             "aggregator": aggregator, "accuracy": acc, "ci_low": max(0.0, acc - 0.05),
                             "ci_high": min(1.0, acc + 0.05), "mean_think_tokens": 0.8 * b,
                             "tokens_per_problem": n * (0.8 * b + 4), "flops_per_problem": n * 1e6,
                             "problems": PROBLEMS, "samples": PROBLEMS * max(NS), "engine_seconds_per_problem": 0.01,
                             "usd_per_1k_queries": 0.0})
    return pa.Table.from_pylist(rows, schema=CELL_SCHEMA)


def log_sweep(root: Path) -> str:
    """A finished sweep in the store at `root`, logged to its MLflow store the way `ttc sweep` logs one."""
    cfg = compose([f"store.root={root}", f"sweep.budgets={BUDGETS}", f"sweep.n={NS}"])
    store = Store(root)
    sweep_id = new_sweep_id()
    sweep_dir = store.create_sweep(sweep_id, OmegaConf.to_yaml(cfg.to_dict()), [])
    tracker = Tracker(cfg, sweep_id, sweep_dir)
    tracker.start_sweep(cfg, sweep_dir / "config.yaml", [("toy", "toy_arith", "0123456789abcdef", "data/x.jsonl")])
    for done in (16, 32, 64):  # progress as a sweep logs it: per budget, its problems done
        tracker.log_live({("toy", "toy_arith", b, "cap"): (done, {"problems_done": float(done),
                                                                 "running_pass_at_1": 0.1 + b / 100,
                                                                 "tokens_per_s": 900.0 + done})
                          for b in BUDGETS}, force=True)
    cells = made_up_cells()
    tracker.log_cells(cells)
    tracker.log_artifact(store.write_cells(sweep_id, cells))
    tracker.finish(True)
    store.end_sweep(sweep_id, True)
    assert not tracker.needs_sync, tracker.error
    return sweep_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_rss(pgid: int) -> tuple[int, int]:
    """(processes, summed resident memory in bytes) of the process group `pgid`."""
    count = rss = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            count += 1
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: resident pages
    return count, rss


@pytest.fixture
def ui(tmp_path):
    """`ttc ui` on a store with one finished sweep: (its stdout lines so far, base URL, the process)."""
    root = tmp_path / "store"
    sweep_id = log_sweep(root)
    port = _free_port()
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", f"store.root={root}",
                                 "--port", str(port)], cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "ttc ui did not answer in 120 s:\n" + log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield sweep_id, log.read_text(errors="replace"), proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we started: the server and its worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_printed_link_opens_on_the_runs_and_the_maj_accuracy_chart(ui, tmp_path):
    from playwright.sync_api import sync_playwright

    sweep_id, printed, proc = ui
    runs = re.search(r"runs and charts: (\S+)", printed)
    summary = re.search(r"summary: +(\S+)", printed)
    assert runs and summary, printed
    assert f"viewStateShareKey={sweep_id}" in runs.group(1) and "workflowType=machine_learning" in runs.group(1)
    processes, rss = _group_rss(proc.pid)
    assert processes <= 2, f"ttc ui runs {processes} processes"  # one web worker, no job runner
    print(f"ttc ui: {processes} processes, {rss / 2**20:.0f} MiB resident")

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=FLAGS,
                                                       viewport={"width": 1600, "height": 1000})
        try:
            page = context.new_page()
            page.goto(runs.group(1))
            # The runs list names every child by its budget first; nothing hides under a collapsed parent.
            for b in BUDGETS:
                page.get_by_text(f"B={b} · toy · toy_arith · cap", exact=True).first.wait_for(timeout=30_000)
            charts = page.get_by_test_id("experiment-view-compare-runs-chart-area")
            charts.get_by_text("maj_accuracy", exact=True).first.wait_for(timeout=30_000)  # a chart's title
            page.wait_for_timeout(1500)  # let the plots draw before the picture
            page.screenshot(path=str(tmp_path / "runs_charts.png"))
            assert page.locator(".main-svg").count() > 0  # plotly drew the charts
            assert "No data available" not in page.inner_text("body")
            page.goto(summary.group(1))
            page.get_by_text(re.compile(r"^Best: maj@16 = ")).first.wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "parent_run.png"), full_page=True)
        finally:
            context.close()
    assert (tmp_path / "runs_charts.png").stat().st_size > 0 and (tmp_path / "parent_run.png").stat().st_size > 0
