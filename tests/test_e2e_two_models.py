"""End to end: the default run's two models (the toy reasoner and the toy base) in one sweep, then
`ttc analyze`: both models' cells read back, the headline figure and the bill in the report.

`ttc sweep` without a model on the command line sweeps conf/config.yaml's `grid.model` (toy, toy-base);
each model's engine loads once, and each (model, budget) gets its MLflow child run. A small slice of the
held-out set keeps it to about a minute on 2 cores.
"""

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from orchestrator.schema import CELL_SCHEMA
from tests.conftest import ttc

pytestmark = pytest.mark.e2e


def test_default_run_compares_the_reasoner_with_the_base(tmp_path):
    run = ttc("sweep", "--json", "dataset.limit=32", "sweep.problems_per_unit=16", "sweep.budgets=[0,50]",
              "sweep.n=[1,4]", f"store.root={tmp_path}")
    assert run.returncode == 0, run.stdout + run.stderr
    sweep_id = json.loads(run.stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line
    assert "toy on toy_arith" in run.stdout and "toy-base on toy_arith" in run.stdout
    sweep_dir = tmp_path / "sweeps" / sweep_id
    assert (sweep_dir / "grid.yaml").is_file()
    assert {p.name for p in (tmp_path / "samples").iterdir()} == {"model=toy", "model=toy-base"}
    cells = pq.read_table(sweep_dir / "cells.parquet")
    assert cells.schema.equals(CELL_SCHEMA)
    df = cells.to_pandas()
    assert set(df.model) == {"toy", "toy-base"} and len(df) == 2 * 2 * 2 * 2
    maj = df[df.aggregator == "maj@k"].set_index(["model", "budget", "n"]).accuracy
    # The reasoner climbs with thinking; the base, whose thinking is filler, does not (32 problems: wide
    # margins only).
    assert maj["toy", 50, 4] - maj["toy", 0, 4] > 0.3
    assert abs(maj["toy-base", 50, 4] - maj["toy-base", 0, 4]) < 0.25
    assert maj["toy", 50, 4] > maj["toy-base", 50, 4] + 0.2
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ttc").experiment_id],
                              filter_string=f"tags.sweep_id = '{sweep_id}'")
    children = sorted((r.data.tags["model"], r.data.tags["budget"]) for r in runs if r.data.tags["ttc.kind"] == "cell")
    assert children == [("toy", "0"), ("toy", "50"), ("toy-base", "0"), ("toy-base", "50")]

    analyzed = ttc("analyze", sweep_id, f"store.root={tmp_path}")
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    assert (sweep_dir / "plots" / "headline.png").stat().st_size > 0
    assert (sweep_dir / "plots" / "headline.svg").is_file()
    report = (sweep_dir / "report.md").read_text()
    assert "](plots/headline.png)" in report
    assert report.count("### The bill: the cheapest (B, N) reaching each maj@k level") == 2
    assert "costs **" in report and "one at the bottom" in report
