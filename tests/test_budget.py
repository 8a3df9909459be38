"""The cap ladder on token ids: natural answers where thinking fit, forced cuts elsewhere.

One definition throughout: thinking capped at B is at most B thinking tokens, the delimiter not
counted. The thinking pass generates up to B_max + 1 tokens, so a sample that thinks exactly
B_max tokens and then closes is natural at B_max, as a sample of exactly B tokens is at B.
"""

import random

import pytest

from orchestrator.budget import (
    Thinking,
    can_extend,
    cap_ladder,
    extend,
    extend_max_tokens,
    split_thinking,
    think_max_tokens,
)

END, EOS = 99, 98
SUFFIX = (99, 7)
WAIT = (50, 51)


def test_split_thinking_reads_how_thinking_stopped():
    assert split_thinking([1, 2, END], END, EOS).closed
    eos = split_thinking([1, 2, EOS], END, EOS)
    assert eos.ended and not eos.closed and eos.token_ids == (1, 2)
    capped = split_thinking([1, 2, 3], END, EOS)
    assert not capped.ended and capped.token_ids == (1, 2, 3)


def test_natural_end_serves_every_budget_above_it():
    thinking = split_thinking([1, 2, 3, END], END, EOS)
    rungs = cap_ladder(thinking, [0, 2, 3, 10], SUFFIX, END)
    assert [r.forced for r in rungs] == [True, True, False, False]
    assert rungs[0].continuation == SUFFIX and rungs[0].think_tokens == 0
    assert rungs[1].continuation == (1, 2) + SUFFIX and rungs[1].think_tokens == 2
    assert rungs[2].continuation == rungs[3].continuation == (1, 2, 3, END)
    assert all(r.think_tokens <= r.budget for r in rungs)


def test_thinking_past_the_largest_budget_is_forced_at_every_budget():
    thinking = split_thinking([5, 6, 7, 8, 9], END, EOS)  # B_max = 4: the pass returned 5 tokens, no delimiter
    rungs = cap_ladder(thinking, [1, 4], SUFFIX, END)
    assert all(r.forced for r in rungs)
    assert rungs[1].continuation == (5, 6, 7, 8) + SUFFIX and rungs[1].think_tokens == 4


def test_end_of_sequence_inside_thinking_has_no_answer():
    rungs = cap_ladder(split_thinking([1, EOS], END, EOS), [0, 5], SUFFIX, END)
    assert rungs[0].forced and rungs[1].continuation is None


def test_the_thinking_pass_leaves_room_for_the_delimiter():
    assert think_max_tokens(0) == 1 and think_max_tokens(50) == 51
    # After 3 thinking tokens and a 2-token wait string, B_max = 10 leaves 5 thinking tokens and the delimiter.
    assert extend_max_tokens(Thinking((1, 2, 3), True, True), len(WAIT), 10) == 6


# B_max = 4, budgets [3, 4]: (pass output, expected (think_tokens, forced, suffix_tokens) at 3 and at 4).
BOUNDARY = [
    ([1, 2, 3, 4, END], [(3, True, 2), (4, False, 1)]),   # exactly B_max, closed: natural at B_max
    ([1, 2, 3, 4, 5], [(3, True, 2), (4, True, 2)]),      # B_max + 1 tokens, no delimiter: thought past B_max
    ([1, 2, 3, 4, EOS], [(3, True, 2), (4, False, 0)]),   # exactly B_max, end of sequence: no answer at B_max
    ([1, 2, 3, END], [(3, False, 1), (3, False, 1)]),     # exactly B = 3, closed: natural at 3 and above
    ([1, 2, 3, EOS], [(3, False, 0), (3, False, 0)]),     # exactly B = 3, end of sequence
]


@pytest.mark.parametrize("output, expected", BOUNDARY,
                         ids=["Bmax-closed", "Bmax+1-cut", "Bmax-eos", "B-closed", "B-eos"])
def test_boundary_samples(output, expected):
    assert len(output) <= think_max_tokens(4)
    rungs = cap_ladder(split_thinking(output, END, EOS), [3, 4], SUFFIX, END)
    assert [(r.think_tokens, r.forced, r.suffix_tokens) for r in rungs] == expected
    for r in rungs:
        if r.forced:
            assert r.continuation == tuple(output[:r.budget]) + SUFFIX
        elif r.suffix_tokens == 1:
            assert r.continuation == tuple(output[:r.think_tokens]) + (END,)
        else:
            assert r.continuation is None


def _model(prefix: tuple[int, ...], max_tokens: int) -> list[int]:
    """A deterministic stand-in for a seeded model: each next token is a function of the prefix; it
    stops after emitting the delimiter or end of sequence, or at max_tokens (as vLLM does)."""
    out: list[int] = []
    while len(out) < max_tokens:
        rng = random.Random(hash(prefix + tuple(out)))
        token = END if rng.random() < 0.12 else EOS if rng.random() < 0.03 else rng.randrange(10)
        out.append(token)
        if token in (END, EOS):
            break
    return out


def _think(prompt: tuple[int, ...], budget_max: int, rounds: int) -> Thinking:
    """The engine's thinking pass (VLLMEngine.think), on the stand-in model."""
    thinking = split_thinking(_model(prompt, think_max_tokens(budget_max)), END, EOS)
    for _ in range(rounds):
        if not can_extend(thinking, len(WAIT), budget_max):
            break
        more = _model(prompt + thinking.token_ids + WAIT, extend_max_tokens(thinking, len(WAIT), budget_max))
        thinking = extend(thinking, WAIT, split_thinking(more, END, EOS))
    return thinking


@pytest.mark.parametrize("rounds", [0, 1, 3], ids=["cap", "extend-1", "extend-3"])
def test_a_budget_s_rung_does_not_depend_on_the_largest_budget(rounds):
    # Brute force over many samples: the rung at B read off a pass to B_max equals the rung of a
    # direct run whose largest budget is B, for every B <= B_max, boundary samples included.
    boundary = natural = 0
    for p in range(400):
        prompt = (p,)
        for budget_max in (0, 3, 12):
            wide = _think(prompt, budget_max, rounds)
            for budget in range(budget_max + 1):
                direct = _think(prompt, budget, rounds)
                got = cap_ladder(wide, [budget], SUFFIX, END, len(WAIT))[0]
                want = cap_ladder(direct, [budget], SUFFIX, END, len(WAIT))[0]
                assert got == want, (p, budget_max, budget, wide, direct)
                natural += not got.forced
                boundary += not got.forced and got.think_tokens == budget and got.suffix_tokens == 1
    assert boundary > 50 and natural > 500
