"""The cap ladder on token ids: natural answers where thinking fit, forced cuts elsewhere."""

from orchestrator.budget import cap_ladder, split_thinking

END, EOS = 99, 98
SUFFIX = (99, 7)


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


def test_capped_thinking_is_forced_at_every_budget():
    thinking = split_thinking([5, 6, 7, 8], END, EOS)  # hit the largest budget, 4
    rungs = cap_ladder(thinking, [1, 4], SUFFIX, END)
    assert all(r.forced for r in rungs)
    assert rungs[1].continuation == (5, 6, 7, 8) + SUFFIX and rungs[1].think_tokens == 4


def test_end_of_sequence_inside_thinking_has_no_answer():
    rungs = cap_ladder(split_thinking([1, EOS], END, EOS), [0, 5], SUFFIX, END)
    assert rungs[0].forced and rungs[1].continuation is None
