"""Verifier scoring of sample rows: what a verifier reads, and which rows it scores.

A verifier (an outcome reward model, served by orchestrator/engines/verifier.py) scores each
(problem, thinking, answer) of a unit after grading. It reads one of two inputs:

- **The generator's token ids** (the default; the toy verifier): exactly what the generating model
  saw and wrote at that budget,

      prompt (chat template, ending with the think-start delimiter)
      + the rung's continuation (thinking up to the budget, then the forcing suffix or the delimiter)
      + the answer's tokens, without the end-of-sequence token.

  The verifier must share the generator's vocabulary (`check_same_vocabulary`, run by preflight).
- **Text** (`verifier.input_template` set, e.g. a published reward model with its own tokenizer): the
  template filled with the problem and the response (the continuation decoded, then the answer's text)
  becomes the user turn of the verifier's own chat template, tokenized by the verifier.

A row without an extracted answer is not scored (score null): it abstains in wmaj@k and ranks last in
bon@k. Identical inputs of one sample (a natural end serving several budgets) are scored once. The job
that trains the toy verifier builds its inputs with `verifier_sequence`, so training and scoring read
the same sequences.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

VerifierInput = tuple[int, ...] | str
"""What a verifier reads for one rung: token ids of the generator's tokenizer, or the text of its user turn."""


class Scorer(Protocol):
    async def score(self, read: VerifierInput) -> float: ...


def verifier_sequence(prompt: Sequence[int], continuation: Sequence[int], answer_ids: Sequence[int],
                      eos_id: int | None) -> tuple[int, ...]:
    """The token ids a verifier reads for one rung: prompt + continuation + answer (a final EOS dropped, so a
    finished answer and one cut at answer_max_tokens both end on their last answer token)."""
    answer = list(answer_ids)
    if answer and eos_id is not None and answer[-1] == eos_id:
        answer = answer[:-1]
    return tuple(prompt) + tuple(continuation) + tuple(answer)


def verifier_text(template: str, problem: str, response: str) -> str:
    """The user turn a text-reading verifier gets: `template` with {problem} and {response} filled in."""
    return template.replace("{problem}", problem).replace("{response}", response)


def reader(template: str | None, problem: str, prompt: Sequence[int], decode: Callable[[Sequence[int]], str],
           eos_id: int | None) -> Callable[[tuple[int, ...], Any], VerifierInput]:
    """For one sample: (continuation, the answer's vLLM output) -> what the verifier reads. `template` None: the
    generator's token ids; else the text (the continuation decoded with the generator's tokenizer, then the answer)."""
    if template is None:
        return lambda continuation, out: verifier_sequence(prompt, continuation, out.outputs[0].token_ids, eos_id)
    return lambda continuation, out: verifier_text(template, problem, decode(continuation) + out.outputs[0].text)


async def score_rows(verifier: Scorer, rows: list[dict[str, Any]], ladder: Sequence[Any],
                     answers: dict[tuple[int, ...], Any], read: Callable[[tuple[int, ...], Any], VerifierInput]
                     ) -> None:
    """Set `score` on one sample's rows (one per rung of `ladder`, in order; `answers` maps a continuation to
    its vLLM output; `read` is this sample's `reader`), concurrently; rows without an extracted answer get None."""
    if len(rows) != len(ladder):
        raise ValueError(f"score_rows needs one row per rung, got {len(rows)} rows and {len(ladder)} rungs")
    wanted: dict[VerifierInput, int] = {}
    for row, rung in zip(rows, ladder):
        if rung.continuation is not None and row.get("extracted_answer") is not None:
            sequence = read(rung.continuation, answers[rung.continuation])
            wanted.setdefault(sequence, len(wanted))
            row["_verifier_input"] = sequence
    scores = await asyncio.gather(*(verifier.score(s) for s in wanted))
    for row in rows:
        sequence = row.pop("_verifier_input", None)
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
