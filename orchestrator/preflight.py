"""Preflight: every check a sweep makes before it starts anything (no Ray, no engine, nothing written).

`check(grid)` is the first thing `run()` does and all that `ttc sweep --dry-run` does. It returns
the sweep's plan (problems, units, which of them the store already holds, its size) or raises
ConfigError / DatasetError, one line naming the key, file or value and what is allowed. In order:

1. store.root is a directory that can be written, or can be created (not a file, not under one);
2. tracking.uri has a scheme MLflow can use (without importing mlflow);
3. model.path: a local path exists and holds a model (config.json and weights);
4. the dataset files are UTF-8 JSONL with a problem on every line (orchestrator/datasets.py);
5. the size: sample rows in one unit (sweep.max_unit_rows) and in all (sweep.max_rows), the store's
   growth against the free disk under store.root, and a KV cache (model.kv_cache_gib) that holds one
   sequence of model.max_model_len tokens;
6. with the model's own tokenizer: model.think_end is one token, and the longest prompt + the largest
   budget + the forcing suffix + model.answer_max_tokens fits model.max_model_len;
7. a model behind a chat API (model.engine=openai, model.api=chat) can express every budget;
8. a model behind a server or an API, if units are to run: its key variable (model.api_key_env) is set,
   model.base_url answers, takes the key and serves model.served_name (skipped with placement=False);
9. placement on this machine (cluster.kind=local): a replica fits one node's GPUs, or, without GPUs,
   runs on the CPU with tensor_parallel_size 1 and a KV cache smaller than the memory.

Placement on a running cluster (cluster=ray) needs the connection: `run()` checks it right after
connecting (within cluster.connect_timeout_s), still before anything is written.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.config import Config, ModelConfig, StoreConfig, TrackingConfig, resolve_path
from orchestrator.datasets import Problem, load_problems
from orchestrator.errors import ConfigError
from orchestrator.plan import estimate_size, plan_units
from orchestrator.prompts import context_tokens, prompt_ids
from orchestrator.store import Store
from orchestrator.units import Unit
from orchestrator.verifier import check_same_vocabulary

# Tracking-store schemes MLflow itself registers (mlflow/tracking/_tracking_service/utils.py); plugins add
# theirs under the entry-point group below. Database URIs may name a driver: postgresql+psycopg2://...
MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                  "uc")
MLFLOW_PLUGIN_GROUP = "mlflow.tracking_store"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
GB = 1e9


@dataclass
class Checked:
    """A sweep that passed every check: what `run()` goes on with."""

    parts: list[Config]
    """One config per (model, dataset) pair; parts[0] holds the shared sections."""
    problems: list[list[Problem]]
    units: list[Unit]
    cached: list[Unit]
    """Units whose files are in the store already (verified when the sweep starts)."""
    todo: list[Unit]
    store: Store
    size: dict[str, Any]
    """plan.estimate_size of all units, and `new_store_bytes`, `free_bytes` under store.root."""


def check(grid: Config | Sequence[Config], placement: bool = True) -> Checked:
    """Run every check that needs no cluster; raise ConfigError or DatasetError at the first failure.
    `placement=False` skips what depends on this machine's GPUs and memory (`ttc reproduce --dry-run`
    sizes a GPU recipe on a laptop)."""
    parts = [grid] if isinstance(grid, Config) else list(grid)
    cfg = parts[0]  # the sections every part shares
    existing = check_store_root(cfg.store)
    if cfg.tracking.enabled:
        check_tracking_uri(cfg.tracking)
    for part in parts:
        check_model(part.model)
    loaded = {dataset: load_problems(dataset) for dataset in dict.fromkeys(part.dataset for part in parts)}
    problems = [loaded[part.dataset] for part in parts]
    units = [u for part, probs in zip(parts, problems) for u in plan_units(part, probs)]
    store = Store(cfg.store.path)
    stored = [store.has_unit(u.model.name, u.dataset, u.key) for u in units]
    cached = [u for u, done in zip(units, stored) if done]
    todo = [u for u, done in zip(units, stored) if not done]
    size = estimate_size(cfg, units)
    size["new_store_bytes"] = estimate_size(cfg, todo)["store_bytes"] if todo else 0
    size["free_bytes"] = shutil.disk_usage(existing).free
    check_size(cfg, size)
    for part, probs in zip(parts, problems):
        check_prompts(part, probs)
    models = list({part.model.name: part.model for part in parts}.values())
    for part in parts:
        check_api_budgets(part)
        check_verifier(part)
    if placement and todo:
        check_endpoints(models)
    if placement and todo and cfg.cluster.kind == "local":
        from orchestrator import ray_backend  # imports Ray (starts nothing)

        ray_backend.check_placement(models, cfg.cluster, local=True)  # PlacementError: a ConfigError
    return Checked(parts, problems, units, cached, todo, store, size)


def check_store_root(store: StoreConfig) -> Path:
    """store.root is a directory that can be written, or can be created; returns its nearest existing
    directory (itself, or the ancestor it will be created in)."""
    root = store.path
    if root.exists() and not root.is_dir():
        raise ConfigError(f"store.root={store.root!r}: {root} is a file, not a directory")
    existing = root
    while not existing.exists():  # a path under a regular file does not exist either: the file stops the walk
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"store.root={store.root!r}: {existing} is a file, so no directory can be made under it")
    # os.access is no test when running as root (it says yes to read-only mounts and /proc): create and
    # remove a probe file where the store's first directory would go.
    try:
        fd, probe = tempfile.mkstemp(prefix=".ttc-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"store.root={store.root!r}: cannot write in {existing} ({err.strerror or err}); "
                          "pick a directory you can write") from None
    return existing


def check_tracking_uri(tracking: TrackingConfig) -> None:
    """A tracking URI MLflow has a store for, judged by its scheme (mlflow is not imported here)."""
    uri = tracking.uri
    if uri is None:  # the default: sqlite under store.root, checked with it
        return
    scheme = urlparse(uri).scheme.lower()
    plugins = {ep.name for ep in entry_points(group=MLFLOW_PLUGIN_GROUP)}
    if scheme.split("+")[0] not in MLFLOW_SCHEMES and scheme not in plugins:
        raise ConfigError(f"tracking.uri={uri!r}: MLflow has no tracking store for the scheme {scheme!r}; allowed: "
                          "http(s)://HOST:PORT, sqlite:////ABS/PATH.db, file:///ABS/DIR, postgresql://, mysql://, "
                          "mssql://, databricks (or tracking=none)")
    if scheme == "sqlite":  # sqlite creates the database file, not its directory
        path = Path(urlparse(uri).path.removeprefix("/"))
        if str(path) not in ("", ":memory:") and not path.parent.is_dir():
            raise ConfigError(f"tracking.uri={uri!r}: no directory {path.parent} for the sqlite database "
                              "(an absolute path is sqlite:////abs/path/mlflow.db)")


def check_model(model: ModelConfig, section: str = "model") -> None:
    """A local model path exists and holds a model. A hub id (ORG/NAME, not on this machine) is left to
    vLLM, which downloads it; the simulated engine loads nothing. `section` names the key in the error
    (`verifier` for a verifier)."""
    if model.engine == "sim":
        return
    path = model.path
    local = model.local_path()
    if local is None:
        clearly_local = path.startswith(("/", "./", "../", "~")) or (
            len(Path(path).parts) > 1 and resolve_path(path).parent.is_dir())
        if clearly_local:  # absolute, or under a directory that exists here (models/nope); `gpt2` is a hub id
            raise ConfigError(f"{section}.path={path!r}: no such model directory ({resolve_path(path)}); a hub id "
                              "is ORG/NAME")
        return
    if not (local / "config.json").is_file():
        raise ConfigError(f"{section}.path={path!r}: {local} holds no model (no config.json); a model directory holds "
                          "config.json, the tokenizer and the weights (*.safetensors)")
    if not any(next(local.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ConfigError(f"{section}.path={path!r}: {local} holds no weights ({', '.join(WEIGHT_FILES)})")


def check_size(cfg: Config, size: dict[str, Any]) -> None:
    """Refuse a sweep whose rows cannot fit the memory limits, the disk, or whose KV cache cannot hold one
    sequence, naming the figure, the limit and the key that moves it."""
    sweep = cfg.sweep
    grid = f"sweep.problems_per_unit={sweep.problems_per_unit} x N_max={sweep.max_n} x {len(sweep.budgets)} budgets"
    if size["max_unit_rows"] > sweep.max_unit_rows:
        raise ConfigError(f"sweep.n={list(sweep.n)}: one unit would hold {size['max_unit_rows']:,} sample rows "
                          f"({grid}), more than sweep.max_unit_rows={sweep.max_unit_rows:,} (an engine holds a "
                          "unit's rows in memory, about 1.5 KB each); lower sweep.n or sweep.problems_per_unit, or "
                          "raise sweep.max_unit_rows")
    if size["rows"] > sweep.max_rows:
        raise ConfigError(f"sweep.n={list(sweep.n)}: the sweep would hold {size['rows']:,} sample rows "
                          f"({size['problems']:,} problems x N_max={sweep.max_n} x {len(sweep.budgets)} budgets), more "
                          f"than sweep.max_rows={sweep.max_rows:,} (the driver reads them all to compute the cells, "
                          "about 200 bytes each); lower sweep.n, sweep.budgets or dataset.limit, or raise "
                          "sweep.max_rows")
    if size["new_store_bytes"] > size["free_bytes"]:
        raise ConfigError(f"store.root={cfg.store.root!r}: the sweep would add about "
                          f"{size['new_store_bytes'] / GB:,.1f} GB of samples, but only "
                          f"{size['free_bytes'] / GB:,.1f} GB are free there; free some "
                          "space or pick another store.root")
    for name, kv in size["kv"].items():
        if kv["sequence_bytes"] > kv["cache_bytes"]:
            gib = kv["sequence_bytes"] / 2**30
            raise ConfigError(f"model.kv_cache_gib={kv['cache_gib']:g}: the KV cache of model '{name}' cannot hold "
                              f"one sequence of model.max_model_len tokens ({gib:.3g} GiB at {kv['bytes_per_token']:,} "
                              f"bytes per token); raise model.kv_cache_gib to at least {gib:.3g} or lower "
                              "model.max_model_len")


def check_prompts(cfg: Config, problems: list[Problem]) -> None:
    """With the model's tokenizer, as the engine will see them: think_end is one token, and the longest
    prompt + largest budget + forcing suffix + answer fits the context (the engine's _check_lengths)."""
    model = cfg.model
    local = model.local_path()
    if model.engine == "sim" or local is None:
        # A hub id that is not on this machine cannot be tokenized without downloading it: the engine
        # checks the same lengths when it has loaded the model (and fails the unit, not the sweep).
        return
    tokenizer = _tokenizer(str(local))
    end = tokenizer.encode(model.think_end, add_special_tokens=False)
    if len(end) != 1:
        raise ConfigError(f"model.think_end={model.think_end!r} must be one token of the tokenizer in {local}; "
                          f"it is {len(end)} tokens")
    suffix = len(tokenizer.encode(model.forcing_suffix, add_special_tokens=False))
    lengths = [(len(prompt_ids(tokenizer, model, p.problem)), p.id) for p in problems]
    longest, problem_id = max(lengths)
    budget = cfg.sweep.max_budget
    need = context_tokens(longest, budget, suffix, model)
    if need > model.max_model_len:
        too_long = sum(length > longest - (need - model.max_model_len) for length, _ in lengths)
        raise ConfigError(f"model.max_model_len={model.max_model_len}: problem {problem_id!r} of dataset "
                          f"'{cfg.dataset.name}' needs {need} tokens (prompt {longest} + largest budget {budget} "
                          f"+ forcing suffix {max(suffix, 1)} + model.answer_max_tokens {model.answer_max_tokens}); "
                          f"{too_long} of {len(problems)} problems do not fit model '{model.name}'; lower "
                          "sweep.budgets, or use a model with a longer context")


def check_api_budgets(cfg: Config) -> None:
    """A model behind a chat API can express every budget of the grid (an effort level for each; no extension)."""
    from orchestrator.engines.openai import budget_error

    why = budget_error(cfg.model, cfg.sweep.budgets, cfg.sweep.strategy)
    if why:
        raise ConfigError(why)


def check_verifier(cfg: Config) -> None:
    """A verifier (conf/verifier/) is a model on this machine or a hub id, scoring a model run by vLLM. One that
    reads the generator's token ids (no verifier.input_template) must share the generator's vocabulary; one
    that reads text has its own tokenizer. Hub ids cannot be compared without downloading them; the engine
    loads them as it loads the generator."""
    if cfg.verifier is None:
        return
    if cfg.model.engine != "vllm":
        raise ConfigError(f"verifier={cfg.verifier.name!r}: a verifier scores the token ids of a model run by the "
                          f"vLLM engine; model {cfg.model.name!r} runs on model.engine={cfg.model.engine!r}")
    check_model(cfg.verifier, "verifier")
    generator, verifier = cfg.model.local_path(), cfg.verifier.local_path()
    if cfg.verifier.input_template is not None or generator is None or verifier is None:
        return
    why = check_same_vocabulary(generator, verifier)
    if why:
        raise ConfigError(f"verifier.path={cfg.verifier.path!r}: {why}")


def check_endpoints(models: Sequence[ModelConfig]) -> None:
    """Each model behind a server or an API (engine=openai): its key variable is set (named, never shown), its
    base_url answers GET /models, takes the key, and serves model.served_name."""
    from orchestrator.engines.openai import probe

    for model in models:
        if model.engine != "openai":
            continue
        probe(model)  # ProbeError is bad input (orchestrator/errors.py): one line, exit 2


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str):
    """The model's own tokenizer, as vLLM loads it (AutoTokenizer from the local directory): cheap, no weights."""
    from transformers import AutoTokenizer

    try:
        # No model_max_length: the check measures prompts longer than the context without a warning.
        return AutoTokenizer.from_pretrained(path, model_max_length=sys.maxsize)
    except Exception as err:  # noqa: BLE001 - missing or broken tokenizer files: the engine could not load them either
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ConfigError(f"model.path={path!r}: cannot load its tokenizer ({first})") from None
