"""Config composition through Hydra's compose API: every group option composes; bad values name their key; one
spelling sets any key; defaults are stated once."""

import dataclasses
import re

import pytest
from omegaconf import OmegaConf

from orchestrator.compose import CONF_DIR, GROUPS, compose, group_options
from orchestrator.config import PROJECT_ROOT, SECTIONS, SimConfig, SweepConfig, resolve_path
from orchestrator.errors import ConfigError


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    options = group_options(group)
    assert options, f"conf/{group}/ has no options"
    for option in options:
        cfg = compose([f"{group}={option}"])
        assert cfg.published if group == "experiment" else getattr(cfg, group) is not None


def test_grid_overrides_reach_the_config():
    cfg = compose(["dataset=gsm8k", "dataset.limit=50", "sweep.budgets=[128,512]", "sweep.n=[1,4,16]",
                   "sweep.seed=7", "store.root=/tmp/somewhere", "model=r1-distill-qwen-1.5b"])
    assert cfg.dataset.name == "gsm8k" and cfg.dataset.limit == 50
    assert cfg.sweep.budgets == (128, 512) and cfg.sweep.n == (1, 4, 16) and cfg.sweep.max_n == 16
    assert cfg.sweep.seed == 7 and str(cfg.store.path) == "/tmp/somewhere"


@pytest.mark.parametrize("override, needle", [
    ("sweep.budgets=[-5,10]", "sweep.budgets"),
    ("sweep.budgets=[10,10]", "strictly increasing"),
    ("sweep.budgets=[20,10]", "strictly increasing"),
    ("sweep.budgets=[]", "non-empty"),
    ("sweep.n=[]", "sweep.n"),
    ("sweep.n=[0,4]", "sweep.n"),
    ("sweep.strategy=greedy", "sweep.strategy"),
    ("dataset=no_such_dataset", "dataset=no_such_dataset is not a known option"),
    ("model=nope", "model=nope"),
    ("dataset.limit=0", "dataset.limit"),
    ("model.temperature=-1", "model.temperature"),
    ("sweep.bogus=1", "sweep.bogus"),
    ("+sweep.bogus=1", "sweep.bogus is not a known key"),
    ("sweep.budgets=[100000]", "model.max_model_len"),
    ("sweep.budget=[8]", "did you mean sweep.budgets?"),
    ("budgets=[8]", "did you mean sweep.budgets?"),
    ("datset=gsm8k", "did you mean dataset"),
    ("=8", "no key before '='"),
    ("model.revision=1234567", "quote a value that looks like a number"),
    ("model.temperature=nan", "a finite number"),
    ("sweep.name=[1]", "sweep.name=[1] is invalid: a string"),
    ("sweep.max_unit_rows=0", "sweep.max_unit_rows"),
    ("cluster.connect_timeout_s=0", "cluster.connect_timeout_s"),
    ("experiment=null", "leave experiment= out"),
])
def test_bad_values_raise_one_line_naming_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        compose([override])
    message = str(err.value)
    assert needle in message and "\n" not in message


def _hydra_value(value):
    """`value` as an override writes it, or None where that needs quoting (text with spaces, delimiters)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ",".join(map(repr, value)) + "]"
    if isinstance(value, str) and re.fullmatch(r"[\w./-]+", value):
        return value
    return None


def test_every_schema_key_takes_the_plain_spelling():
    # One spelling: SECTION.KEY=VALUE sets any key of the schema, stated in the chosen YAML or left to its
    # dataclass default (cluster/local.yaml states only `kind`); the verifier's keys are a model's.
    base = compose(["verifier=toy"])
    keys = [(section, f.name, _hydra_value(getattr(getattr(base, section), f.name)))
            for section in [*SECTIONS, "verifier"] for f in dataclasses.fields(getattr(base, section))]
    keys = [(section, name, text) for section, name, text in keys if text is not None]
    assert len(keys) > 60
    cfg = compose(["verifier=toy", *(f"{section}.{name}={text}" for section, name, text in keys)])
    assert cfg == base
    assert compose(["cluster.num_cpus=2"]).cluster.num_cpus == 2  # not in conf/cluster/local.yaml
    assert compose(["verifier=toy", "verifier.kv_cache_gib=0.5"]).verifier.kv_cache_gib == 0.5


def test_hydra_prefixes_mean_the_same_on_schema_keys():
    assert compose(["+sweep.n=[1,2]"]).sweep.n == compose(["++sweep.n=[1,2]"]).sweep.n == (1, 2)


def test_model_sim_is_a_typed_section():
    sim = compose(["model.engine=sim", "model.sim.think_mean_tokens=3"]).model.sim
    assert sim == SimConfig(think_mean_tokens=3)
    assert compose(["model.engine=sim", "model.sim={seed: 4, capacity: 9}"]).model.sim == SimConfig(seed=4, capacity=9)
    assert compose(["model.engine=sim"]).model.sim is None  # the engine uses SimConfig()'s defaults


@pytest.mark.parametrize("overrides, needle", [
    (["model.sim.think_mean=5"], ("model.sim.think_mean is not a known key (did you mean model.sim.think_sigma or "
                                  "model.sim.think_mean_tokens?)")),
    (["model.sim={think_mean: 5}"], "model.sim.think_mean is not a known key"),
    (["model.sim.think_sigma=-1"], "model.sim.think_sigma=-1 is invalid: a number >= 0"),
    (["model.sim.seed=1.5"], "model.sim.seed=1.5 is invalid: an integer"),
    (["model.sim.capacity=0"], "model.sim.capacity=0 is invalid"),
    (["model.sim.answer_tokens=100"],
     "model.sim.answer_tokens=100 is invalid: an integer in [1, model.answer_max_tokens=8]"),
    (["model.sim=7"], "model.sim=7 is invalid: null or a mapping"),
])
def test_bad_sim_settings_name_model_sim_key(overrides, needle):
    with pytest.raises(ConfigError) as err:
        compose(["model.engine=sim", *overrides])
    assert needle in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="model.sim is set with model.engine='vllm': only with model.engine=sim"):
        compose(["model.sim.seed=1"])


def test_defaults_are_stated_once():
    # The dataclass defaults are the one source: a conf/ YAML of these groups states a key only where it
    # differs from the default, or the one key that names its option (cluster.kind, tracking.enabled).
    names_the_option = {"cluster": "kind", "tracking": "enabled"}
    for group in ("sweep", "dataset", "cluster", "tracking"):
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            data = OmegaConf.to_container(OmegaConf.load(path)) or {}
            data = data.get(group, {}) if path.read_text().startswith("# @package _global_") else data
            for f in dataclasses.fields(SECTIONS[group]):
                if f.name in data and f.name != names_the_option.get(group) and f.default is not dataclasses.MISSING:
                    default = list(f.default) if isinstance(f.default, tuple) else f.default
                    assert data[f.name] != default, (
                        f"{path.relative_to(CONF_DIR)} restates {group}.{f.name}={default!r}")
    root = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "config.yaml"))
    assert not set(root) & set(SECTIONS), "conf/config.yaml restates section defaults"
    assert compose([]).sweep.problems_per_unit == SweepConfig().problems_per_unit == 32


def test_debug_sweep_is_small_by_itself():
    cfg = compose(["sweep=debug"])
    assert cfg.dataset.limit == 8 and cfg.sweep.max_n <= 2 and len(cfg.sweep.budgets) <= 2
    assert compose(["sweep=debug", "dataset=gsm8k"]).dataset.limit == 8  # whichever dataset
    assert compose(["sweep=debug", "dataset.limit=32"]).dataset.limit == 32  # the command line wins
    assert compose([]).dataset.limit is None


def test_relative_paths_try_the_working_directory_then_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("data/toy_arith.jsonl") == PROJECT_ROOT / "data/toy_arith.jsonl"  # not here: the project's
    (tmp_path / "data").mkdir()
    (tmp_path / "data/toy_arith.jsonl").write_text("{}\n")
    assert resolve_path("data/toy_arith.jsonl") == tmp_path / "data/toy_arith.jsonl"  # here first
    assert resolve_path(str(tmp_path)) == tmp_path


def test_keys_given_twice_are_refused():
    with pytest.raises(ConfigError, match=r"dataset is given twice \(dataset=toy_arith and dataset=gsm8k\)"):
        compose(["dataset=toy_arith", "dataset=gsm8k"])
    with pytest.raises(ConfigError, match="sweep.seed is given twice"):
        compose(["sweep.seed=1", "++sweep.seed=2"])  # Hydra's prefix does not make it another key
