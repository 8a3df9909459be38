"""Budget forcing: the cap ladder, as pure functions over token ids (DESIGN.md, "Sample once").

Each sample thinks once, up to the largest budget. For every budget B: if the sample ended
thinking by itself within B tokens, its natural answer serves; otherwise its thinking is cut
at B, the model's forcing suffix is appended, and a short answer is sampled from there.
Cutting a sample drawn to B_max at B has exactly the distribution of a sample capped at B,
so one thinking pass serves the whole serial axis of the grid.

The extend strategy (s1's budget forcing "Wait") changes only the thinking pass: a sample
that closes thinking before the largest budget has the delimiter replaced by the wait
string and thinks on, for up to `sweep.extend_rounds` rounds. The extended trajectory is
the same for every budget (at budget B only its first B tokens matter), so the cap ladder
over it serves every budget, and each round's output is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Thinking:
    """One sample's thinking, as generated up to the largest budget."""

    token_ids: tuple[int, ...]
    """Thinking tokens, without the end-of-thinking delimiter."""
    closed: bool
    """The model closed thinking itself with the delimiter."""
    ended: bool
    """The model stopped thinking by itself (delimiter or end of sequence) rather than hitting the cap."""


@dataclass(frozen=True)
class Rung:
    """What a sample does at one budget."""

    budget: int
    think_tokens: int
    forced: bool
    continuation: tuple[int, ...] | None
    """Tokens to append to the prompt before sampling the answer; None if the sample ended
    (end of sequence) inside thinking and there is no answer to sample."""


def split_thinking(output_ids: Sequence[int], think_end_id: int, eos_id: int | None) -> Thinking:
    """Read a thinking pass that stopped at the delimiter, at end of sequence, or at the cap."""
    ids = tuple(output_ids)
    if ids and ids[-1] == think_end_id:
        return Thinking(ids[:-1], closed=True, ended=True)
    if ids and eos_id is not None and ids[-1] == eos_id:
        return Thinking(ids[:-1], closed=False, ended=True)
    return Thinking(ids, closed=False, ended=False)


def cap_ladder(thinking: Thinking, budgets: Sequence[int], suffix_ids: Sequence[int],
               think_end_id: int) -> list[Rung]:
    """The sample's rung at every budget: its natural answer where thinking fit, else forced at B."""
    think = thinking.token_ids
    rungs = []
    for budget in budgets:
        if thinking.ended and len(think) <= budget:
            natural = think + (think_end_id,) if thinking.closed else None
            rungs.append(Rung(budget, len(think), forced=False, continuation=natural))
        else:
            cut = think[:budget]
            rungs.append(Rung(budget, len(cut), forced=True, continuation=cut + tuple(suffix_ids)))
    return rungs


def extend(thinking: Thinking, wait_ids: Sequence[int], more: Thinking) -> Thinking:
    """s1's "Wait": the end-of-thinking delimiter replaced by the wait string, then more thinking."""
    return Thinking(thinking.token_ids + tuple(wait_ids) + more.token_ids, closed=more.closed, ended=more.ended)


def can_extend(thinking: Thinking, wait_len: int, budget_max: int) -> bool:
    """Extend only a sample that closed thinking itself with room left below the largest budget."""
    return thinking.closed and len(thinking.token_ids) + wait_len < budget_max
