"""The unit of work and its identities: `Unit`, its content key (`unit_key`) and per-sample seeds (`derive_seed`).

The vocabulary that the planner, the engines, the scheduler and the store share (DESIGN.md, "unit"). A leaf:
it imports nothing of the project at run time (the config and problem types only for annotations), so every
module may import it and none imports it back. The key and the seeds are what resume rests on: a unit in the
store is found again only if `unit_key` and `derive_seed` give exactly what they gave when it was written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.config import ModelConfig, VerifierConfig
    from orchestrator.datasets import Problem


@dataclass(frozen=True)
class Unit:
    key: str
    model: ModelConfig
    dataset: str
    problems: tuple[Problem, ...]
    budgets: tuple[int, ...]
    n_samples: int
    seed: int
    strategy: str
    extend_rounds: int = 0
    verifier: VerifierConfig | None = None
    """Scores every answered row after grading (orchestrator/verifier.py); None: no scores."""

    @property
    def samples(self) -> int:
        return len(self.problems) * self.n_samples

    @property
    def rows(self) -> int:
        return self.samples * len(self.budgets)

    @property
    def max_decode_tokens(self) -> int:
        """Tokens the unit may generate: its samples think up to the largest budget (plus the token that shows
        whether thinking closed there), then answer per budget."""
        return self.samples * (self.budgets[-1] + 1 + len(self.budgets) * self.model.answer_max_tokens)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from (sweep seed, problem id, sample index, ...): stable across runs and machines."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def unit_key(base: dict, problems: tuple[Problem, ...]) -> str:
    """Content hash of everything that determines a unit's rows: the sweep-wide `base` and the problems."""
    content = dict(base, problems=[[p.id, p.problem, p.answer] for p in problems])
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]
