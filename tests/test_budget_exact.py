"""Budget forcing on the real engine: the shared ladder is exact, and extend only ever adds thinking.

Exactness: a sample drawn once to B_max and cut at B (plus the forcing suffix and a short
answer) must equal a direct run capped at B with the same seeds: the same thinking tokens
and the same answer, at temperature 0 and at the sampling temperature.
"""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.budget import cap_ladder
from orchestrator.config import compose
from orchestrator.datasets import load_problems
from orchestrator.plan import Unit, derive_seed
from tests.conftest import TOY_OVERRIDES

pytestmark = pytest.mark.e2e

BUDGETS = (0, 10, 25, 50)


def _unit(temperature: float | None = None, strategy: str = "cap", rounds: int = 0, n: int = 4) -> Unit:
    cfg = compose([*TOY_OVERRIDES, "dataset.limit=12"])
    model = cfg.model if temperature is None else dataclasses.replace(cfg.model, temperature=temperature)
    problems = tuple(load_problems(cfg.dataset))
    return Unit("test", model, cfg.dataset.name, problems, BUDGETS, n, 0, strategy, rounds)


def _samples(unit: Unit):
    return [(pi, si, derive_seed(unit.seed, p.id, si)) for pi, p in enumerate(unit.problems)
            for si in range(unit.n_samples)]


@pytest.mark.parametrize("temperature", [0.0, None], ids=["greedy", "sampling-temperature"])
def test_forced_answer_equals_a_direct_capped_run(toy_engine, temperature):
    from vllm import SamplingParams

    engine, unit = toy_engine, _unit(temperature)
    prompts = [engine.prompt_ids(p.problem) for p in unit.problems]
    samples = _samples(unit)
    thinking, _ = engine.think(unit, prompts, samples)
    ladders = [cap_ladder(t, unit.budgets, engine.suffix_ids, engine.think_end_id) for t in thinking]
    requests, answers = engine.answer(unit, prompts, samples, ladders)

    m, checked = unit.model, 0
    direct_prompts, direct_params, expected = [], [], []
    for (pi, si, seed), ladder in zip(samples, ladders):
        for rung in ladder:
            if rung.forced and rung.budget > 0:
                direct_prompts.append({"prompt_token_ids": prompts[pi]})
                direct_params.append(SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k,
                                                    seed=seed, max_tokens=rung.budget,
                                                    stop_token_ids=[engine.think_end_id]))
                expected.append((pi, si, seed, rung))
    direct = engine.llm.generate(direct_prompts, direct_params, use_tqdm=False)
    answer_prompts, answer_params = [], []
    for out, (pi, si, seed, rung) in zip(direct, expected):
        cut = tuple(out.outputs[0].token_ids)
        assert cut == rung.continuation[:rung.budget], "the capped run thought differently"
        assert len(cut) == rung.think_tokens == rung.budget
        answer_prompts.append({"prompt_token_ids": prompts[pi] + list(cut) + list(engine.suffix_ids)})
        answer_params.append(SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k,
                                            seed=derive_seed(seed, "answer", rung.budget),
                                            max_tokens=m.answer_max_tokens))
    for out, (pi, si, seed, rung) in zip(engine.llm.generate(answer_prompts, answer_params, use_tqdm=False),
                                         expected):
        ladder_answer = answers[requests[(pi, si, *rung.continuation)]].outputs[0]
        assert out.outputs[0].token_ids == ladder_answer.token_ids, "the forced answer differs"
        checked += 1
    assert checked >= 20  # enough forced cuts to mean something


def test_extend_only_adds_thinking_and_puts_the_wait_string_where_the_delimiter_was(toy_engine):
    engine = toy_engine
    cap, ext = _unit(), _unit(strategy="extend", rounds=1)
    prompts = [engine.prompt_ids(p.problem) for p in cap.problems]
    samples = _samples(cap)
    capped, _ = engine.think(cap, prompts, samples)
    extended, _ = engine.think(ext, prompts, samples)
    wait = tuple(engine.wait_ids)
    assert wait, "the toy model's extend_string must tokenize"
    replaced = 0
    for c, e in zip(capped, extended):
        assert e.token_ids[:len(c.token_ids)] == c.token_ids  # the first round is kept
        assert len(e.token_ids) >= len(c.token_ids)
        if c.closed and len(c.token_ids) + len(wait) < BUDGETS[-1]:
            assert e.token_ids[len(c.token_ids):len(c.token_ids) + len(wait)] == wait
            replaced += 1
    assert replaced > 0
    cap_rows = engine.run_unit(cap).to_pandas().sort_values(["problem_id", "sample_idx", "budget"])
    ext_rows = engine.run_unit(ext).to_pandas().sort_values(["problem_id", "sample_idx", "budget"])
    assert (ext_rows.think_tokens.to_numpy() >= cap_rows.think_tokens.to_numpy()).all()
    assert (ext_rows.think_tokens <= ext_rows.budget).all() and set(ext_rows.strategy) == {"extend"}
