"""The toy base model's training data: the reasoner's problems and format, with filler for thinking."""

import random

from jobs.train_toy_reasoner import (
    FILLER,
    KINDS,
    THINK_END,
    VOCAB,
    encode,
    filler_thinking,
    make_example,
    training_sequence,
)


def _text(ids):
    return "".join(VOCAB[i] for i in ids)


def test_base_thinks_filler_as_long_as_the_worked_steps():
    rng = random.Random(0)
    for _ in range(100):
        ex = make_example(rng)
        filler = filler_thinking(ex)
        assert len(filler) == len(ex.thinking) and set(filler) == {FILLER}
        reasoner, _ = training_sequence(ex, None, "reasoner")
        base, labels = training_sequence(ex, None, "base")
        assert len(base) == len(reasoner)  # the same tokens spent, none of them computing
        text = _text(base)
        assert text.startswith("<bos>" + ex.problem + "<think>" + filler + THINK_END)
        assert text.endswith("\\boxed{" + ex.answer + "}<eos>")
        # Loss on the filler, the delimiter and the answer; none on the prompt.
        prompt = len(encode(ex.problem)) + 2
        assert labels[:prompt] == [-100] * prompt and labels[prompt:] == base[prompt:]


def test_a_cut_base_example_answers_after_part_of_the_filler():
    ex = make_example(random.Random(1))
    ids, _ = training_sequence(ex, 3, "base")
    assert _text(ids) == f"<bos>{ex.problem}<think>{FILLER * 3}</think>\\boxed{{{ex.answer}}}<eos>"
    assert KINDS == ("reasoner", "base")
