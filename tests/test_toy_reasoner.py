"""The toy reasoner: its task generator, its committed held-out set, and the committed model in vLLM.

The tests that start vLLM (the `toy_engine` fixture, ~20 s) are in the e2e tier; the rest are fast."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from analysis.cells import compute_cells
from jobs.train_toy_reasoner import STEP_TOKENS, apply_op, make_example, make_test_set, prompt_ids
from orchestrator.budget import split_thinking
from orchestrator.compose import compose
from orchestrator.config import PROJECT_ROOT
from orchestrator.datasets import load_problems
from orchestrator.plan import plan_units


def test_examples_are_worked_correctly():
    rng = random.Random(0)
    for _ in range(200):
        ex = make_example(rng)
        steps = re.findall(r"([+\-*])(\d)=(\d),", ex.thinking)
        assert len(steps) == ex.steps and len(ex.thinking) == STEP_TOKENS * ex.steps
        value = int(ex.problem[0])
        for op, operand, result in steps:
            value = apply_op(value, op, int(operand))
            assert value == int(result)
        assert ex.answer == str(value)


def test_committed_held_out_set_is_the_seeded_one_and_balanced():
    rows = [json.loads(line) for line in (PROJECT_ROOT / "data" / "toy_arith.jsonl").read_text().splitlines()]
    expected = make_test_set()
    assert [(r["problem"], r["answer"]) for r in rows] == [(e.problem, e.answer) for e in expected]
    counts = np.bincount([r["steps"] for r in rows])
    assert len(rows) >= 200 and counts[2:].min() >= 25


def test_the_engines_prompt_function_matches_training_prompt():
    from transformers import AutoTokenizer

    from orchestrator.prompts import prompt_ids as engine_prompt_ids

    model = compose([]).model
    tokenizer = AutoTokenizer.from_pretrained(model.engine_path())  # what vLLM's get_tokenizer loads, no engine
    for problem in ("4+7*3-5", "0*9+1"):
        assert engine_prompt_ids(tokenizer, model, problem) == prompt_ids(problem)


@pytest.mark.e2e
def test_engine_prompt_matches_training_prompt(toy_engine):
    for problem in ("4+7*3-5", "0*9+1"):
        assert toy_engine.prompt_ids(problem) == prompt_ids(problem)


@pytest.mark.e2e
def test_model_writes_well_formed_thinking_and_boxed_answers(toy_engine):
    from vllm import SamplingParams

    engine = toy_engine
    problems = load_problems(compose(["dataset.limit=32"]).dataset)
    outs = engine.generate([engine.prompt_ids(p.problem) for p in problems],
                           SamplingParams(temperature=0, max_tokens=60, stop_token_ids=[engine.think_end_id]))
    thoughts = [split_thinking(o.outputs[0].token_ids, engine.think_end_id, engine.eos_id) for o in outs]
    assert sum(t.closed for t in thoughts) >= 0.9 * len(problems)
    step = re.compile(r"^([+\-*]\d=\d,)+$")
    texts = [engine.tokenizer.decode(list(t.token_ids)) for t in thoughts if t.closed]
    assert sum(bool(step.match(t)) for t in texts) >= 0.9 * len(texts)
    answers = engine.generate(
        [engine.prompt_ids(p.problem) + list(t.token_ids) + [engine.think_end_id]
         for p, t in zip(problems, thoughts) if t.closed],
        SamplingParams(temperature=0, max_tokens=8))
    assert all(re.fullmatch(r"\\boxed\{\d\}", a.outputs[0].text) for a in answers)


@pytest.mark.e2e
def test_accuracy_grows_with_the_budget_far_beyond_noise(toy_engine):
    cfg = compose(["dataset.limit=64", "sweep.problems_per_unit=64", "sweep.budgets=[0,50]", "sweep.n=[1,4]"])
    unit = plan_units(cfg, load_problems(cfg.dataset))[0]
    samples = toy_engine.run_unit(unit)
    import pyarrow as pa

    rows = pa.Table.from_batches([samples]).to_pandas()
    per_problem = rows.groupby(["budget", "problem_id"]).correct.mean().unstack(0)  # pass@1 per problem
    low, high = per_problem[0], per_problem[50]
    diff = high - low
    noise = diff.std(ddof=1) / np.sqrt(len(diff))  # standard error of the mean paired difference
    assert diff.mean() > 6 * noise, (low.mean(), high.mean(), noise)
    cells = compute_cells(pa.Table.from_batches([samples]), [1, 4]).to_pandas()
    maj = cells[(cells.aggregator == "maj@k") & (cells.budget == 50)].set_index("n").accuracy
    assert maj[4] > maj[1]  # voting helps at the largest budget
