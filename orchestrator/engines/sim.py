"""The simulated engine: sample rows with drawn lengths and latencies, for testing the scheduler at scale.

It has the interface of the vLLM engine (`info()`, `run_unit(unit)` -> Arrow rows of
SAMPLE_SCHEMA) but generates nothing: each sample's thinking length is drawn from a
lognormal (a per-problem difficulty factor times a per-sample draw), capped at the largest
budget, and the unit takes `generated tokens x seconds_per_token` of simulated time. Draws
come from seeds derived like the real engine's (sweep seed, problem id, sample index), so a
re-run gives identical rows. It never grades: `correct` is False and `extracted_answer` and
`vote_class` null on every row, so nothing it produces can pass for a model's accuracy.

    ttc sweep model.engine=sim model.name=sim model.path=sim/demo dataset=gsm8k cluster.num_gpus=8 \
        model.sim.think_mean_tokens=20 model.sim.seconds_per_token=0.004 tracking=none

`time_scale` converts simulated seconds into real sleep: 1 sleeps them in full, 0.01 runs
100x faster, 0 does not sleep at all (virtual time: the caller uses `simulate(unit)`, which
returns the rows and the simulated seconds).
"""

from __future__ import annotations

import math
import os
import time

import pyarrow as pa

from orchestrator.config import ModelConfig, SimConfig
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.units import Unit, derive_seed

SIM_VERSION = "sim-1"  # bump when the draws or the timing model change: rows change with it


def _normal(*parts: object) -> float:
    """A standard normal draw from a derived seed (Box-Muller on its bits): the same on every machine."""
    bits = derive_seed(*parts)
    u1 = ((bits >> 32) + 0.5) / 2**31
    u2 = ((bits & 0xFFFFFFFF) + 0.5) / 2**32
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class SimEngine:
    """A simulated engine for one model: lengths and latencies from `model.sim` (config.SimConfig)."""

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.settings = model.sim or SimConfig()  # validated with the config: model.sim.<key> errors are ConfigErrors
        if self.settings.time_scale > 0:
            time.sleep(self.settings.startup_s * self.settings.time_scale)

    def info(self) -> dict[str, str]:
        return {"engine": "sim", "engine_version": SIM_VERSION}

    def capacity(self) -> int:
        """Tokens the simulated KV cache holds (`model.sim.capacity`)."""
        return self.settings.capacity

    def _think_lengths(self, unit: Unit) -> list[tuple[int, int, int, int, bool]]:
        """(problem index, sample index, seed, thinking tokens, ended by itself) per sample."""
        s = self.settings
        cap = unit.budgets[-1]
        mu = math.log(s.think_mean_tokens) - s.think_sigma ** 2 / 2  # lognormal with mean think_mean_tokens
        out = []
        for pi, problem in enumerate(unit.problems):
            difficulty = s.problem_sigma * _normal("sim-difficulty", s.seed, problem.id) - s.problem_sigma ** 2 / 2
            for si in range(unit.n_samples):
                seed = derive_seed(unit.seed, problem.id, si)  # the real engine's per-sample seed
                drawn = math.exp(mu + difficulty + s.think_sigma * _normal(seed, "sim-think", s.seed))
                length = max(1, round(drawn))
                out.append((pi, si, seed, min(length, cap), length <= cap))
        return out

    def _answers(self, think: int, ended: bool, budgets: tuple[int, ...]) -> int:
        """Distinct answers a sample needs: one per forced budget, one natural answer if any budget fits it."""
        forced = sum(1 for b in budgets if not (ended and think <= b))
        return forced + (1 if forced < len(budgets) else 0)

    def _seconds(self, samples: list[tuple[int, int, int, int, bool]], budgets: tuple[int, ...]) -> float:
        s = self.settings
        tokens = sum(think + s.answer_tokens * self._answers(think, ended, budgets) for *_, think, ended in samples)
        return s.unit_overhead_s + tokens * s.seconds_per_token

    def unit_seconds(self, unit: Unit) -> float:
        """Simulated engine time for `unit`: its generated tokens x seconds_per_token, plus the overhead."""
        return self._seconds(self._think_lengths(unit), unit.budgets)

    def run_unit(self, unit: Unit) -> pa.RecordBatch:
        """All rows of a unit (problems x samples x budgets), after sleeping its scaled simulated time."""
        batch, seconds = self.simulate(unit)
        crash = any(p.id == self.settings.crash_on_problem for p in unit.problems)
        if self.settings.time_scale > 0:
            # A crashing engine dies mid-generation: half way through, so the result of the unit
            # before it has left the process (a crash at the very start could swallow that reply).
            time.sleep(seconds * self.settings.time_scale * (0.5 if crash else 1.0))
        if crash:
            os._exit(70)  # no cleanup, no exception: the process is simply gone
        return batch

    def simulate(self, unit: Unit) -> tuple[pa.RecordBatch, float]:
        """A unit's rows and its simulated engine time, without sleeping (for virtual time)."""
        s = self.settings
        samples = self._think_lengths(unit)
        varying: dict[str, list] = {k: [] for k in ("problem_id", "sample_idx", "seed", "budget", "think_tokens",
                                                    "suffix_tokens", "prompt_tokens", "forced", "latency_s")}
        suffix_tokens = max(1, len(unit.model.forcing_suffix) // 4)  # no tokenizer: the prompt's rough estimate
        for pi, si, seed, think, ended in samples:
            problem = unit.problems[pi]
            prompt_tokens = max(1, len(problem.problem) // 4)  # no tokenizer: a rough estimate
            for budget in unit.budgets:
                natural = ended and think <= budget
                used = think if natural else min(think, budget)
                for key, value in (("problem_id", problem.id), ("sample_idx", si), ("seed", seed),
                                   ("budget", budget), ("think_tokens", used),
                                   ("suffix_tokens", 1 if natural else suffix_tokens),  # natural: the delimiter
                                   ("prompt_tokens", prompt_tokens),
                                   ("forced", not natural),
                                   ("latency_s", (used + s.answer_tokens) * s.seconds_per_token)):
                    varying[key].append(value)
        rows = len(varying["budget"])
        constant = {"unit_key": unit.key, "model": unit.model.name, "model_revision": unit.model.revision,
                    "dataset": unit.dataset, "strategy": unit.strategy, "answer_tokens": s.answer_tokens,
                    "cached_tokens": 0, "finish_reason": "stop", "answer_text": "", "extracted_answer": None,
                    "correct": False, "vote_class": None, "score": None, "engine": "sim",
                    "engine_version": SIM_VERSION}
        columns = varying | {k: [v] * rows for k, v in constant.items()}
        batch = pa.RecordBatch.from_arrays([pa.array(columns[f.name], f.type) for f in SAMPLE_SCHEMA],
                                           schema=SAMPLE_SCHEMA)
        return batch, self._seconds(samples, unit.budgets)

    def close(self) -> None:
        pass
