"""Issue 17's plot: with a verifier, the sweep's accuracy-vs-compute plot compares pass@k, maj@k, bon@k and
wmaj@k on one compute axis, FLOPs per problem with the verifier's prefill included; without one it is unchanged.

Scored sample rows go through the real store (Parquet) and `compute_cells`; the figure is read back.
"""

import numpy as np
import pyarrow as pa
import pytest

from analysis.cells import compute_cells
from analysis.plots import COMPARED_AGGREGATORS, figure_accuracy_vs_compute, plot_accuracy_vs_compute
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.store import Store
from tests.rows import sample_row

SHAPE = {"parameters": 660_000, "layers": 4, "hidden": 128, "heads": 4, "head_dim": 32}
VERIFIER = {"parameters": 330_000, "layers": 2, "hidden": 128, "heads": 4, "head_dim": 32}
NS, BUDGETS = [1, 2, 4, 8], (0, 30)


def scored_samples(scored: bool = True) -> pa.Table:
    """12 problems x 8 samples x 2 budgets; wrong answers split over two classes; the verifier (when
    `scored`) scores right answers higher on average, and leaves rows without an answer unscored."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(12):
        for s in range(8):
            for b in BUDGETS:
                correct = bool(rng.random() < (0.3 if b == 0 else 0.55))
                answer = "1" if correct else rng.choice(["2", "3", None])
                score = float(np.clip(rng.normal(0.7 if correct else 0.35, 0.2), 0, 1)) \
                    if scored and answer is not None else None
                rows.append(sample_row(model="toy", dataset="toy_arith", problem_id=f"p{p}", sample_idx=s, budget=b,
                                       think_tokens=b, answer_tokens=4, suffix_tokens=3, prompt_tokens=12,
                                       forced=b > 0, extracted_answer=answer, correct=correct,
                                       vote_class=0 if correct else {"2": 1, "3": 2}.get(answer), score=score))
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def stored_cells(tmp_path, scored: bool) -> pa.Table:
    """The cells of `scored_samples`, through a unit file in a real store and its cells.parquet."""
    store = Store(tmp_path)
    store.create_sweep("s1", "sweep: synthetic\n")
    path = store.write_unit("toy", "toy_arith", "u", scored_samples(scored))
    store.record_unit("s1", {"unit_key": "u", "path": str(path.relative_to(store.root)), "rows": 192,
                             "model": "toy", "dataset": "toy_arith"})
    cells = compute_cells(store.sweep_samples("s1"), NS, {"toy": SHAPE}, verifier_shape=VERIFIER if scored else None)
    store.write_cells("s1", cells)
    return store.read_cells("s1")


def test_with_a_verifier_the_four_aggregators_share_one_flops_axis(tmp_path):
    cells = stored_cells(tmp_path, scored=True)
    df = cells.to_pandas()
    assert set(df.aggregator) == set(COMPARED_AGGREGATORS)
    out = plot_accuracy_vs_compute(cells, tmp_path / "plots" / "accuracy_vs_compute.png")
    assert out.read_bytes().startswith(b"\x89PNG") and out.with_suffix(".svg").stat().st_size > 0
    assert not list(out.parent.glob(".*.tmp"))

    fig = figure_accuracy_vs_compute(cells)
    # maj@k and pass@k panels as without a verifier, then the comparison panel.
    assert [ax.get_ylabel() for ax in fig.axes] == ["maj@k accuracy", "pass@k accuracy", "accuracy"]
    compare = fig.axes[-1]
    assert compare.get_xscale() == "log" and "FLOPs per problem, verifier's included" in compare.get_xlabel()
    assert "B=30" in compare.get_title()
    series = {line.get_label(): line for line in compare.get_lines() if not line.get_label().startswith("_")}
    assert list(series) == list(COMPARED_AGGREGATORS)
    top = df[df.budget == 30]
    for aggregator, line in series.items():
        cells_of = top[top.aggregator == aggregator].sort_values("n")
        assert list(line.get_xdata()) == pytest.approx(list(cells_of.flops_per_problem))
        assert list(line.get_ydata()) == pytest.approx(list(cells_of.accuracy))
    # Equal N, more compute: the verifier's prefill puts bon@k and wmaj@k to the right of maj@k.
    for n in NS:
        at = top[top.n == n].set_index("aggregator").flops_per_problem
        assert at["bon@k"] == at["wmaj@k"] > at["maj@k"] == at["pass@k"]
    legend = [t.get_text() for t in compare.get_legend().get_texts()]
    assert legend == list(COMPARED_AGGREGATORS)


def test_without_a_verifier_the_plot_is_unchanged(tmp_path):
    cells = stored_cells(tmp_path, scored=False)
    assert set(cells.column("aggregator").to_pylist()) == {"pass@k", "maj@k"}
    fig = figure_accuracy_vs_compute(cells)
    assert [ax.get_ylabel() for ax in fig.axes] == ["maj@k accuracy", "pass@k accuracy"]
    assert all("tokens per problem" in ax.get_xlabel() for ax in fig.axes)
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {f"N={n} (budgets)" for n in NS} | {f"B={b} (N)" for b in BUDGETS} == labels
