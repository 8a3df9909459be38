"""A grid over models in one sweep: each model's engine loads once, in turn; cells and runs for every pair."""

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ttc

pytestmark = pytest.mark.e2e


def test_two_models_in_one_sweep(tmp_path):
    run = ttc("sweep", "--json", "model=toy,toy-cool", "dataset.limit=12", "sweep.problems_per_unit=6",
              "sweep.budgets=[0,50]", "sweep.n=[1,4]", f"store.root={tmp_path}")
    assert run.returncode == 0, run.stdout + run.stderr
    sweep_id = json.loads(run.stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line
    sweep_dir = tmp_path / "sweeps" / sweep_id
    assert (sweep_dir / "grid.yaml").is_file()
    assert {p.name for p in (tmp_path / "samples").iterdir()} == {"model=toy", "model=toy-cool"}
    cells = pq.read_table(sweep_dir / "cells.parquet").to_pandas()
    assert set(cells.model) == {"toy", "toy-cool"} and len(cells) == 2 * 2 * 2 * 2
    # The cooler sampler is the better "model" at the largest budget.
    best = cells[(cells.budget == 50) & (cells.n == 1) & (cells.aggregator == "pass@k")].set_index("model")
    assert best.accuracy["toy-cool"] >= best.accuracy["toy"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ttc").experiment_id],
                              filter_string=f"tags.sweep_id = '{sweep_id}'")
    children = sorted((r.data.tags["model"], r.data.tags["budget"]) for r in runs if r.data.tags["ttc.kind"] == "cell")
    assert children == [("toy", "0"), ("toy", "50"), ("toy-cool", "0"), ("toy-cool", "50")]
