"""The headline figure's curves, the bill columns and the cheapest-(B, N) table, on hand-made cells and rows.

Fast tier: a base model that stays flat and a reasoner that climbs, written down cell by cell, so the
frontier, the serial and the parallel curves, the cheapest cells per accuracy level and the cost of the
top of a curve against its bottom are known by hand; the bill columns of `compute_cells` from sample rows
at a GPU-hour price and at token prices; the default run's grid of two models.
"""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.cells import Pricing, compute_cells, pricing_of, sample_bill
from analysis.frontier import headline_curves
from analysis.plots import TOKENS_LABEL, figure_headline, plot_headline
from analysis.report import analyze, cheapest_cells, cost_span
from orchestrator.compose import compose, compose_grid
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA
from orchestrator.store import Store
from tests.rows import sample_row

# (budget, n) -> maj@k accuracy. tokens per problem = n x (budget + 4); the reasoner climbs with B and N,
# the base is flat in B and gains a little from N.
REASONER = {(0, 1): 0.12, (0, 4): 0.12, (0, 16): 0.11, (20, 1): 0.40, (20, 4): 0.55, (20, 16): 0.66,
            (50, 1): 0.69, (50, 4): 0.90, (50, 16): 1.00}
BASE = {(0, 1): 0.30, (0, 4): 0.36, (0, 16): 0.40, (20, 1): 0.30, (20, 4): 0.35, (20, 16): 0.41,
        (50, 1): 0.29, (50, 4): 0.36, (50, 16): 0.40}


def hand_cells(usd_per_token: float | None = 0.001) -> pd.DataFrame:
    rows = []
    for model, table in (("reasoner", REASONER), ("base", BASE)):
        for (budget, n), acc in table.items():
            tokens = float(n * (budget + 4))
            for aggregator in ("maj@k", "pass@k"):
                rows.append({"model": model, "dataset": "arith", "budget": budget, "strategy": "cap", "n": n,
                             "aggregator": aggregator,
                             "accuracy": acc if aggregator == "maj@k" else min(1.0, acc + 0.1),
                             "ci_low": acc - 0.05, "ci_high": acc + 0.05, "mean_think_tokens": float(budget),
                             "tokens_per_problem": tokens, "flops_per_problem": 1e6 * tokens, "problems": 100,
                             "samples": 1600, "engine_seconds_per_problem": tokens / 1000.0,
                             "usd_per_1k_queries": tokens * usd_per_token if usd_per_token else math.nan})
    return pd.DataFrame(rows)


def _points(curves, model, curve):
    c = curves[(curves.model == model) & (curves.curve == curve)]
    return list(zip(c.budget, c.n))


def test_headline_curves_from_hand_made_cells():
    curves = headline_curves(hand_cells())
    assert _points(curves, "reasoner", "serial") == [(0, 1), (20, 1), (50, 1)]
    assert _points(curves, "reasoner", "parallel") == [(50, 1), (50, 4), (50, 16)]  # the largest budget
    # Frontier: tokens 4 (0.12), 24 (0.40), 54 (0.69), 96 (0.66: beaten), 216 (0.90), 864 (1.00).
    assert _points(curves, "reasoner", "frontier") == [(0, 1), (20, 1), (50, 1), (50, 4), (50, 16)]
    # The base: B=0, N=1 (0.30) then only more votes beat it: (0, 4) 0.36 at 16 tokens, (0, 16) 0.40 at 64,
    # (20, 16) 0.41 at 384 tokens.
    assert _points(curves, "base", "frontier") == [(0, 1), (0, 4), (0, 16), (20, 16)]
    front = curves[(curves.model == "base") & (curves.curve == "frontier")]
    assert list(front.tokens_per_problem) == sorted(front.tokens_per_problem)
    assert (np.diff(front.accuracy) > 0).all()
    fixed = headline_curves(hand_cells(), parallel_budget=20)
    assert _points(fixed, "base", "parallel") == [(20, 1), (20, 4), (20, 16)]
    assert set(headline_curves(hand_cells(), aggregator="pass@k").curve) == {"frontier", "serial", "parallel"}


def test_headline_figure_draws_every_model_on_one_log_axis(tmp_path):
    fig = figure_headline(hand_cells())
    [ax] = [a for a in fig.axes if a.get_visible()]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == TOKENS_LABEL
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "base" in labels and "reasoner" in labels
    assert any(label.startswith("serial") for label in labels) and any("B=50, N rises" in lab for lab in labels)
    # 3 lines per model (frontier step, serial, parallel), each at its cells' compute.
    xs = sorted(float(x) for line in ax.get_lines() for x in line.get_xdata())
    assert min(xs) == 4.0 and max(xs) == 864.0
    paths = plot_headline(hand_cells(), tmp_path / "plots" / "headline")
    assert [p.name for p in paths] == ["headline.png", "headline.svg"] and all(p.stat().st_size for p in paths)
    empty = figure_headline(CELL_SCHEMA.empty_table())
    assert empty.axes[0].texts[0].get_text() == "no maj@k cells to plot"


def test_cheapest_cells_per_accuracy_level_and_top_against_bottom():
    cells = hand_cells()
    table = cheapest_cells(cells).set_index(["model", "level"])
    assert (table.cost_column == "usd_per_1k_queries").all()
    r = table.loc["reasoner"]
    assert (r.loc[0.1, "budget"], r.loc[0.1, "n"]) == (0, 1)
    assert (r.loc[0.5, "budget"], r.loc[0.5, "n"]) == (50, 1)  # 54 tokens; (20, 4) reaches 0.55 at 96
    assert (r.loc[0.7, "budget"], r.loc[0.7, "n"]) == (50, 4)
    assert (r.loc[1.0, "budget"], r.loc[1.0, "n"]) == (50, 16)
    assert r.loc[1.0, "times_bottom"] == pytest.approx(864 / 4)
    b = table.loc["base"]
    assert (b.loc[0.4, "budget"], b.loc[0.4, "n"]) == (0, 16)
    assert b.loc[0.5, "budget"] is None or math.isnan(b.loc[0.5, "budget"])  # never reached
    span = cost_span(cells).set_index("model")
    assert span.loc["reasoner", "ratio"] == pytest.approx(216.0)
    assert (span.loc["reasoner", "top_budget"], span.loc["reasoner", "top_n"]) == (50, 16)
    assert (span.loc["base", "top_budget"], span.loc["base", "top_n"]) == (20, 16)
    assert span.loc["base", "ratio"] == pytest.approx(384 / 4)
    # Without dollars the bill falls back to tokens (proportional at a GPU-hour price).
    assert (cheapest_cells(hand_cells(usd_per_token=None)).cost_column == "tokens_per_problem").all()


def _sample(budget, think, answer, forced, correct, problem="p0", sample=0, suffix=1):
    return sample_row(problem_id=problem, sample_idx=sample, budget=budget, think_tokens=think, answer_tokens=answer,
                      suffix_tokens=suffix, forced=forced, extracted_answer="1", correct=correct,
                      vote_class=0 if correct else 1, latency_s=0.5)


def bill_samples() -> pa.Table:
    rows = []
    for p in ("p0", "p1"):
        for s in range(2):
            # B=0: forced at once (suffix 1), 4 answer tokens. B=8: sample 0 thinks 8 and is forced, sample 1
            # closes thinking after 6 by itself (the delimiter, 1 token, is generated).
            rows.append(_sample(0, 0, 4, True, False, p, s))
            rows.append(_sample(8, 8 if s == 0 else 6, 4, s == 0, True, p, s))
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def test_bill_columns_at_a_gpu_hour_price():
    pricing = {"m": Pricing(tokens_per_s=100.0, gpus=2, gpu_hour_usd=3.6)}
    cells = compute_cells(bill_samples(), [1, 2], pricing=pricing).to_pandas()
    assert cells.columns.tolist() == CELL_SCHEMA.names
    c = cells[(cells.aggregator == "maj@k")].set_index(["budget", "n"])
    # B=8: generated (8+4 + 6+4) / 2 = 11 tokens per sample -> 0.11 engine-s; 2 GPUs at $3.6/h = $0.002/s.
    assert c.loc[(8, 1), "tokens_per_problem"] == pytest.approx(11.0)
    assert c.loc[(8, 1), "engine_seconds_per_problem"] == pytest.approx(0.11)
    assert c.loc[(8, 2), "engine_seconds_per_problem"] == pytest.approx(0.22)
    assert c.loc[(8, 1), "usd_per_1k_queries"] == pytest.approx(1000 * 0.11 * 2 * 3.6 / 3600)
    assert c.loc[(0, 2), "usd_per_1k_queries"] == pytest.approx(1000 * 2 * 0.04 * 2 * 3.6 / 3600)
    assert cells.engine_seconds_per_problem.notna().all()
    without = compute_cells(bill_samples(), [1]).to_pandas()
    assert without.engine_seconds_per_problem.isna().all() and without.usd_per_1k_queries.isna().all()


def test_bill_columns_at_token_prices():
    price = {"input": 1.0, "output": 4.0, "cached_input": 0.1}
    rows = bill_samples().to_pandas()
    at8 = rows[rows.budget == 8]
    bill = sample_bill(at8, Pricing(tokens_per_s=100.0, gpus=1, gpu_hour_usd=2.0, price=price))
    # Forced sample: input 10 + 1 (suffix), output 8 + 4. Natural: input 10, output 6 + 1 (delimiter) + 4.
    per_sample = ((11 * 1.0 + 12 * 4.0) + (10 * 1.0 + 11 * 4.0)) / 2 / 1e6
    assert bill["usd_per_1k_queries"] == pytest.approx(1000 * per_sample)
    assert bill["engine_seconds_per_problem"] == pytest.approx(0.11)
    assert math.isnan(sample_bill(at8, Pricing())["engine_seconds_per_problem"])
    assert math.isnan(sample_bill(at8, None)["usd_per_1k_queries"])


def test_pricing_of_reads_the_cost_section_and_the_model():
    cfg = compose(["cost.gpu_hour_usd=4.5"])
    pricing = pricing_of([cfg])[cfg.model.name]
    assert pricing.gpu_hour_usd == 4.5 and pricing.tokens_per_s == cfg.model.est_tokens_per_s
    assert pricing.gpus == cfg.model.tensor_parallel_size
    assert pricing_of([cfg], {cfg.model.name: 1234.0})[cfg.model.name].tokens_per_s == 1234.0
    assert compose([]).cost.gpu_hour_usd == 2.0  # the documented default (conf/config.yaml)


def test_analyze_reports_the_bill_and_the_headline_figure(tmp_path):
    store = Store(tmp_path)
    store.create_sweep("s1", "{}\n", [])
    store.write_cells("s1", pa.Table.from_pandas(hand_cells(), schema=CELL_SCHEMA, preserve_index=False))
    result = analyze(store, "s1", bootstrap=False)
    assert {p.name for p in result.plot_paths} >= {"headline.png", "headline.svg"}
    report = result.report_path.read_text()
    assert "![accuracy against test-time compute, every model](plots/headline.png)" in report
    assert "### The bill: the cheapest (B, N) reaching each maj@k level" in report
    assert "costs **216×** one at the bottom (B=0, N=1: 0.120)" in report
    assert "| 0.5 | not reached |" in report


def test_the_default_run_sweeps_the_reasoner_and_the_base():
    assert [(c.model.name, c.dataset.name) for c in compose_grid([])] == [("toy", "toy_arith"),
                                                                         ("toy-base", "toy_arith")]
    assert [c.model.name for c in compose_grid(["sweep=debug"])] == ["toy", "toy-base"]
    # The command line chooses when it names a model in any way, or a recipe (which may have its own grid).
    assert [c.model.name for c in compose_grid(["model=toy-cool"])] == ["toy-cool"]
    assert [c.model.name for c in compose_grid(["model=toy,toy-cool"])] == ["toy", "toy-cool"]
    assert [c.model.name for c in compose_grid(["model.temperature=1.0"])] == ["toy"]
    assert [c.model.name for c in compose_grid(["experiment=toy_scaling"])] == ["toy"]
    pairs = [(c.model.name, c.dataset.name) for c in compose_grid(["experiment=base_vs_reasoner_qwen_1.5b"])]
    assert pairs == [("qwen2.5-math-1.5b-instruct", "math500"), ("qwen2.5-math-1.5b-instruct", "aime2024"),
                     ("r1-distill-qwen-1.5b", "math500"), ("r1-distill-qwen-1.5b", "aime2024")]
    assert compose([]).model.name == "toy"  # one Config is one (model, dataset): `grid` is compose_grid's
