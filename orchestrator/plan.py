"""Planning: turn a config and its problems into units of work, each with a content key.

The grid is never run cell by cell (DESIGN.md, "Sample once, derive many"): a unit asks
for N_max samples per problem, thinking up to B_max, and every cell of the grid is derived
from those samples. A unit's key hashes everything that determines its rows, so a unit
already in the store is never run again, in this sweep or any other. The unit, its key and its
seeds are defined in units.py; the key's parts come from model_files.py (the model's files) and the
engine registry (the engine's version).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from orchestrator.config import Config
from orchestrator.datasets import Problem
from orchestrator.engines import engine_version
from orchestrator.engines.openai import estimate_bill
from orchestrator.model_files import kv_bytes_per_token, model_fingerprint
from orchestrator.units import Unit, unit_key

# Placement and memory settings change where and how fast a unit runs, not its rows.
_NOT_IN_KEY = ("tensor_parallel_size", "kv_cache_gib", "enforce_eager",  # how it runs, not what it generates
               "price", "max_concurrency", "request_timeout_s", "max_retries", "api_key_env")
# A verifier's keys added after verifier units were first stored (VerifierConfig): in its key only when set.
_VERIFIER_SINCE_V2 = ("input_template", "score_tokens")


def plan_units(cfg: Config, problems: list[Problem]) -> list[Unit]:
    """Chunk the problems into units of `sweep.problems_per_unit`, in dataset order."""
    sweep = cfg.sweep
    base = {
        # The rows' format and meaning: 2 = budgets count thinking tokens, not the delimiter; vote_class
        # and suffix_tokens columns. Bump it whenever the rows a unit produces change.
        "rows_version": 2,
        "model": {k: v for k, v in asdict(cfg.model).items() if k not in _NOT_IN_KEY},
        "model_files": model_fingerprint(cfg.model),
        "engine_version": engine_version(cfg.model),
        "dataset": cfg.dataset.name,
        "budgets": list(sweep.budgets),
        "n_samples": sweep.max_n,
        "seed": sweep.seed,
        "strategy": sweep.strategy,
        "extend_rounds": sweep.extend_rounds if sweep.strategy == "extend" else 0,
    }
    if cfg.verifier is not None:  # only then: units without a verifier keep their keys
        verifier = {k: v for k, v in asdict(cfg.verifier).items() if k not in _NOT_IN_KEY}
        for key in _VERIFIER_SINCE_V2:  # left out at their defaults: a toy-verifier sweep keeps its keys
            if verifier[key] is None:
                del verifier[key]
        base["verifier"] = {**verifier, "files": model_fingerprint(cfg.verifier)}
    units = []
    for start in range(0, len(problems), sweep.problems_per_unit):
        chunk = tuple(problems[start:start + sweep.problems_per_unit])
        units.append(Unit(unit_key(base, chunk), cfg.model, cfg.dataset.name, chunk, sweep.budgets,
                          sweep.max_n, sweep.seed, sweep.strategy, base["extend_rounds"], cfg.verifier))
    return units


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
