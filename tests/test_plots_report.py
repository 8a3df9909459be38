"""Plots and `analyze`: a synthetic sweep in a real store, fitted, plotted and reported.

The sweep's accuracy follows a known logistic in log tokens, so the serial fit must find its
parameters; the figures are read back (axes, labels, scales); the iso-compute frontier is
checked on a hand-made cells table; degenerate sweeps (too few points, constant accuracy,
unknown FLOPs, no cells, lost samples) are recorded instead of raising.
"""

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import special

from analysis.cells import compute_cells
from analysis.frontier import iso_compute_frontier
from analysis.plots import TOKENS_LABEL, figure_coverage, figure_frontier, figure_o1, plot_accuracy_vs_compute, plot_o1
from analysis.report import analyze
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA
from orchestrator.store import Store
from tests.rows import sample_row

# Accuracy of one sample at t generated tokens: lo + (hi - lo) * expit(slope * (log10 t - mid)),
# except on the problems the model never solves (realistic: maj@k then plateaus below 1).
TRUTH = {"lo": 0.1, "hi": 0.9, "slope": 3.0, "mid": math.log10(40)}
PROBLEMS, UNSOLVABLE, N_MAX = 40, 5, 16
BUDGETS = (0, 4, 8, 16, 28, 44, 60, 124, 252, 508)  # + 4 answer tokens: 4 to 512 generated tokens
NS = (1, 2, 4, 8, 16)
ANSWER_TOKENS = 4
SHAPES = {"toy": {"parameters": 660_000, "layers": 4, "hidden": 128, "heads": 4, "head_dim": 32}}  # "mini": NaN FLOPs


def _row(model, dataset, problem, sample, budget, correct, wrong):
    return sample_row(unit_key=f"{model}-{dataset}", model=model, dataset=dataset, problem_id=f"p{problem}",
                      sample_idx=sample, budget=budget, think_tokens=budget, answer_tokens=ANSWER_TOKENS,
                      suffix_tokens=3 if budget > 0 else 1, prompt_tokens=12, forced=budget > 0,
                      extracted_answer="0" if correct else wrong, correct=correct,
                      vote_class=0 if correct else int(wrong), latency_s=0.01)


def scaling_samples(seed=0, budgets=BUDGETS) -> pa.Table:
    """toy on arith: accuracy rises with the budget along TRUTH; wrong answers spread over 9 values."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(PROBLEMS):
        for s in range(N_MAX):
            for b in budgets:
                t = b + ANSWER_TOKENS
                chance = TRUTH["lo"] + (TRUTH["hi"] - TRUTH["lo"]) * special.expit(
                    TRUTH["slope"] * (math.log10(t) - TRUTH["mid"]))
                correct = p >= UNSOLVABLE and bool(rng.random() < chance)
                rows.append(_row("toy", "arith", p, s, b, correct, str(rng.integers(1, 10))))
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def degenerate_samples() -> pa.Table:
    """mini on tiny: two budgets only (too few points for the serial curve); at B=8 every sample is
    right (constant accuracy); 4 samples per problem (N=8, 16 cannot be estimated)."""
    rows = [_row("mini", "tiny", p, s, b, b == 8 or s % 2 == 0, "7")
            for p in range(4) for s in range(4) for b in (0, 8)]
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def write_sweep(store: Store, sweep_id: str, tables: list[pa.Table]) -> None:
    """A sweep as `ttc sweep` leaves it: units in the store, a manifest, the cells table."""
    store.create_sweep(sweep_id, "sweep: synthetic\n")
    for t in tables:
        model, dataset = t["model"][0].as_py(), t["dataset"][0].as_py()
        path = store.write_unit(model, dataset, f"{model}-{dataset}", t)
        store.record_unit(sweep_id, {"unit_key": f"{model}-{dataset}", "path": str(path.relative_to(store.root)),
                                     "rows": t.num_rows, "model": model, "dataset": dataset})
    store.write_cells(sweep_id, compute_cells(store.sweep_samples(sweep_id), NS, SHAPES))


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    write_sweep(store, "s1", [scaling_samples(), degenerate_samples()])
    return store, analyze(store.root, "s1", resamples=10)  # few resamples: CIs are not checked for width


def _curve(fits, **key):
    [curve] = [c for c in fits["curves"] if all(c[k] == v for k, v in key.items())]
    return curve


def test_fits_json_holds_each_curve_with_the_generating_parameters(analyzed):
    store, result = analyzed
    fits = json.loads(result.fits_path.read_text())
    assert result.fits_path == store.sweep_dir("s1") / "fits.json"
    serial = _curve(fits, model="toy", curve="serial")
    assert serial["chosen"] == "logistic_log" and set(serial["forms"]) == {"logistic_log", "power_law_error"}
    fit = serial["forms"]["logistic_log"]
    assert fit["ci_method"] == "bootstrap"
    # The mean over problems is the logistic scaled by the solvable share of problems.
    solvable = (PROBLEMS - UNSOLVABLE) / PROBLEMS
    # Tolerances: about twice the spread of the estimates over seeds 0-9 (lo 0.03-0.13, hi 0.76-0.83,
    # slope 2.4-3.6, mid 1.55-1.64); seed 0 gives 0.10, 0.79, 3.0, 1.64.
    assert fit["params"]["lo"] == pytest.approx(TRUTH["lo"] * solvable, abs=0.06)
    assert fit["params"]["hi"] == pytest.approx(TRUTH["hi"] * solvable, abs=0.06)
    assert fit["params"]["slope"] == pytest.approx(TRUTH["slope"], abs=1.0)
    assert fit["params"]["mid"] == pytest.approx(TRUTH["mid"], abs=0.1)
    low, high = fit["ci"]["hi"]
    assert low <= fit["params"]["hi"] <= high
    assert serial["forms"]["logistic_log"]["extrapolation_error"] < 0.15
    assert serial["points"]["x"] == [b + ANSWER_TOKENS for b in BUDGETS]
    for b in BUDGETS:
        coverage = _curve(fits, model="toy", curve="coverage", budget=b)
        assert coverage["chosen"] == "exp_power_law" and coverage["aggregator"] == "pass@k"
        assert coverage["points"]["x"] == list(NS)
        parallel = _curve(fits, model="toy", curve="parallel", budget=b)
        assert parallel["chosen"] in ("logistic_log", "power_law_error") and parallel["aggregator"] == "maj@k"
    assert len(fits["frontier"]) > 0


def test_degenerate_curves_are_recorded_not_raised(analyzed):
    _, result = analyzed
    fits = json.loads(result.fits_path.read_text())
    serial = _curve(fits, model="mini", curve="serial")
    assert serial["status"] == "not fitted" and serial["chosen"] is None
    assert "2 points" in serial["errors"]["logistic_log"] and "2 points" in serial["errors"]["power_law_error"]
    constant = _curve(fits, model="mini", curve="parallel", budget=8)
    assert constant["status"] == "not fitted" and "constant" in constant["notes"][0]
    # 3 points (N = 1, 2, 4) for the 2-parameter exp_power_law: fitted, but AICc is undefined (3 - 2 - 1 = 0),
    # so no form is chosen, fits.json says why, and no fitted curve is drawn.
    unchosen = _curve(fits, model="mini", curve="coverage", budget=0)
    assert unchosen["status"] == "no form chosen" and unchosen["chosen"] is None
    assert "exp_power_law" in unchosen["forms"] and unchosen["forms"]["exp_power_law"]["aicc"] is None
    assert "undefined" in unchosen["reason"] and "undefined" in unchosen["notes"][-1]
    report = result.report_path.read_text()
    assert "accuracy is constant at 1.000" in report and "n/a" in report  # NaN FLOPs of mini


def test_report_names_the_chosen_form_its_parameters_and_the_best_splits(analyzed):
    _, result = analyzed
    report = result.report_path.read_text()
    assert report.startswith("# Test-time-compute scaling: sweep `s1`")
    for text in ("## toy on arith", "## mini on tiny", "**logistic_log** chosen: lowest AICc", "held-out error",
                 "hi = ", "Best split of a compute budget", "(plots/o1.png)", "| 508 |", "| AICc |",
                 "bootstrap, 10 resamples, ", "only where it is defined", "| 0 | 3 | none | no form can be chosen"):
        assert text in report
    frontier = result.frontier[result.frontier.model == "toy"]
    assert frontier.accuracy.is_monotonic_increasing and frontier.tokens_per_problem.is_monotonic_increasing


def test_every_plot_is_written_as_png_and_svg(analyzed):
    store, result = analyzed
    plots = store.plots_dir("s1")
    assert sorted(p.name for p in result.plot_paths) == sorted(
        f"{stem}.{ext}" for stem in ("headline", "o1", "coverage", "frontier") for ext in ("png", "svg"))
    for path in result.plot_paths:
        assert path.parent == plots and path.stat().st_size > 1000
        head = path.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in path.read_bytes()[:2000]
    assert set(result.paths) == {result.fits_path, result.report_path, *result.plot_paths}
    assert not list(store.sweep_dir("s1").rglob("*.tmp"))


def test_figures_read_back_axes_titles_scales_and_fits(analyzed):
    store, result = analyzed
    cells, fits = store.read_cells("s1"), json.loads(result.fits_path.read_text())

    o1 = figure_o1(cells, fits)
    panels = [ax for ax in o1.axes if ax.get_title()]  # the others are colour bars
    assert [ax.get_title() for ax in panels] == ["mini on tiny: maj@k vs test-time compute",
                                                 "toy on arith: maj@k vs test-time compute"]
    ax = panels[1]
    assert ax.get_xlabel() == TOKENS_LABEL == "generated tokens per problem (log scale)"
    assert ax.get_ylabel() == "maj@k accuracy" and ax.get_xscale() == "log"
    serial = [line for line in ax.get_lines() if line.get_color() == "black" and line.get_linestyle() == "-"]
    assert list(serial[0].get_xdata()) == [b + ANSWER_TOKENS for b in BUDGETS]
    assert any(line.get_linestyle() == ":" for line in ax.get_lines())  # fits drawn
    assert {t.get_text() for t in ax.texts} >= {f"B={b}" for b in BUDGETS}  # points labelled directly
    assert any("serial" in t.get_text() for t in ax.get_legend().get_texts())
    assert any(cb.get_ylabel() == "thinking budget B (tokens)" for cb in o1.axes if not cb.get_title())

    coverage = [ax for ax in figure_coverage(cells, fits).axes if ax.get_title()]
    # mini's coverage curves: one with no form chosen (3 points), one constant: no fitted curve drawn.
    assert coverage[0].get_title() == "mini on tiny: coverage vs samples"
    assert not any(line.get_linestyle() == ":" for line in coverage[0].get_lines())
    assert coverage[1].get_title() == "toy on arith: coverage vs samples"
    assert coverage[1].get_xlabel() == "samples per problem k (log scale)"
    assert coverage[1].get_ylabel() == "coverage: pass@k" and coverage[1].get_xscale() == "log"

    frontier = figure_frontier(cells).axes[1]
    assert frontier.get_title() == "toy on arith: best (B, N) split per compute (maj@k)"
    assert frontier.get_xlabel() == TOKENS_LABEL and frontier.get_xscale() == "log"
    assert any(t.get_text().startswith("B=") and ", N=" in t.get_text() for t in frontier.texts)

    pass_o1 = [ax for ax in figure_o1(cells, fits, aggregator="pass@k").axes if ax.get_title()]
    assert pass_o1[1].get_ylabel() == "pass@k accuracy"


def _cell(budget, n, tokens, accuracy, aggregator="maj@k"):
    return {"model": "m", "dataset": "d", "budget": budget, "strategy": "cap", "n": n, "aggregator": aggregator,
            "accuracy": accuracy, "ci_low": accuracy - 0.05, "ci_high": accuracy + 0.05,
            "mean_think_tokens": float(budget), "tokens_per_problem": tokens, "flops_per_problem": float("nan"),
            "problems": 10, "samples": 40}


def test_iso_compute_frontier_picks_the_best_split_at_each_compute_level():
    cells = pa.Table.from_pylist([
        _cell(10, 1, 10.0, 0.30), _cell(10, 2, 20.0, 0.35), _cell(10, 4, 40.0, 0.50),
        _cell(20, 1, 20.0, 0.45), _cell(20, 2, 40.0, 0.55), _cell(20, 4, 80.0, 0.60),
        _cell(40, 1, 40.0, 0.52), _cell(40, 2, 80.0, 0.58),
        _cell(40, 4, 160.0, 0.60),                    # ties the best at more compute: the cheaper one stays
        _cell(10, 4, 40.0, 0.99, aggregator="pass@k"),  # another aggregator: ignored
        _cell(80, 1, float("nan"), 0.99),              # unknown compute: ignored
    ], schema=CELL_SCHEMA)
    frontier = iso_compute_frontier(cells)
    got = [(r.tokens_per_problem, r.budget, r.n, r.accuracy, r.cell_tokens_per_problem) for r in frontier.itertuples()]
    assert got == [(10.0, 10, 1, 0.30, 10.0), (20.0, 20, 1, 0.45, 20.0), (40.0, 20, 2, 0.55, 40.0),
                   (80.0, 20, 4, 0.60, 80.0), (160.0, 20, 4, 0.60, 80.0)]
    by_pass = iso_compute_frontier(cells, aggregator="pass@k")
    assert list(by_pass.accuracy) == [0.99]
    assert iso_compute_frontier(cells.slice(0, 0)).empty


def test_empty_cells_lost_samples_and_unknown_sweeps(tmp_path):
    store = Store(tmp_path)
    store.create_sweep("empty", "")
    store.write_cells("empty", CELL_SCHEMA.empty_table())
    result = analyze(store, "empty")
    assert json.loads(result.fits_path.read_text())["curves"] == []
    assert "no cells" in result.report_path.read_text()
    assert all(p.is_file() for p in result.plot_paths)

    # Samples deleted after the cells were computed: the fits fall back to covariance CIs. (The toy sweep at one
    # budget: its parallel and coverage curves are fitted, cheap to fit twice; the degenerate one has too few
    # points for any form to be chosen.)
    write_sweep(store, "lost", [scaling_samples(seed=1, budgets=(0,))])
    for unit in (tmp_path / "samples").rglob("*.parquet"):
        unit.unlink()
    fits = json.loads(analyze(store, "lost").fits_path.read_text())
    fitted = [c for c in fits["curves"] if c["chosen"]]
    assert fitted and all(c["forms"][c["chosen"]]["ci_method"] == "covariance" for c in fitted)
    assert all(any("samples unreadable" in n for n in c["notes"]) for c in fitted)

    with pytest.raises(ValueError, match="aggregator"):
        analyze(store, "empty", aggregator="best-of-n")
    with pytest.raises(ValueError, match="criterion: unknown 'aic'; allowed: aicc, extrapolation"):
        analyze(store, "empty", criterion="aic")

    # Chosen by held-out extrapolation instead of AICc: every fitted curve says so.
    by_extrapolation = json.loads(analyze(store, "lost", criterion="extrapolation").fits_path.read_text())
    assert by_extrapolation["criterion"] == "extrapolation"
    chosen = [c for c in by_extrapolation["curves"] if c["chosen"]]
    assert chosen and all(c["criterion"] == "extrapolation" and c["chosen"] == c["by_extrapolation"] for c in chosen)
    with pytest.raises(FileNotFoundError, match="nope"):
        analyze(store, "nope")
    store.create_sweep("unfinished", "")
    with pytest.raises(FileNotFoundError, match="cells"):
        analyze(store, "unfinished")


def test_plot_functions_take_degenerate_tables(tmp_path):
    nan_compute = pd.DataFrame([_cell(0, 1, float("nan"), 0.5), _cell(8, 1, 0.0, 0.6)])
    for cells in (CELL_SCHEMA.empty_table(), nan_compute):
        assert figure_o1(cells).axes and figure_coverage(cells).axes and figure_frontier(cells).axes
    paths = plot_o1(CELL_SCHEMA.empty_table(), None, tmp_path / "o1.png")
    assert [p.name for p in paths] == ["o1.png", "o1.svg"]


def test_the_sweeps_quick_plot_still_writes_its_png(tmp_path):
    cells = pa.Table.from_pylist([_cell(10, 1, 10.0, 0.3), _cell(10, 2, 20.0, 0.4), _cell(20, 1, 20.0, 0.5)],
                                 schema=CELL_SCHEMA)
    out = plot_accuracy_vs_compute(cells, tmp_path / "plots" / "accuracy_vs_compute.png")
    assert out.is_file() and out.read_bytes().startswith(b"\x89PNG")
    # Through save_figure, like every figure: an SVG beside it, nothing half-written left.
    assert b"<svg" in out.with_suffix(".svg").read_bytes()[:2000] and not list(out.parent.glob(".*.tmp"))
