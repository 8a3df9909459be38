"""End to end: `ttc sweep verifier=toy`, the toy reasoner scored by the toy verifier on vLLM's pooling runner."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ttc

pytestmark = pytest.mark.e2e

BUDGETS, NS = [0, 15, 30], [1, 4]


def _overrides(store) -> list[str]:
    return ["model=toy", "dataset.limit=6", f"sweep.budgets=[{','.join(map(str, BUDGETS))}]",
            f"sweep.n=[{','.join(map(str, NS))}]", "sweep.problems_per_unit=3", f"store.root={store}"]


def _sweep_id(stdout: str) -> str:
    return json.loads(stdout.splitlines()[-1])["sweep_id"]  # `ttc sweep --json`: its last line


def test_a_sweep_with_the_toy_verifier_scores_rows_and_adds_bon_and_wmaj(tmp_path):
    store = tmp_path / "store"
    run = ttc("sweep", "--json", "verifier=toy", *_overrides(store))
    assert run.returncode == 0, run.stdout + run.stderr
    samples = pq.ParquetDataset(sorted((store / "samples").rglob("*.parquet")), partitioning=None).read().to_pandas()
    assert len(samples) == 6 * max(NS) * len(BUDGETS)
    answered = samples.extracted_answer.notna()
    # Every answered row is scored, a probability; a row without an answer abstains (null).
    assert samples.score[answered].notna().all() and samples.score[~answered].isna().all()
    assert ((samples.score[answered] >= 0) & (samples.score[answered] <= 1)).all()
    # The verifier tells correct rows from wrong ones (on average, over these 72 rows).
    assert samples.score[samples.correct].mean() > samples.score[answered & ~samples.correct].mean()

    cells = pq.read_table(store / "sweeps" / _sweep_id(run.stdout) / "cells.parquet").to_pandas()
    assert set(cells.aggregator) == {"pass@k", "maj@k", "bon@k", "wmaj@k"}
    at = cells.set_index(["budget", "n", "aggregator"])
    for budget in BUDGETS:
        for n in NS:
            # The verifier's prefill is on the bill of bon@k and wmaj@k, and only there.
            assert at.loc[(budget, n, "bon@k"), "flops_per_problem"] > at.loc[(budget, n, "maj@k"), "flops_per_problem"]
            assert (at.loc[(budget, n, "bon@k"), "flops_per_problem"]
                    == at.loc[(budget, n, "wmaj@k"), "flops_per_problem"])
        # At N = 1 every aggregator is pass@1.
        assert at.loc[(budget, 1, "bon@k"), "accuracy"] == pytest.approx(at.loc[(budget, 1, "pass@k"), "accuracy"])

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ttc").experiment_id])
    child = next(r for r in runs if r.data.tags.get("budget") == "30")
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "bon_accuracy")) == NS
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "wmaj_accuracy")) == NS
