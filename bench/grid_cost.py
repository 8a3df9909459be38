"""What the shared-sample plan saves: decode tokens of "sample once, derive many" vs cell by cell.

    python bench/grid_cost.py --plan-only            # the default reproduction grid, by a length model
    python bench/grid_cost.py --plan-only --lengths full
    python bench/grid_cost.py                        # a small real grid on the toy model, both ways
    python bench/grid_cost.py --problems 32 model.temperature=1.0   # with config overrides

Cell by cell (lm-eval, s1's scripts, SkyThought) runs every (B, N) as its own request:
N samples thinking up to B, then an answer. The shared plan draws N_max samples thinking
up to B_max once; each budget adds only a short answer per sample (its prompt is the
thinking prefix, served by vLLM's prefix cache). The last line is `ratio=<cell / shared>`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUDGETS = [512, 1024, 2048, 4096, 8192, 16384]
NS = [1, 2, 4, 8, 16, 32, 64]


def natural_lengths(kind: str, samples: int, seed: int = 0) -> np.ndarray:
    """Thinking lengths a sample would reach unconstrained.
    full: every sample uses any budget whole (the worst case for the shared plan);
    lognormal: median 4,096 tokens, sigma 1.0 (a heavy tail, as long chains of thought have)."""
    if kind == "full":
        return np.full(samples, np.inf)
    return np.random.default_rng(seed).lognormal(np.log(4096), 1.0, samples)


def plan_cost(lengths: np.ndarray, budgets: list[int], ns: list[int], answer_tokens: int) -> tuple[float, float]:
    """Expected decode tokens per problem: (shared plan, cell by cell), under a length model."""
    b_max, n_max = budgets[-1], ns[-1]
    think = np.minimum(lengths, b_max).mean()
    # A sample's natural answer is generated once; every budget below its length adds a forced answer.
    answers = np.mean([1 + sum(b < length for b in budgets if b < b_max) for length in lengths])
    shared = n_max * (think + answers * answer_tokens)
    cell = sum(n * (np.minimum(lengths, b).mean() + answer_tokens) for b in budgets for n in ns)
    return float(shared), float(cell)


def plan_only(args: argparse.Namespace) -> float:
    lengths = natural_lengths(args.lengths, 100_000)
    shared, cell = plan_cost(lengths, BUDGETS, NS, args.answer_tokens)
    print(f"grid: budgets {BUDGETS} x N {NS} ({len(BUDGETS) * len(NS)} cells), "
          f"answer {args.answer_tokens} tokens, length model '{args.lengths}'")
    print(f"decode tokens per problem: shared plan {shared:,.0f}  cell by cell {cell:,.0f}")
    return cell / shared


def shared_decode_tokens(rows) -> int:
    """Tokens the shared plan decoded: each sample's thinking once, each forced answer, one natural answer."""
    total = 0
    for _, g in rows.groupby(["problem_id", "sample_idx"]):
        total += int(g.think_tokens.max())
        total += int(g[g.forced].answer_tokens.sum()) + int(g[~g.forced].answer_tokens.head(1).sum())
    return total


def cell_by_cell(engine, problems, budgets, ns, seed):
    """Every (B, N) as its own request: n=N samples thinking up to B, then each sample's answer."""
    from vllm import SamplingParams

    from analysis.estimators import maj_at_k
    from orchestrator.budget import split_thinking
    from orchestrator.units import derive_seed

    m, results, decoded = engine.model, {}, 0
    prompts = [engine.prompt_ids(p.problem) for p in problems]
    for budget in budgets:
        for n in ns:
            correct, votes = [], []
            if budget > 0:
                outs = engine.generate(
                    prompts,
                    [SamplingParams(n=n, temperature=m.temperature, top_p=m.top_p, top_k=m.top_k, max_tokens=budget,
                                    seed=derive_seed(seed, p.id, "cell", budget, n),
                                    stop_token_ids=[engine.think_end_id]) for p in problems])
                thoughts = [[split_thinking(c.token_ids, engine.think_end_id, engine.eos_id) for c in o.outputs]
                            for o in outs]
            else:
                thoughts = [[split_thinking([], engine.think_end_id, engine.eos_id)] * n for _ in problems]
            requests, params = [], []
            for pi, (p, ts) in enumerate(zip(problems, thoughts)):
                for si, t in enumerate(ts):
                    decoded += len(t.token_ids)
                    tail = (engine.think_end_id,) if t.closed else tuple(engine.suffix_ids)
                    requests.append(prompts[pi] + list(t.token_ids + tail))
                    params.append(SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k,
                                                 max_tokens=m.answer_max_tokens,
                                                 seed=derive_seed(seed, p.id, "cell-answer", budget, n, si)))
            answers = engine.generate(requests, params)
            for pi, p in enumerate(problems):
                graded = [engine.graders.grade(a.outputs[0].text, p.answer).result()
                          for a in answers[pi * n:(pi + 1) * n]]
                decoded += sum(len(a.outputs[0].token_ids) for a in answers[pi * n:(pi + 1) * n])
                correct.append(float(any(ok for _, ok in graded)))
                # The vote over all n answers: maj@k with k = n has a single subset.
                votes.append(maj_at_k([None if e is None else ("ok" if ok else e) for e, ok in graded], "ok", n))
            results[(budget, n, "pass@k")] = np.array(correct)
            results[(budget, n, "maj@k")] = np.array(votes)
    return results, decoded


def real_run(args: argparse.Namespace) -> float:
    """The toy model's default grid (fewer problems), run the shared way and cell by cell."""
    import pyarrow as pa

    from analysis.cells import compute_cells
    from analysis.estimators import mean_ci
    from orchestrator.compose import compose
    from orchestrator.datasets import load_problems
    from orchestrator.engines.vllm import VLLMEngine
    from orchestrator.plan import plan_units

    cfg = compose([f"dataset.limit={args.problems}", f"sweep.problems_per_unit={args.problems}", *args.overrides])
    budgets, ns = list(cfg.sweep.budgets), list(cfg.sweep.n)
    problems = load_problems(cfg.dataset)
    engine = VLLMEngine(cfg.model)
    print(f"grid: toy model, {len(problems)} problems, budgets {budgets} x N {ns}, T={cfg.model.temperature}")

    start = time.perf_counter()
    rows = pa.Table.from_batches([engine.run_unit(u) for u in plan_units(cfg, problems)])
    shared_s = time.perf_counter() - start
    shared_tokens = shared_decode_tokens(rows.to_pandas())
    cells = compute_cells(rows, ns).to_pandas()

    start = time.perf_counter()
    direct, cell_tokens = cell_by_cell(engine, problems, budgets, ns, cfg.sweep.seed)
    cell_s = time.perf_counter() - start
    engine.close()

    print(f"decode tokens: shared plan {shared_tokens:,}  cell by cell {cell_tokens:,}")
    print(f"wall time:     shared plan {shared_s:.1f} s  cell by cell {cell_s:.1f} s  ({cell_s / shared_s:.2f}x)")
    worst = max(cells.itertuples(), key=lambda c: abs(c.accuracy - direct[(c.budget, c.n, c.aggregator)].mean()))
    d = direct[(worst.budget, worst.n, worst.aggregator)]
    low, high = mean_ci(d, worst.n)
    print(f"largest accuracy difference: {abs(worst.accuracy - d.mean()):.3f} at B={worst.budget} N={worst.n} "
          f"{worst.aggregator}: shared {worst.accuracy:.3f} [{worst.ci_low:.3f}, {worst.ci_high:.3f}] vs "
          f"cell by cell {d.mean():.3f} [{low:.3f}, {high:.3f}] (95% intervals over problems)")
    # Each way is an estimate with its own noise: compare the difference with both (95% level).
    agree = 0
    for c in cells.itertuples():
        d = direct[(c.budget, c.n, c.aggregator)]
        low, high = mean_ci(d, c.n)
        se = np.hypot((c.ci_high - c.ci_low) / 3.92, (high - low) / 3.92)
        agree += abs(c.accuracy - d.mean()) <= 1.96 * se + 1e-9
    print(f"cells whose two estimates agree within their combined 95% interval: {agree}/{len(cells)}")
    return cell_tokens / shared_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan-only", action="store_true", help="count tokens by a length model; no engine")
    parser.add_argument("--lengths", choices=["lognormal", "full"], default="lognormal")
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--problems", type=int, default=64, help="real run: toy problems")
    parser.add_argument("overrides", nargs="*", help="real run: config overrides, e.g. model.temperature=1.0")
    args = parser.parse_args()
    if args.plan_only:
        ratio = plan_only(args)
    else:
        ratio = real_run(args)
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
