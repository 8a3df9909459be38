"""Config composition through Hydra's compose API: every group option composes; bad values name their key."""

import pytest

from orchestrator.config import GROUPS, ConfigError, compose, group_options


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


def test_schema_keys_work_with_or_without_plus():
    assert compose(["+sweep.n=[1,2]"]).sweep.n == (1, 2)  # `+` on a schema key is add-or-override
    sim = compose(["model.engine=sim", "model.sim.think_mean_tokens=3"]).model.sim
    assert sim == {"think_mean_tokens": 3}


def test_keys_given_twice_are_refused():
    with pytest.raises(ConfigError, match=r"dataset is given twice \(dataset=toy_arith and dataset=gsm8k\)"):
        compose(["dataset=toy_arith", "dataset=gsm8k"])
    with pytest.raises(ConfigError, match="sweep.seed is given twice"):
        compose(["sweep.seed=1", "++sweep.seed=2"])
