"""The store's own checks: a stored unit verified before reuse, set aside when damaged; a sweep's status
from its driver record; dead sweeps' MLflow runs ended as KILLED; `ttc sync` against a server that is down.

Fast tier: real Parquet files, real processes as drivers, a real MLflow sqlite store; no engine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.cli import main
from orchestrator.compose import compose
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA
from orchestrator.store import Store
from orchestrator.tracking import PENDING, close_dead_sweeps, sync_command
from tests.conftest import PROJECT
from tests.rows import sample_row

PROBLEMS, N, BUDGETS = ["p0", "p1"], 2, [0, 8]


def unit_rows(key: str = "k", problems=PROBLEMS, n: int = N, budgets=BUDGETS) -> pa.Table:
    rows = [sample_row(unit_key=key, problem_id=p, sample_idx=s, budget=b) for p in problems for s in range(n)
            for b in budgets]
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def problem(store: Store, key: str = "k") -> str | None:
    return store.unit_problem("m", "d", key, PROBLEMS, N, BUDGETS)


def test_a_whole_unit_is_trusted(tmp_path):
    store = Store(tmp_path)
    store.write_unit("m", "d", "k", unit_rows())
    assert problem(store) is None


def test_damaged_units_are_named(tmp_path):
    store = Store(tmp_path)
    path = store.write_unit("m", "d", "k", unit_rows())
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])  # a copy cut short: not Parquet any more
    assert problem(store).startswith("is not a readable Parquet file (")

    store.write_unit("m", "d", "k", unit_rows().slice(0, 4))  # valid Parquet, half the rows
    assert problem(store) == "holds 4 rows, planned 8"

    store.write_unit("m", "d", "k", pa.concat_tables([unit_rows().slice(0, 4)] * 2))  # right count, rows twice
    assert problem(store) == "holds 4 of its 8 planned (problem, sample, budget) keys, e.g. not ('p1', 0, 0)"

    store.write_unit("m", "d", "k", unit_rows(key="other"))
    assert problem(store) == "holds rows of other units (other)"

    pq.write_table(unit_rows().drop_columns(["correct"]), path)
    assert problem(store) == "lacks the columns correct"

    store.write_unit("m", "d", "k", unit_rows(budgets=[0, 16]))
    assert problem(store) == "holds 4 of its 8 planned (problem, sample, budget) keys, e.g. not ('p0', 0, 8)"


def test_a_damaged_unit_is_set_aside_whole(tmp_path):
    store = Store(tmp_path)
    path = store.write_unit("m", "d", "k", unit_rows().slice(0, 3))
    data = path.read_bytes()
    moved = store.set_aside("m", "d", "k")
    assert not store.has_unit("m", "d", "k") and moved.read_bytes() == data
    assert moved.relative_to(tmp_path).parts[0] == "damaged" and moved.name == "k.parquet"
    assert moved.parent.parts[-2:] == ("model=m", "dataset=d")
    store.write_unit("m", "d", "k", unit_rows().slice(0, 3))
    assert store.set_aside("m", "d", "k") != moved  # a second damage keeps the first one's file


def _create_sweep_in_child(root, sweep_id: str, config_yaml: str = "a: 1\n", extra: str = "") -> None:
    """A driver process that creates a sweep and exits without ending it: a driver killed mid-sweep."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from orchestrator.store import Store
        store = Store(Path({str(root)!r}))
        store.create_sweep({sweep_id!r}, {config_yaml!r}, ["u1", "u2"])
    """) + textwrap.dedent(extra)
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT, check=True, timeout=300)


def test_sweep_status_follows_the_driver(tmp_path):
    store = Store(tmp_path)
    store.create_sweep("live", "a: 1\n", ["u1"])  # this process is its driver
    status = store.sweep_status("live")
    assert status.state == "running" and status.planned == ["u1"] and "0 of 1 units" in status.detail

    store.create_sweep("done", "a: 1\n", ["u1"])
    store.write_cells("done", CELL_SCHEMA.empty_table())
    store.end_sweep("done", ok=True)
    assert store.sweep_status("done").state == "finished"

    store.create_sweep("broke", "a: 1\n", ["u1"])
    store.end_sweep("broke", ok=False)
    assert store.sweep_status("broke").state == "stopped"

    _create_sweep_in_child(tmp_path, "killed")
    status = store.sweep_status("killed")
    assert status.state == "dead" and "gone before it finished" in status.detail and not status.closed

    # A reused pid is not its driver: the process start time differs.
    driver = tmp_path / "sweeps" / "live" / "driver.json"
    record = json.loads(driver.read_text())
    driver.write_text(json.dumps(record | {"process_start": "1"}))
    assert store.sweep_status("live").state == "dead"
    driver.write_text(json.dumps(record | {"host": "elsewhere.example"}))
    assert store.sweep_status("live").state == "unknown"

    legacy = tmp_path / "sweeps" / "legacy"  # made before drivers were recorded
    legacy.mkdir()
    (legacy / "config.yaml").write_text("a: 1\n")
    assert store.sweep_status("legacy").state == "dead"
    store.write_cells("legacy", CELL_SCHEMA.empty_table())
    assert store.sweep_status("legacy").state == "finished"

    (tmp_path / "sweeps" / ".tmp-dir").mkdir()
    assert ".tmp-dir" not in store.sweep_ids()


def test_show_lists_status_and_refuses_an_unfinished_sweep(tmp_path, capsys):
    store = Store(tmp_path)
    _create_sweep_in_child(tmp_path, "killed")
    assert main(["show", f"store.root={tmp_path}", "tracking=none"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("killed  dead") and "0 of 2 units" in out
    assert main(["show", "killed", f"store.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the sweep is dead, without cells" in err[0] and "re-run its command" in err[0]
    assert store.sweep_status("killed").closed  # its config has no tracking section to end


DEAD_WITH_RUNS = """
    from orchestrator.compose import compose
    from orchestrator.tracking import Tracker
    cfg = compose({overrides!r})
    tracker = Tracker(cfg, {sweep_id!r}, store.sweep_dir({sweep_id!r}))
    tracker.start_sweep(cfg, store.sweep_dir({sweep_id!r}) / "config.yaml", [("toy", "toy_arith", "d", "src")])
"""


def test_a_dead_sweeps_runs_are_ended_as_killed_once(tmp_path):
    from mlflow.tracking import MlflowClient

    store = Store(tmp_path)
    overrides = [f"store.root={tmp_path}", "sweep.budgets=[0,8]"]
    _create_sweep_in_child(tmp_path, "killed", _yaml(compose(overrides)),
                           DEAD_WITH_RUNS.format(overrides=overrides, sweep_id="killed"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ttc").experiment_id
    runs = client.search_runs([experiment], filter_string="tags.sweep_id = 'killed'")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"RUNNING"}  # the parent and two children

    assert close_dead_sweeps(store) == ["sweep killed is dead (its driver is gone): its MLflow runs are now KILLED"]
    runs = client.search_runs([experiment], filter_string="tags.sweep_id = 'killed'")
    assert {r.info.status for r in runs} == {"KILLED"}
    status = store.sweep_status("killed")
    assert status.closed and "MLflow runs marked KILLED" in status.detail
    assert close_dead_sweeps(store) == []  # once


def test_killing_a_dead_sweeps_runs_is_journaled_while_mlflow_is_down(tmp_path):
    store = Store(tmp_path)
    with socket.socket() as refusing:  # bound, never listening: every connection is refused
        refusing.bind(("127.0.0.1", 0))
        overrides = [f"store.root={tmp_path}", f"tracking.uri=http://127.0.0.1:{refusing.getsockname()[1]}"]
        _create_sweep_in_child(tmp_path, "killed", _yaml(compose(overrides)))
        lines = close_dead_sweeps(store)
    assert len(lines) == 1 and "journaled until `ttc sync killed store.root=" in lines[0]
    journal = (tmp_path / "sweeps" / "killed" / PENDING).read_text().splitlines()
    assert [json.loads(line)["op"] for line in journal] == ["end_running"]


def _yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg.to_dict())


def test_sync_command_names_what_is_not_default(tmp_path):
    assert sync_command(compose([]), "s1") == "ttc sync s1"
    root = tmp_path / "my store"
    cfg = compose([f"store.root={root}", "tracking.uri=http://h:5000"])
    assert sync_command(cfg, "s1") == f"ttc sync s1 'store.root={root}' tracking.uri=http://h:5000"


def test_sync_while_mlflow_is_down_is_one_line_and_keeps_the_journal(tmp_path, capsys):
    store = Store(tmp_path)
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        cfg = compose([f"store.root={tmp_path}", f"tracking.uri=http://127.0.0.1:{refusing.getsockname()[1]}"])
        store.create_sweep("s1", _yaml(cfg), ["u1"])
        journal = tmp_path / "sweeps" / "s1" / PENDING
        journal.write_text(json.dumps({"op": "run", "args": {"key": "s1", "name": "s1", "tags": {}, "parent": None,
                                                             "start_ms": 1}}) + "\n")
        before = journal.read_bytes()
        status = main(["sync", "s1", f"store.root={tmp_path}"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert status == 1 and len(err) == 1, captured.err
    assert err[0].startswith("ttc: sync failed: http://127.0.0.1:") and "operation 1 of 1 failed" in err[0]
    assert journal.read_bytes() == before and not (journal.parent / "tracking_synced.jsonl").exists()
