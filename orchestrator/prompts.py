"""Prompts as token ids: one definition shared by the engine and the driver's pre-start checks.

The problem goes through the model's chat template (or BOS + problem + newline for a model
without one) and ends with the think-start delimiter, so every sample starts thinking at
once. Prompts go to the engine as token ids, so the template's BOS is not doubled. The
driver tokenizes with the same function to refuse, before anything starts, a problem whose
prompt cannot fit the model's context with the largest budget.
"""

from __future__ import annotations

from orchestrator.config import ModelConfig


def prompt_ids(tokenizer, model: ModelConfig, problem: str) -> list[int]:
    """The chat-templated prompt of `problem`, ending with `model.think_start`, as token ids of `tokenizer`
    (a Hugging Face tokenizer, or vLLM's wrapper of one)."""
    text = chat_text(tokenizer, problem, bare_suffix="\n")
    if not text.rstrip().endswith(model.think_start):
        text += model.think_start
    return tokenizer.encode(text, add_special_tokens=False)


def chat_text(tokenizer, user: str, bare_suffix: str = "") -> str:
    """`user` as one user turn through the tokenizer's chat template, ending with the generation prompt; for a
    tokenizer without a template, BOS + `user` + `bare_suffix`. Shared by prompts and text-reading verifiers."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                             tokenize=False)
    return (tokenizer.bos_token or "") + user + bare_suffix


def context_tokens(prompt_len: int, budget_max: int, suffix_len: int, model: ModelConfig) -> int:
    """Tokens one sample's longest sequence needs: its prompt, the largest budget of thinking, the forcing
    suffix (a natural continuation ends with the one-token delimiter instead), and the answer."""
    return prompt_len + budget_max + max(suffix_len, 1) + model.answer_max_tokens
