"""Budget forcing: the cap ladder, as pure functions over token ids (DESIGN.md, "Sample once").

One definition of a budget holds everywhere: thinking capped at B means at most B thinking
tokens, the end-of-thinking delimiter not counted. A sample that thinks exactly B tokens and
then closes thinking ended by itself at B; one that would think a (B+1)-th token is cut at B.

Each sample thinks once, up to the largest budget B_max. vLLM counts the delimiter against
`max_tokens`, so the thinking pass may generate B_max + 1 tokens (`think_max_tokens`): a pass
that ends with the delimiter after at most B_max thinking tokens closed thinking itself; one
that returns B_max + 1 tokens without it thought past B_max and is forced at every budget.
For every budget B: if the sample ended thinking by itself within B tokens, its natural
answer serves; otherwise its thinking is cut at B, the model's forcing suffix is appended,
and a short answer is sampled from there. Cutting a sample drawn to B_max at B has exactly
the distribution of a sample capped at B, so one thinking pass serves the whole serial axis
of the grid, and a budget's rows do not depend on the other budgets of the grid.

The extend strategy (s1's budget forcing "Wait") changes only the thinking pass: a sample
that closes thinking with room left for the wait string and one more thinking token has the
delimiter replaced by the wait string and thinks on, for up to `sweep.extend_rounds` rounds.
Every round is capped by the same definition (B_max thinking tokens in all, the delimiter not
counted), and the thinking lengths at which the model closed are kept, so that at a smaller
budget B the ladder stops where a run capped at B would have stopped extending: the same
rows at B whatever the other budgets are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Thinking:
    """One sample's thinking, as generated up to the largest budget."""

    token_ids: tuple[int, ...]
    """Thinking tokens, without the end-of-thinking delimiter. When the sample did not end by
    itself this is B_max + 1 tokens: it thought past the largest budget."""
    closed: bool
    """The model closed thinking itself with the delimiter."""
    ended: bool
    """The model stopped thinking by itself (delimiter or end of sequence) rather than hitting the cap."""
    closes: tuple[int, ...] = ()
    """Extend only: the thinking lengths at which the model closed thinking and an extend round
    replaced the delimiter with the wait string, in order."""


@dataclass(frozen=True)
class Rung:
    """What a sample does at one budget."""

    budget: int
    think_tokens: int
    forced: bool
    continuation: tuple[int, ...] | None
    """Tokens to append to the prompt before sampling the answer; None if the sample ended
    (end of sequence) inside thinking and there is no answer to sample."""
    suffix_tokens: int
    """Tokens between the thinking and the answer that pass through the model: the forcing
    suffix's length when forced, 1 (the delimiter) when the model closed thinking itself,
    0 when it ended with end of sequence inside thinking."""


def think_max_tokens(budget_max: int) -> int:
    """`max_tokens` of the thinking pass: B_max thinking tokens plus the delimiter, which vLLM counts."""
    return budget_max + 1


def extend_max_tokens(thinking: Thinking, wait_len: int, budget_max: int) -> int:
    """`max_tokens` of an extend round: what is left of B_max after the thinking so far and the wait
    string, plus the delimiter (the same definition as the first pass)."""
    return budget_max + 1 - len(thinking.token_ids) - wait_len


def split_thinking(output_ids: Sequence[int], think_end_id: int, eos_id: int | None) -> Thinking:
    """Read a thinking pass that stopped at the delimiter, at end of sequence, or at the cap
    (`think_max_tokens` tokens, none of them the delimiter: it thought past the largest budget)."""
    ids = tuple(output_ids)
    if ids and ids[-1] == think_end_id:
        return Thinking(ids[:-1], closed=True, ended=True)
    if ids and eos_id is not None and ids[-1] == eos_id:
        return Thinking(ids[:-1], closed=False, ended=True)
    return Thinking(ids, closed=False, ended=False)


def natural_end(thinking: Thinking, budget: int, wait_len: int = 0) -> int | None:
    """The thinking length at which the sample, capped at `budget`, ends by itself; None if it is cut.

    A close that an extend round replaced by the wait string still ends the sample at a smaller
    budget that has no room for the wait string and one more token (`can_extend` at that budget),
    exactly as a run capped there would have stopped."""
    for close in thinking.closes:
        if close > budget:
            return None
        if close + wait_len >= budget:
            return close
    if thinking.ended and len(thinking.token_ids) <= budget:
        return len(thinking.token_ids)
    return None


def rung(thinking: Thinking, budget: int, suffix_ids: Sequence[int], think_end_id: int,
         wait_len: int = 0) -> Rung:
    """The sample at one budget: its natural answer if it ended thinking within the budget, else forced at it."""
    think = thinking.token_ids
    end = natural_end(thinking, budget, wait_len)
    if end is None:
        cut = think[:budget]
        return Rung(budget, len(cut), forced=True, continuation=cut + tuple(suffix_ids),
                    suffix_tokens=len(suffix_ids))
    if not (thinking.closed or end in thinking.closes):  # end of sequence inside thinking: nothing to answer
        return Rung(budget, end, forced=False, continuation=None, suffix_tokens=0)
    return Rung(budget, end, forced=False, continuation=think[:end] + (think_end_id,), suffix_tokens=1)


def cap_ladder(thinking: Thinking, budgets: Sequence[int], suffix_ids: Sequence[int],
               think_end_id: int, wait_len: int = 0) -> list[Rung]:
    """The sample's rung at every budget: its natural answer where thinking fit, else forced at B."""
    return [rung(thinking, budget, suffix_ids, think_end_id, wait_len) for budget in budgets]


def extend(thinking: Thinking, wait_ids: Sequence[int], more: Thinking) -> Thinking:
    """s1's "Wait": the end-of-thinking delimiter replaced by the wait string, then more thinking."""
    return Thinking(thinking.token_ids + tuple(wait_ids) + more.token_ids, closed=more.closed, ended=more.ended,
                    closes=thinking.closes + (len(thinking.token_ids),))


def can_extend(thinking: Thinking, wait_len: int, budget_max: int) -> bool:
    """Extend only a sample that closed thinking itself with room below the largest budget for the
    wait string and at least one more thinking token of its own."""
    return thinking.closed and len(thinking.token_ids) + wait_len < budget_max
