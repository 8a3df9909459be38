"""Reading a local model's files: its fingerprint (for unit keys), its shape (for FLOPs) and its KV cache size.

The fingerprint reads each file's bytes (a large one only at its ends); the shape and KV size read
config.json and the safetensors headers, never the weights. Each answer costs milliseconds and no
engine. A model given as a hub id that is not on this machine has no files to read: every function
returns None for it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from orchestrator.config import ModelConfig

# Files up to this size are hashed whole; a larger one by its size and its first and last MiB (retrained
# weights differ there too), so a 60 GB checkpoint costs two small reads per file, not a full pass.
WHOLE_FILE_BYTES = 64 * 2**20
END_BYTES = 2**20


def model_fingerprint(model: ModelConfig) -> str | None:
    """For a local model directory: a hash of its file names, sizes and contents, so that retrained weights at
    the same path (same names, same sizes) are new units. None for a hub id (its revision identifies it)."""
    local = model.local_path()
    if local is None:
        return None
    h = hashlib.sha256()
    for f in sorted(local.iterdir()):
        if f.is_file():
            size = f.stat().st_size
            h.update(f"{f.name}:{size}\n".encode())
            with f.open("rb") as data:
                if size <= WHOLE_FILE_BYTES:
                    h.update(data.read())
                else:
                    h.update(data.read(END_BYTES))
                    data.seek(size - END_BYTES)
                    h.update(data.read(END_BYTES))
    return h.hexdigest()[:16]


def _text_config(local: Path | None) -> dict | None:
    """The language model's part of config.json (multimodal configs nest it under `text_config`); None when
    there is no local config.json or it is not a JSON object."""
    if local is None or not (local / "config.json").is_file():
        return None
    try:
        config = json.loads((local / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    config = config.get("text_config", config)
    return config if isinstance(config, dict) else None


def model_shape(model: ModelConfig) -> dict[str, int] | None:
    """Parameters (from the safetensors headers, no weights read), layers, hidden size, attention heads
    and head dimension (config.json's `head_dim`, else hidden / heads) of a local model, for FLOPs
    accounting (attention costs layers x heads x head_dim, which differs from the hidden size in many
    models); None for a hub id that is not on this machine or a config that does not say."""
    local = model.local_path()
    config = _text_config(local)
    if config is None:
        return None
    parameters = 0
    for f in sorted(local.glob("*.safetensors")):
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, meta in header.items():
            if name != "__metadata__":
                parameters += math.prod(meta["shape"])
    layers, hidden, heads = (config.get(k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    if not (parameters and layers and hidden and heads):
        return None
    head_dim = config.get("head_dim") or int(hidden) // int(heads)
    return {"parameters": parameters, "layers": int(layers), "hidden": int(hidden), "heads": int(heads),
            "head_dim": int(head_dim)}


_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}


def kv_bytes_per_token(model: ModelConfig) -> int | None:
    """KV cache bytes one token takes in a local model (2 x layers x KV heads x head dim x dtype bytes, from
    its config.json; the cache has the model's dtype); None for a hub id not on this machine or a config
    that does not say."""
    config = _text_config(model.local_path())
    if config is None:
        return None
    layers, heads, hidden = (config.get(k) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (hidden // heads if hidden and heads else None)
    dtype = model.dtype if model.dtype != "auto" else (config.get("dtype") or config.get("torch_dtype"))
    size = _DTYPE_BYTES.get(str(dtype).removeprefix("torch."))
    if not all(isinstance(v, int) and v > 0 for v in (layers, kv_heads, head_dim)) or size is None:
        return None
    return 2 * layers * kv_heads * head_dim * size
