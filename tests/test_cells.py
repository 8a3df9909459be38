"""The cells table from sample rows: estimators per problem, vote classes, compute per problem, schema."""

import itertools
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from analysis import estimators
from analysis.cells import compute_cells, flops_per_sample, problem_estimate_se, vote_seed
from analysis.estimators import maj_at_k, pass_at_k
from orchestrator.config import ModelConfig
from orchestrator.model_files import model_shape
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA
from tests.rows import sample_row

WRONG_CLASSES = {"2": 1, "3": 2}


def _row(problem, sample, budget, correct, answer, vote_class, suffix_tokens=0, think=7, model="m"):
    return sample_row(model=model, problem_id=problem, sample_idx=sample, budget=budget, think_tokens=think,
                      suffix_tokens=suffix_tokens, prompt_tokens=11, forced=suffix_tokens > 1,
                      extracted_answer=answer, correct=correct, vote_class=vote_class)


def _samples(rng, problems=6, n=4, budgets=(0, 10)):
    rows = []
    for p in range(problems):
        for s in range(n):
            for b in budgets:
                correct = bool(rng.random() < 0.2 + 0.05 * b)
                answer = "1" if correct else rng.choice(["2", "3", None])
                rows.append(_row(f"p{p}", s, b, correct, answer, 0 if correct else WRONG_CLASSES.get(answer),
                                 suffix_tokens=int(rng.integers(0, 6)), think=min(b, 7)))
    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


SHAPE = {"parameters": 1000, "layers": 2, "hidden": 8, "heads": 3, "head_dim": 4}


def test_cells_match_the_estimators_row_by_row():
    samples = _samples(np.random.default_rng(0))
    cells = compute_cells(samples, [1, 2, 4], {"m": SHAPE})
    assert cells.schema == CELL_SCHEMA and cells.num_rows == 2 * 3 * 2
    df, raw = cells.to_pandas(), samples.to_pandas()
    for cell in df.itertuples():
        g = raw[raw.budget == cell.budget]
        per_problem = []
        for _, p in g.groupby("problem_id"):
            if cell.aggregator == "pass@k":
                per_problem.append(pass_at_k(len(p), int(p.correct.sum()), cell.n))
            else:
                votes = ["ok" if c else a if isinstance(a, str) else None
                         for c, a in zip(p.correct, p.extracted_answer)]
                per_problem.append(maj_at_k(votes, "ok", cell.n))
        assert cell.accuracy == pytest.approx(np.mean(per_problem))
        assert cell.ci_low <= cell.accuracy <= cell.ci_high
        assert cell.tokens_per_problem == pytest.approx(cell.n * (g.think_tokens + g.answer_tokens).mean())
        # FLOPs: the whole sequence, the forcing suffix included; attention is layers x heads x head_dim wide.
        t = (g.prompt_tokens + g.think_tokens + g.suffix_tokens + g.answer_tokens).to_numpy(dtype=float)
        assert cell.flops_per_problem == pytest.approx(cell.n * np.mean(2000 * t + 2 * 2 * 12 * t**2))
        assert cell.problems == 6 and cell.samples == 24


def test_unknown_shape_gives_nan_flops_and_n_beyond_samples_is_skipped():
    cells = compute_cells(_samples(np.random.default_rng(1)), [1, 8]).to_pandas()
    assert set(cells.n) == {1} and cells.flops_per_problem.isna().all()
    assert np.isnan(flops_per_sample(np.array([3]), None)).all()


def brute_maj(classes, k):
    """maj@k by enumerating every k-subset: a vote of class 0 (the reference's) wins with credit 1/t
    among t tied classes; None abstains; a subset without votes is wrong."""
    total = 0.0
    subsets = list(itertools.combinations(classes, k))
    for subset in subsets:
        votes = Counter(c for c in subset if c is not None)
        if votes:
            top = max(votes.values())
            tied = [c for c, v in votes.items() if v == top]
            total += (0 in tied) / len(tied)
    return total / len(subsets)


def test_equal_wrong_answers_vote_together():
    # The example: reference 3, answers 3, 3, 1/2, 0.5, \frac{1}{2}; the three wrong answers are
    # one number, so they form one class and outvote the two right ones.
    answers = ["3", "3", "1/2", "0.5", "\\frac{1}{2}"]
    classes = [0, 0, 1, 1, 1]
    rows = [_row("p0", i, 10, c == 0, a, c) for i, (a, c) in enumerate(zip(answers, classes))]
    cells = compute_cells(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), [1, 3, 5]).to_pandas()
    maj = {c.n: c.accuracy for c in cells[cells.aggregator == "maj@k"].itertuples()}
    assert maj[5] == pytest.approx(0.0) and maj[3] == pytest.approx(0.3)  # text votes gave 1.0 and 0.5
    for k in (1, 3, 5):
        assert maj[k] == pytest.approx(brute_maj(classes, k), abs=1e-12)


def test_vote_classes_against_enumeration_with_abstentions_and_ties():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        classes = [None if x < 0 else int(x) for x in rng.integers(-1, 4, n)]
        rows = [_row("p", i, 0, c == 0, None if c is None else f"a{c}", c) for i, c in enumerate(classes)]
        cells = compute_cells(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), range(1, n + 1)).to_pandas()
        for cell in cells[cells.aggregator == "maj@k"].itertuples():
            assert cell.accuracy == pytest.approx(brute_maj(classes, cell.n), abs=1e-12)


def test_rows_without_vote_classes_vote_with_their_text():
    # Stored before vote classes existed (null on every row): the answer text, whitespace removed, votes.
    rows = [_row("p", i, 0, a == "3", a, None) for i, a in enumerate(["3", "3", "1 /2", "1/2", "1/2"])]
    cells = compute_cells(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), [5]).to_pandas()
    assert cells[cells.aggregator == "maj@k"].accuracy.iloc[0] == 0.0  # "1/2" x3 beats "3" x2


def test_sampled_maj_at_k_varies_its_seed_and_widens_the_interval(monkeypatch):
    # Force the random-subset estimate: every (problem, k) draws with its own seed, and the Monte-Carlo
    # error of the mean widens the cell's interval in quadrature.
    monkeypatch.setattr(estimators, "EXACT_COST_LIMIT", 0)
    rng = np.random.default_rng(2)
    rows = [_row(f"p{p}", i, 0, c == 0, f"a{c}", int(c))
            for p in range(8) for i, c in enumerate(rng.integers(0, 3, 24))]
    table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
    assert vote_seed("p0", 5) != vote_seed("p1", 5) != vote_seed("p0", 7)
    assert vote_seed("p0", 5) == vote_seed("p0", 5)  # stable: no salted hash
    df = table.to_pandas()
    from analysis.cells import add_votes
    add_votes(df)
    one = df[df.problem_id == "p0"]
    value, se = problem_estimate_se(one, "maj@k", 5)
    assert se > 0
    assert (value, se) == estimators.maj_at_k_estimate(list(one.vote), 0, 5, seed=vote_seed("p0", 5))
    assert (value, se) != estimators.maj_at_k_estimate(list(one.vote), 0, 5, seed=0)
    sampled = compute_cells(table, [5]).to_pandas().set_index("aggregator")
    errors = [problem_estimate_se(g, "maj@k", 5)[1] for _, g in df.groupby("problem_id")]
    values = [problem_estimate_se(g, "maj@k", 5)[0] for _, g in df.groupby("problem_id")]
    low, high = estimators.mean_ci(np.array(values), 24)
    assert sampled.loc["maj@k", "ci_low"] < low and sampled.loc["maj@k", "ci_high"] > high
    mc = 1.959964 * np.sqrt(np.sum(np.square(errors))) / len(errors)
    mean = np.mean(values)
    assert mean - sampled.loc["maj@k", "ci_low"] == pytest.approx(np.hypot(mean - low, mc), rel=1e-4)


def _model_dir(tmp_path, config, tensors):
    """A local model directory: config.json and a safetensors file with only a header (shapes are all
    model_shape reads)."""
    header = json.dumps({name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}
                         for name, shape in tensors.items()}).encode()
    (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return ModelConfig(name="wide", path=str(tmp_path))


def test_model_shape_reads_heads_and_head_dim(tmp_path):
    # Wide heads: 8 heads x 64 = 512 attention width on a hidden size of 256 (as in Gemma), and 2 KV heads.
    config = {"num_hidden_layers": 3, "hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 2,
              "head_dim": 64}
    model = _model_dir(tmp_path, config, {"embed": [100, 256], "q": [512, 256]})
    shape = model_shape(model)
    assert shape == {"parameters": 100 * 256 + 512 * 256, "layers": 3, "hidden": 256, "heads": 8, "head_dim": 64}
    t = np.array([10.0, 100.0])
    np.testing.assert_allclose(flops_per_sample(t, shape), 2 * shape["parameters"] * t + 2 * 3 * 512 * t**2)
    # Without head_dim: hidden / heads.
    del config["head_dim"]
    (tmp_path / "config.json").write_text(json.dumps({"text_config": config}))
    assert model_shape(model)["head_dim"] == 32


def test_the_toy_reasoners_shape():
    shape = model_shape(ModelConfig(name="toy", path="models/toy-reasoner"))
    assert shape is not None and (shape["layers"], shape["heads"], shape["head_dim"]) == (4, 4, 32)
