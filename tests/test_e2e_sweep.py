"""End to end: `ttc sweep` on a local Ray with the real vLLM engine, Parquet store and MLflow sqlite store."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from analysis.cells import BILL_COLUMNS
from orchestrator.schema import CELL_SCHEMA
from tests.conftest import tiny_overrides, ttc

pytestmark = pytest.mark.e2e

PROBLEMS, N_MAX, BUDGETS, NS = 5, 4, [0, 8, 24], [1, 2, 4]


@pytest.fixture(scope="module")
def sweep(tiny_model, tiny_dataset, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    overrides = tiny_overrides(tiny_model, tiny_dataset, store)
    first = ttc("sweep", "--json", *overrides)
    assert first.returncode == 0, first.stdout + first.stderr
    return store, overrides, first


def _sweep_id(stdout: str) -> str:
    return json.loads(stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line


def test_sample_rows_follow_the_contract(sweep):
    store, _, _ = sweep
    files = sorted((store / "samples").rglob("*.parquet"))
    assert len(files) == 3  # 5 problems in units of 2
    assert all("model=tiny" in str(f) and "dataset=tiny_arith" in str(f) for f in files)
    samples = pq.ParquetDataset(files, partitioning=None).read().to_pandas()
    assert len(samples) == PROBLEMS * N_MAX * len(BUDGETS)
    assert (samples.think_tokens <= samples.budget).all()
    assert (samples.groupby(["problem_id", "sample_idx"]).size() == len(BUDGETS)).all()
    assert samples[samples.budget == 0].forced.all()
    assert set(samples.finish_reason) <= {"stop", "length"}
    assert (samples.prompt_tokens > 0).all() and (samples.engine == "vllm").all()
    # A sample's thinking at a smaller budget is a prefix of its thinking at a larger one.
    for _, g in samples.groupby(["problem_id", "sample_idx"]):
        assert list(g.sort_values("budget").think_tokens) == sorted(g.think_tokens)
    # Seeds are per (problem, sample), shared across budgets.
    assert (samples.groupby(["problem_id", "sample_idx"]).seed.nunique() == 1).all()


def test_cells_table_and_plot(sweep):
    store, _, first = sweep
    result = json.loads(first.stdout.splitlines()[-1])
    sweep_dir = store / "sweeps" / result["sweep_id"]
    cells = pq.read_table(result["cells"])
    assert cells.schema.equals(CELL_SCHEMA)
    df = cells.to_pandas()
    assert len(df) == len(BUDGETS) * len(NS) * 2
    assert set(df.aggregator) == {"pass@k", "maj@k"} and sorted(set(df.n)) == NS
    assert ((df.accuracy >= 0) & (df.accuracy <= 1)).all() and (df.problems == PROBLEMS).all()
    assert (df.ci_low <= df.accuracy + 1e-12).all() and (df.accuracy <= df.ci_high + 1e-12).all()
    plot = sweep_dir / "plots" / "accuracy_vs_compute.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot:" in first.stdout and "cells:" in first.stdout
    assert (sweep_dir / "config.yaml").is_file() and len((sweep_dir / "manifest.jsonl").read_text().splitlines()) == 3


def test_mlflow_runs_read_back(sweep):
    store, _, first = sweep
    sweep_id = _sweep_id(first.stdout)
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ttc")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep_id") == sweep_id and r.data.tags["ttc.kind"] == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["sweep.budgets"] == "[0, 8, 24]"
    assert parent.data.tags["ttc.engine"] == "vllm"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(c.data.tags["budget"]) for c in children) == BUDGETS
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["sweep_id"] == sweep_id
        for metric in ("maj_accuracy", "pass_at_k", "tokens_per_problem"):
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == NS, metric  # exactly one point per N
        assert client.get_metric_history(child.info.run_id, "running_pass_at_1")  # live progress was logged
        assert [d.dataset.name for d in child.inputs.dataset_inputs] == ["tiny_arith"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"cells.parquet", "config.yaml", "plots"} <= artifacts


def test_rerun_takes_every_unit_from_the_store(sweep):
    store, overrides, first = sweep
    files = {f: f.stat().st_mtime_ns for f in (store / "samples").rglob("*.parquet")}
    second = ttc("sweep", "--json", *overrides)
    assert second.returncode == 0, second.stderr
    assert "(0 units run, 3 from the store)" in second.stdout
    assert {f: f.stat().st_mtime_ns for f in (store / "samples").rglob("*.parquet")} == files
    a = pq.read_table(store / "sweeps" / _sweep_id(first.stdout) / "cells.parquet")
    b = pq.read_table(store / "sweeps" / _sweep_id(second.stdout) / "cells.parquet")
    assert a.equals(b)


def test_show_prints_the_table(sweep):
    store, _, first = sweep
    shown = ttc("show", _sweep_id(first.stdout), f"store.root={store}")
    assert shown.returncode == 0 and "maj@k" in shown.stdout and "N=4" in shown.stdout


def test_analyze_writes_fits_report_plots_and_logs_them(sweep):
    store, _, first = sweep
    sweep_id = _sweep_id(first.stdout)
    analyzed = ttc("analyze", sweep_id, f"store.root={store}")
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    sweep_dir = store / "sweeps" / sweep_id
    assert json.loads((sweep_dir / "fits.json").read_text())
    assert (sweep_dir / "report.md").read_text().startswith("#")
    assert (sweep_dir / "plots" / "o1.png").is_file() and (sweep_dir / "plots" / "frontier.svg").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ttc")
    parent = client.search_runs([experiment.experiment_id],
                                filter_string=f"tags.sweep_id = '{sweep_id}' and tags.`ttc.kind` = 'sweep'")[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"fits.json", "report.md"} <= logged
    assert "plots/o1.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}


def test_damaged_units_are_set_aside_and_regenerated(sweep, tmp_path):
    """One unit file cut short (not Parquet), another holding half its rows: both are named, moved aside
    whole, generated again, and the cells equal the undamaged run's."""
    import shutil

    store, overrides, first = sweep
    copy = tmp_path / "store"
    shutil.copytree(store / "samples", copy / "samples")
    units = sorted((copy / "samples").rglob("*.parquet"))
    truncated, halved = units[0], units[1]
    truncated.write_bytes(truncated.read_bytes()[:100])
    table = pq.read_table(halved)
    pq.write_table(table.slice(0, table.num_rows // 2), halved)
    damaged = {truncated.stem: truncated.read_bytes(), halved.stem: halved.read_bytes()}

    args = [o for o in overrides if not o.startswith("store.root=")] + [f"store.root={copy}", "tracking=none"]
    again = ttc("sweep", "--json", *args)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = [line for line in again.stderr.splitlines() if "is damaged" in line]
    assert len(lines) == 2, again.stderr
    assert any(truncated.stem in line and "is not a readable Parquet file" in line for line in lines)
    assert any(halved.stem in line and f"holds {table.num_rows // 2} rows, planned {table.num_rows}" in line
               for line in lines)
    moved = sorted((copy / "damaged").rglob("*.parquet"))
    assert {m.stem: m.read_bytes() for m in moved} == damaged  # kept as they were found
    assert all(str(m) in again.stderr.replace("\n", "") for m in moved)  # and the lines say where
    assert "(2 units run, 1 from the store); 2 damaged units set aside and generated again" in again.stdout
    sweep_dir = copy / "sweeps" / _sweep_id(again.stdout)
    manifest = [json.loads(line) for line in (sweep_dir / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["rows"] for e in manifest) == sorted(pq.read_metadata(u).num_rows for u in units)
    original = pq.read_table(store / "sweeps" / _sweep_id(first.stdout) / "cells.parquet")
    # The bill's engine time comes from the throughput this run measured on the units it generated again.
    assert pq.read_table(sweep_dir / "cells.parquet").drop_columns(list(BILL_COLUMNS)).equals(
        original.drop_columns(list(BILL_COLUMNS)))
    status = ttc("show", f"store.root={copy}")
    assert f"{sweep_dir.name}  finished" in status.stdout, status.stdout + status.stderr
