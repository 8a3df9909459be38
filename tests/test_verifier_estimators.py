"""The verifier estimators (best-of-k, weighted majority) against brute-force enumeration of subsets."""

import itertools
import random
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from analysis.estimators import (
    MC_SUBSETS,
    WMAJ_EXACT_SUBSETS,
    best_of_k,
    maj_at_k,
    pass_at_k,
    weighted_maj_at_k,
    weighted_maj_at_k_estimate,
)


def brute_best(scores, correct, k):
    """Mean over all k-subsets of the fraction correct among the subset's top-scored samples."""
    total, subsets = Fraction(0), list(itertools.combinations(range(len(scores)), k))
    rank = [float("-inf") if s is None else s for s in scores]
    for s in subsets:
        top = max(rank[i] for i in s)
        tied = [i for i in s if rank[i] == top]
        total += Fraction(sum(correct[i] for i in tied), len(tied))
    return float(total / len(subsets))


def brute_wmaj(answers, scores, correct, k):
    """Mean over all k-subsets of the correct class's share of the classes tied at the highest total."""
    total, subsets = Fraction(0), list(itertools.combinations(range(len(answers)), k))
    for s in subsets:
        sums = defaultdict(Fraction)
        for i in s:
            if answers[i] is not None and scores[i] is not None:
                sums[answers[i]] += Fraction(scores[i])  # exact: no rounding can split a tie
        if sums:
            top = max(sums.values())
            tied = [a for a, v in sums.items() if v == top]
            total += Fraction(int(correct in tied), len(tied))
    return float(total / len(subsets))


def test_best_of_k_matches_enumeration_with_ties_and_unscored():
    rng = random.Random(0)
    for _ in range(400):
        n = rng.randint(1, 10)
        # Few distinct scores, so ties at the top are common; None ranks below every score.
        scores = [rng.choice([None, 0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(n)]
        correct = [rng.random() < 0.4 for _ in range(n)]
        k = rng.randint(1, n)
        assert best_of_k(scores, correct, k) == pytest.approx(brute_best(scores, correct, k), abs=1e-12)


def test_best_of_k_matches_enumeration_on_distinct_scores():
    rng = random.Random(1)
    for _ in range(100):
        n = rng.randint(1, 12)
        scores = [rng.random() for _ in range(n)]
        correct = [rng.random() < 0.5 for _ in range(n)]
        k = rng.randint(1, n)
        assert best_of_k(scores, correct, k) == pytest.approx(brute_best(scores, correct, k), abs=1e-12)


def test_best_of_k_edges():
    correct = [True, False, True, False, False]
    assert best_of_k([0.1] * 5, correct, 3) == pytest.approx(0.4)  # equal scores: best-of-k is pass@1
    assert best_of_k([0.3, 0.2, 0.9, 0.1, 0.0], correct, 5) == 1.0  # the whole set: its top sample
    # Random scores: best-of-1 is pass@1 whatever the scores.
    assert best_of_k([0.3, 0.2, 0.9, 0.1, 0.0], correct, 1) == pytest.approx(pass_at_k(5, 2, 1))
    # A verifier that ranks every correct sample first makes best-of-k equal pass@k.
    perfect = [0.9, 0.1, 0.8, 0.2, 0.3]
    for k in range(1, 6):
        assert best_of_k(perfect, correct, k) == pytest.approx(pass_at_k(5, 2, k))


def test_best_of_k_at_scale_against_sampling():
    rng = np.random.default_rng(2)
    n, k = 2_000, 64
    scores = rng.random(n)
    correct = rng.random(n) < scores * 0.5  # a verifier that is right more often on higher scores
    exact = best_of_k(list(scores), list(correct), k)
    draws = [correct[max(s, key=lambda i: scores[i])] for s in
             (rng.choice(n, size=k, replace=False) for _ in range(20_000))]
    assert exact == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(len(draws)) + 1e-3)


def test_best_of_k_rejects_bad_input():
    with pytest.raises(ValueError, match="1 <= k"):
        best_of_k([0.1, 0.2], [True, False], 3)
    with pytest.raises(ValueError, match="as many"):
        best_of_k([0.1, 0.2], [True], 1)


def test_weighted_maj_matches_enumeration_with_ties_and_abstentions():
    rng = random.Random(3)
    for _ in range(400):
        n = rng.randint(1, 10)
        answers = [rng.choice([None, 0, 1, 2, 3]) for _ in range(n)]
        # Dyadic scores: sums are exact in floats too, so ties of totals really occur.
        scores = [rng.choice([None, 0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(n)]
        k = rng.randint(1, n)
        assert weighted_maj_at_k(answers, scores, 0, k) == pytest.approx(brute_wmaj(answers, scores, 0, k),
                                                                          abs=1e-12)


def test_weighted_maj_matches_enumeration_on_random_scores():
    rng = random.Random(4)
    for _ in range(100):
        n = rng.randint(1, 12)
        answers = [rng.choice([None, "a", "b", "c"]) for _ in range(n)]
        scores = [rng.random() for _ in range(n)]
        k = rng.randint(1, n)
        assert weighted_maj_at_k(answers, scores, "a", k) == pytest.approx(brute_wmaj(answers, scores, "a", k),
                                                                            abs=1e-12)


def test_weighted_maj_with_equal_scores_is_maj():
    rng = random.Random(5)
    for _ in range(100):
        n = rng.randint(1, 10)
        answers = [rng.choice([None, 0, 1, 2]) for _ in range(n)]
        k = rng.randint(1, n)
        # 0.1 is not dyadic: sums of equal counts must still tie despite rounding.
        assert weighted_maj_at_k(answers, [0.1] * n, 0, k) == pytest.approx(maj_at_k(answers, 0, k), abs=1e-12)


def test_weighted_maj_sixteen_samples_are_exact_for_every_k():
    rng = random.Random(6)
    answers = [rng.choice([None, 0, 1, 2]) for _ in range(16)]
    scores = [rng.random() for _ in range(16)]
    assert WMAJ_EXACT_SUBSETS >= 12_870  # C(16, 8), the most subsets of any k
    for k in (1, 8, 16):
        value, se = weighted_maj_at_k_estimate(answers, scores, 0, k)
        assert se == 0.0
        assert value == pytest.approx(brute_wmaj(answers, scores, 0, k), abs=1e-12)


def test_weighted_maj_sampled_beyond_the_exact_limit():
    """64 samples, k=32: too many subsets to count; the random-subset estimate, its error and its seed."""
    rng = random.Random(7)
    answers = [rng.choice([0, 0, 1, 2, None]) for _ in range(64)]
    scores = [rng.random() for _ in range(64)]
    value, se = weighted_maj_at_k_estimate(answers, scores, 0, 32, seed=11)
    assert 0 < se < 0.5 / np.sqrt(MC_SUBSETS) + 1e-12
    assert (value, se) == weighted_maj_at_k_estimate(answers, scores, 0, 32, seed=11)  # seeded
    # Against an independent estimate from many more random subsets.
    draws = np.random.default_rng(0)
    truth = np.mean([brute_wmaj([answers[i] for i in s], [scores[i] for i in s], 0, 32)
                     for s in (draws.choice(64, size=32, replace=False) for _ in range(20_000))])
    assert value == pytest.approx(truth, abs=4 * se + 0.01)


def test_weighted_maj_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        weighted_maj_at_k([0, 1], [0.5, -0.1], 0, 1)
    with pytest.raises(ValueError, match="as many"):
        weighted_maj_at_k([0, 1], [0.5], 0, 1)
    with pytest.raises(ValueError, match="1 <= k"):
        weighted_maj_at_k([0, 1], [0.5, 0.2], 0, 0)


# --- the cells table with verifier scores ---------------------------------------------------------------

def _scored_rows(rng, problems=5, n=6, budgets=(0, 10), scored=True):
    from tests.test_cells import WRONG_CLASSES, _row

    rows = []
    for p in range(problems):
        for s in range(n):
            for b in budgets:
                correct = bool(rng.random() < 0.3 + 0.04 * b)
                answer = "1" if correct else rng.choice(["2", "3", None])
                row = _row(f"p{p}", s, b, correct, answer, 0 if correct else WRONG_CLASSES.get(answer),
                           suffix_tokens=1, think=min(b, 7))
                if scored and answer is not None:  # the verifier scores rows with an answer only
                    row["score"] = float(np.clip(rng.normal(0.7 if correct else 0.3, 0.2), 0, 1))
                rows.append(row)
    return rows


def test_cells_carry_bon_and_wmaj_with_the_verifier_flops():
    import pyarrow as pa

    from analysis.cells import compute_cells
    from orchestrator.schema import SAMPLE_SCHEMA

    shape = {"parameters": 1000, "layers": 2, "hidden": 8, "heads": 3, "head_dim": 4}
    verifier = {"parameters": 500, "layers": 1, "hidden": 8, "heads": 2, "head_dim": 4}
    samples = pa.Table.from_pylist(_scored_rows(np.random.default_rng(0)), schema=SAMPLE_SCHEMA)
    cells = compute_cells(samples, [1, 2, 6], {"m": shape}, verifier_shape=verifier).to_pandas()
    assert sorted(set(cells.aggregator)) == ["bon@k", "maj@k", "pass@k", "wmaj@k"]
    raw = samples.to_pandas()
    for cell in cells.itertuples():
        g = raw[raw.budget == cell.budget]
        t = (g.prompt_tokens + g.think_tokens + g.suffix_tokens + g.answer_tokens).to_numpy(dtype=float)
        generator = np.mean(2000 * t + 2 * 2 * 12 * t**2)
        scoring = np.mean(np.where(g.score.notna(), 1000 * t + 2 * 1 * 8 * t**2, 0.0))
        if cell.aggregator in ("bon@k", "wmaj@k"):
            assert cell.flops_per_problem == pytest.approx(cell.n * (generator + scoring))
            per_problem = []
            for _, p in g.groupby("problem_id"):
                scores = [None if np.isnan(s) else s for s in p.score]
                if cell.aggregator == "bon@k":
                    per_problem.append(brute_best(scores, list(p.correct), cell.n))
                else:
                    votes = [0 if c else a for c, a in zip(p.correct, p.extracted_answer)]
                    per_problem.append(brute_wmaj(votes, scores, 0, cell.n))
            assert cell.accuracy == pytest.approx(np.mean(per_problem), abs=1e-12)
            assert cell.ci_low <= cell.accuracy <= cell.ci_high
        else:
            assert cell.flops_per_problem == pytest.approx(cell.n * generator)


def test_rows_stored_without_scores_still_read_and_give_no_verifier_cells(tmp_path):
    """A unit written before the score column existed: the store reads it (score null), it is whole, and its
    cells are pass@k and maj@k only, as before."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from analysis.cells import compute_cells
    from orchestrator.schema import LATER_COLUMNS, SAMPLE_SCHEMA
    from orchestrator.store import Store

    old_schema = pa.schema([f for f in SAMPLE_SCHEMA if f.name not in LATER_COLUMNS])
    rows = _scored_rows(np.random.default_rng(1), scored=False)
    path = tmp_path / "old.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), path)
    table = Store(tmp_path).read_units([path])
    assert table.schema == SAMPLE_SCHEMA and table.column("score").null_count == len(rows)
    cells = compute_cells(table, [1, 2]).to_pandas()
    assert sorted(set(cells.aggregator)) == ["maj@k", "pass@k"]
    # The same rows with the score column present but null: the same cells.
    fresh = compute_cells(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA), [1, 2]).to_pandas()
    assert fresh.equals(cells)
