"""Budget forcing on the real engine: the shared ladder is exact, and extend only ever adds thinking.

Exactness: a sample drawn once to B_max and read at B (its natural answer if it closed thinking
within B tokens, else cut at B plus the forcing suffix and a short answer) must equal a direct
run capped at B with the same seeds: the same thinking tokens, the same rung and the same
answer, at temperature 0 and at the sampling temperature, natural and forced rungs alike.
"""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.budget import cap_ladder, split_thinking, think_max_tokens
from orchestrator.compose import compose
from orchestrator.datasets import load_problems
from orchestrator.units import Unit, derive_seed
from tests.conftest import TOY_OVERRIDES
from tests.rows import ROW_ORDER

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
def test_every_rung_equals_a_direct_capped_run(toy_engine, temperature):
    """Each rung (natural or forced, every budget) equals a direct run capped at its budget: one that
    may think B tokens and close (max_tokens = B + 1, the delimiter not counted), then answers."""
    from vllm import SamplingParams

    engine, unit = toy_engine, _unit(temperature)
    prompts = [engine.prompt_ids(p.problem) for p in unit.problems]
    samples = _samples(unit)
    thinking, _ = engine.think(unit, prompts, samples)
    ladders = [cap_ladder(t, unit.budgets, engine.suffix_ids, engine.think_end_id) for t in thinking]
    answers = engine.answer(unit, prompts, samples, ladders)

    m = unit.model
    direct_prompts, direct_params, expected = [], [], []
    for (pi, si, seed), ladder in zip(samples, ladders):
        for rung in ladder:
            direct_prompts.append(prompts[pi])
            direct_params.append(SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k,
                                                seed=seed, max_tokens=think_max_tokens(rung.budget),
                                                stop_token_ids=[engine.think_end_id]))
            expected.append((pi, si, seed, rung))
    direct = engine.generate(direct_prompts, direct_params)
    answer_prompts, answer_params, answered = [], [], []
    forced = natural = boundary = 0
    for out, (pi, si, seed, rung) in zip(direct, expected):
        thought = split_thinking(out.outputs[0].token_ids, engine.think_end_id, engine.eos_id)
        assert cap_ladder(thought, [rung.budget], engine.suffix_ids, engine.think_end_id)[0] == rung, \
            "the capped run thought differently"
        if rung.forced:
            cut = thought.token_ids[:rung.budget]
            assert cut == rung.continuation[:rung.budget]
            assert len(cut) == rung.think_tokens == rung.budget
            forced += rung.budget > 0
        else:
            natural += 1
            boundary += rung.think_tokens == rung.budget and thought.closed
        if rung.continuation is not None:
            answer_prompts.append(prompts[pi] + list(rung.continuation))
            answer_params.append(SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k,
                                                seed=derive_seed(seed, "answer",
                                                                 rung.budget if rung.forced else "natural"),
                                                max_tokens=m.answer_max_tokens))
            answered.append((pi, si, rung))
    for out, (pi, si, rung) in zip(engine.generate(answer_prompts, answer_params), answered):
        ladder_answer = answers[(pi, si, *rung.continuation)].outputs[0]
        assert out.outputs[0].token_ids == ladder_answer.token_ids, "the answer differs"
    print(f"direct capped runs: {forced} forced (budget > 0), {natural} natural, of which {boundary} "
          f"boundary (exactly B thinking tokens, then closed)")
    assert forced >= 20 and natural >= 20  # enough of each to mean something


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
    cap_rows = engine.run_unit(cap).to_pandas().sort_values(ROW_ORDER)
    ext_rows = engine.run_unit(ext).to_pandas().sort_values(ROW_ORDER)
    assert (ext_rows.think_tokens.to_numpy() >= cap_rows.think_tokens.to_numpy()).all()
    assert (ext_rows.think_tokens <= ext_rows.budget).all() and set(ext_rows.strategy) == {"extend"}
