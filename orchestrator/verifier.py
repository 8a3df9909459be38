"""Verifier scoring of sample rows: what a verifier reads, and which rows it scores.

A verifier (an outcome reward model, served by orchestrator/engines/verifier.py) scores each
(problem, thinking, answer) of a unit after grading: the sequence it reads is exactly what the
generating model saw and wrote at that budget, as token ids of the generator's tokenizer:

    prompt (chat template, ending with the think-start delimiter)
    + the rung's continuation (thinking up to the budget, then the forcing suffix or the delimiter)
    + the answer's tokens, without the end-of-sequence token.

The toy verifier shares the toy reasoner's tokenizer, so these ids go to it as they are; a verifier
with another tokenizer would need the text re-tokenized (not needed yet, and refused by
`check_same_vocabulary`). A row without an extracted answer is not scored (score null): it abstains
in wmaj@k and ranks last in bon@k. Identical sequences of one sample (a natural end serving several
budgets) are scored once. The job that trains the toy verifier builds its inputs with the same
function, so training and scoring read the same sequences.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Scorer(Protocol):
    async def score(self, sequence: Sequence[int]) -> float: ...


def verifier_sequence(prompt: Sequence[int], continuation: Sequence[int], answer_ids: Sequence[int],
                      eos_id: int | None) -> tuple[int, ...]:
    """The token ids a verifier reads for one rung: prompt + continuation + answer (a final EOS dropped, so a
    finished answer and one cut at answer_max_tokens both end on their last answer token)."""
    answer = list(answer_ids)
    if answer and eos_id is not None and answer[-1] == eos_id:
        answer = answer[:-1]
    return tuple(prompt) + tuple(continuation) + tuple(answer)


async def score_rows(verifier: Scorer, rows: list[dict[str, Any]], prompt: Sequence[int], ladder: Sequence[Any],
                     answers: dict[tuple[int, ...], Any], eos_id: int | None) -> None:
    """Set `score` on one sample's rows (one per rung of `ladder`, in order; `answers` maps a continuation to
    its vLLM output), concurrently; rows without an extracted answer get None."""
    if len(rows) != len(ladder):
        raise ValueError(f"score_rows needs one row per rung, got {len(rows)} rows and {len(ladder)} rungs")
    wanted: dict[tuple[int, ...], int] = {}
    for row, rung in zip(rows, ladder):
        if rung.continuation is not None and row.get("extracted_answer") is not None:
            sequence = verifier_sequence(prompt, rung.continuation, answers[rung.continuation].outputs[0].token_ids,
                                         eos_id)
            wanted.setdefault(sequence, len(wanted))
            row["_verifier_sequence"] = sequence
    scores = await asyncio.gather(*(verifier.score(s) for s in wanted))
    for row in rows:
        sequence = row.pop("_verifier_sequence", None)
        row["score"] = None if sequence is None else float(scores[wanted[sequence]])


def check_same_vocabulary(generator_path: Path, verifier_path: Path) -> str | None:
    """None if the verifier reads the generator's token ids as they are (same tokenizer.json vocabulary),
    else one line saying why not."""
    import json

    def vocab(path: Path) -> dict | None:
        try:
            return json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    mine, theirs = vocab(generator_path), vocab(verifier_path)
    if mine is None or theirs is None:
        return f"cannot compare the tokenizers of {generator_path} and {verifier_path} (no tokenizer.json vocab)"
    if mine != theirs:
        return f"the verifier {verifier_path} has another vocabulary than {generator_path}; it must share the tokenizer"
    return None
