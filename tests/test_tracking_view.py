"""What MLflow shows of a sweep, without a server: run names, the parent's summary and description, the UI's
saved view of the sweep and the links to it (tests/test_ui_browser.py loads them in a real browser)."""

from __future__ import annotations

import base64
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from orchestrator.schema import CELL_SCHEMA
from orchestrator.tracking import SHARED_VIEW, _summary, child_name, packed_view, parent_name, runs_url, view_state


def _cells(pairs=(("toy", "toy_arith"),), budgets=(0, 50), ns=(1, 4)) -> pa.Table:
    rows = []
    for model, dataset in pairs:
        for b in budgets:
            for n in ns:
                for aggregator in ("pass@k", "maj@k"):
                    acc = 0.1 + b / 100 + n / 100 + (0.05 if aggregator == "pass@k" else 0)
                    rows.append({"model": model, "dataset": dataset, "budget": b, "strategy": "cap", "n": n,
                                 "aggregator": aggregator, "accuracy": acc, "ci_low": acc - 0.1, "ci_high": acc + 0.1,
                                 "mean_think_tokens": b / 2, "tokens_per_problem": n * (b + 5.0),
                                 "flops_per_problem": 1.0, "problems": 8, "samples": 32,
                                 "engine_seconds_per_problem": 0.0, "usd_per_1k_queries": 0.0})
    return pa.Table.from_pylist(rows, schema=CELL_SCHEMA)


def test_names_put_what_differs_first():
    assert child_name("toy", "toy_arith", 15, "cap") == "B=15 · toy · toy_arith · cap"
    assert parent_name("S1", ["toy"], ["toy_arith"], [0, 15, 30, 50], [1, 2, 4, 8, 16]) == \
        "toy · toy_arith · B=0,15,30,50 · N=1..16 · S1"
    assert parent_name("S1", ["a", "b", "a"], ["x", "x"], [0, 8], [1, 4]) == "a, b · x · B=0,8 · N=1,4 · S1"


def test_summary_metrics_and_headline_table():
    metrics, text = _summary(_cells())
    assert metrics == pytest.approx({"maj_at_4_B0": 0.14, "pass_at_4_B0": 0.19, "maj_at_4_B50": 0.64,
                                     "pass_at_4_B50": 0.69, "best_maj_accuracy": 0.64, "best_tokens_per_problem": 220})
    assert "| 50 | 25.0 | 0.660 | 0.640 | 0.690 | 220 |" in text  # B, think tokens, pass@1, maj@4, pass@4, tokens
    assert text.startswith("**Best: maj@4 = 0.640** [0.54, 0.74] at B = 50, 220 tokens per problem (toy on "
                           "toy_arith, 8 problems, cap)")  # the first line the UI shows of the description


def test_summary_of_a_grid_names_each_pair_and_of_no_cells_says_why():
    metrics, text = _summary(_cells(pairs=(("toy", "toy_arith"), ("toy-cool", "toy_arith"))))
    assert {"toy/toy_arith/maj_at_4_B50", "toy-cool/toy_arith/best_maj_accuracy"} <= set(metrics)
    assert "(toy on toy_arith, 8 problems, cap)" in text and "(toy-cool on toy_arith, 8 problems, cap)" in text
    metrics, text = _summary(_cells().slice(0, 0))
    assert metrics == {} and "simulated engine" in text


def test_view_shows_the_sweeps_children_and_puts_maj_accuracy_first():
    state = view_state("20261205-010203-abcdef")
    assert state["searchFilter"] == "tags.sweep_id = '20261205-010203-abcdef' and tags.`ttc.kind` = 'cell'"
    charts = [c for c in state["compareRunCharts"] if not c["deleted"]]
    assert charts[0]["metricKey"] == "maj_accuracy" and charts[0]["xAxisScaleType"] == "log"
    assert state["orderByKey"] == "metrics.`budget`"  # not start time: then the UI would fold them under the parent
    sections = {s["uuid"] for s in state["compareRunSections"]}
    assert all(c["metricSectionId"] in sections for c in charts)
    assert "metrics.`maj_accuracy`" in state["selectedColumns"]
    packed = packed_view("20261205-010203-abcdef")  # as the UI's own "share view" stores it
    assert packed.startswith("deflate;") and len(packed) < 2_000  # MLflow allows 20,000 characters per tag
    assert json.loads(zlib.decompress(base64.b64decode(packed[len("deflate;"):]))) == state
    assert SHARED_VIEW == "mlflow.sharedViewState."


def test_links_open_the_model_training_view_with_charts():
    url = runs_url("http://127.0.0.1:5000", "3", "S1")
    assert url.startswith("http://127.0.0.1:5000/#/experiments/3/runs?")
    query = parse_qs(urlsplit(url.split("#", 1)[1]).query)
    assert query == {"workflowType": ["machine_learning"], "compareRunsMode": ["CHART"], "viewStateShareKey": ["S1"]}
    query = parse_qs(urlsplit(runs_url("http://h", "3", "S1", shared_view=False).split("#", 1)[1]).query)
    assert query["searchFilter"] == [view_state("S1")["searchFilter"]] and "viewStateShareKey" not in query


def test_ui_refuses_an_unknown_sweep_in_one_line(tmp_path, capsys):
    from orchestrator.cli import main

    assert main(["ui", "20990101-000000-abcdef", f"store.root={tmp_path}"]) == 2  # before any server starts
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SWEEP_ID='20990101-000000-abcdef': no sweep with that id" in err
