"""Hydra composition: `conf/` plus command-line overrides into validated `Config`s.

`compose(overrides)` gives one Config (one model x dataset); `compose_grid(overrides)` the
list `ttc sweep` runs (`model=a,b dataset=x,y`, or the `grid` of conf/config.yaml). Before
Hydra sees them, `check_overrides` refuses in one line what Hydra would misread or silently
accept (a key given twice, a misspelled key or group option). The typed schema and its
validation are orchestrator/config.py's; this module knows only how conf/ is laid out.

One spelling: `SECTION.KEY=VALUE` (`model.engine=sim`, `sweep.problems_per_unit=8`,
`model.sim.think_mean_tokens=20`) sets any key of the schema, whether or not the chosen YAML
states it: such a key reaches Hydra as its add-or-override `++SECTION.KEY=VALUE`. Hydra's own
`+KEY=`/`++KEY=` prefixes mean the same thing for a schema key and need not be written.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any

from orchestrator.config import (
    PROJECT_ROOT,
    SECTIONS,
    Config,
    SimConfig,
    VerifierConfig,
    did_you_mean,
    field_names,
    from_dict,
)
from orchestrator.errors import ConfigError

CONF_DIR = PROJECT_ROOT / "conf"
GROUPS = ("model", "dataset", "sweep", "tracking", "cluster", "experiment", "verifier")
GRID_GROUPS = ("model", "dataset")
# Groups whose option fills a record of the schema that is not a section every config has: `verifier=toy`
# picks a VerifierConfig, so `verifier.KEY=` is one of its keys.
_GROUP_SECTIONS: dict[str, type] = {"verifier": VerifierConfig}
# The fields of the schema that are mappings with keys of their own (`model.sim.seed=1`, `model.price.input=2`).
_MAPPINGS = ("sim", "price", "effort_budgets")


def _section_of(name: str) -> type | None:
    """The schema record a top-level key names (`model`, `sweep`, ..., `verifier`), or None."""
    return SECTIONS.get(name) or _GROUP_SECTIONS.get(name)


def _all_keys() -> list[str]:
    """Every key an override may name: the groups and SECTION.FIELD of the schema."""
    return [*GROUPS, *(f"{name}.{f}" for name, cls in SECTIONS.items() for f in field_names(cls))]


def group_options(group: str) -> list[str]:
    """The options of one conf/ group, e.g. the dataset names."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _parse(overrides: list[str]) -> list:
    """Hydra's own parse of each override; one that does not parse is named in one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for item in overrides:
        try:
            parsed += parser.parse_overrides([item])
        except HydraException as err:
            why = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise ConfigError(f"{item!r} is not a valid override ({why}); write KEY=VALUE, e.g. 'sweep.n=[1,4,16]', "
                              "dataset=gsm8k or model.name='my model'") from None
    return parsed


def _check_key(key: str) -> None:
    """A key the schema has, or one line with the nearest keys (a misspelling is never suggested as `+key=`)."""
    section, dot, rest = key.partition(".")
    if section in ("hydra", "published") or key.startswith("hydra/"):
        return  # Hydra's own settings and groups (hydra/job_logging=...); recipe points: left to Hydra, from_dict
    if not dot:
        if section in GROUPS or section in SECTIONS:
            return
        raise ConfigError(f"{key} is not a config group or key{did_you_mean(key, _all_keys())}; groups: "
                          f"{', '.join(GROUPS)}; keys are SECTION.KEY, e.g. sweep.n, model.path")
    cls = _section_of(section)
    if cls is None:
        dotted = [k for k in _all_keys() if "." in k]
        raise ConfigError(f"{key} is not a known key{did_you_mean(key, dotted)}; sections: "
                          f"{', '.join([*SECTIONS, *_GROUP_SECTIONS])}")
    name, _, deeper = rest.partition(".")
    _check_field(section, name, field_names(cls))
    if deeper and name not in _MAPPINGS:
        raise ConfigError(f"{key} is not a known key: {section}.{name} has no keys of its own")
    if deeper and name == "sim":  # a typed section: its keys are known
        _check_field(f"{section}.sim", deeper, field_names(SimConfig))


def _check_field(prefix: str, name: str, known: list[str]) -> None:
    """`prefix.name` names one of `known`, or one line with the nearest ones."""
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(f'{prefix}.{c}' for c in close)}?)" if close else ""
        raise ConfigError(f"{prefix}.{name} is not a known key{hint}; allowed: {', '.join(sorted(known))}")


def _check_option(override: Any, grid: bool) -> None:
    group, text = override.key_or_group, override.input_line
    if override.value() is None:
        raise ConfigError(f"{text}: to pick no {group}, leave {group}= out (or delete the default: ~{group})")
    if override.is_sweep_override():
        if not (grid and group in GRID_GROUPS):
            raise ConfigError(f"{text}: a comma list makes a grid only for {' and '.join(GRID_GROUPS)} of `ttc sweep`; "
                              f"pick one {group}")
        options = list(override.sweep_string_iterator())
    else:
        options = [override.get_value_element_as_str()]
    allowed = group_options(group)
    for option in options:
        if option not in allowed:
            raise ConfigError(f"{group}={option} is not a known option{did_you_mean(option, allowed)}; allowed: "
                              f"{', '.join(allowed)} (conf/{group}/)")
    if len(set(options)) < len(options):
        raise ConfigError(f"{text}: an option is listed twice; list each {group} once")


def check_overrides(overrides: list[str], grid: bool = False) -> None:
    """Refuse, in one line each, what Hydra would misread or silently accept: an override that does not
    parse, an empty key (`=8`), a key given twice (Hydra keeps the last without a word), an unknown key
    or group option (naming the nearest ones), and a comma list except `model=a,b` / `dataset=x,y` of a
    grid (`grid=True`). The values themselves are the dataclasses' business."""
    from hydra.core.override_parser.types import OverrideType

    seen: dict[tuple[str, str | None], str] = {}
    for override in _parse(overrides):
        key, text = override.key_or_group, override.input_line
        if not key:
            raise ConfigError(f"{text!r} has no key before '='; write KEY=VALUE, e.g. sweep.seed=1")
        if (key, override.package) in seen:
            hint = f"; a grid over several is one comma list, e.g. {key}=a,b" if grid and key in GRID_GROUPS else ""
            raise ConfigError(f"{key} is given twice ({seen[key, override.package]} and {text}); give each key "
                              f"once{hint}")
        seen[key, override.package] = text
        _check_key(key)
        if key in GROUPS and override.type != OverrideType.DEL:
            _check_option(override, grid)
        elif override.is_sweep_override():
            raise ConfigError(f"{text}: a comma list of values (a Hydra sweep) works only for "
                              f"{' and '.join(f'{g}=' for g in GRID_GROUPS)} of `ttc sweep`; for other keys run "
                              f"`python jobs/sweep.py --multirun {text}`")


def schema_override(override: str) -> str:
    """`SECTION.KEY=VALUE` (or `+`/`++SECTION.KEY=VALUE`) for a key of the schema becomes Hydra's add-or-override
    `++SECTION.KEY=VALUE`, so it works whether or not the chosen YAML states the key (most leave keys to the
    dataclass defaults); any other override is returned as it is, for Hydra to accept or refuse."""
    key, sep, value = override.partition("=")
    section, dot, rest = key.lstrip("+").partition(".")
    cls = _section_of(section)
    if sep and dot and cls is not None and rest.split(".")[0] in field_names(cls):
        return f"++{section}.{rest}={value}"
    return override


def compose(overrides: list[str]) -> Config:
    """Compose conf/ with Hydra overrides (`sweep.n=[1,4]`, `dataset=gsm8k`) into a validated Config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    check_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=[schema_override(o) for o in overrides])
        data = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # Hydra raises ValueError for some input
        raise ConfigError(" ".join(str(err).split())) from None
    assert isinstance(data, dict)
    return from_dict(data)


def compose_grid(overrides: list[str]) -> list[Config]:
    """Like `compose`, but `model=a,b` and `dataset=x,y` make a grid: one Config per (model, dataset)
    pair, sharing every other setting (`ttc sweep model=toy,r1-distill-qwen-1.5b dataset=gsm8k,math500`)."""
    check_overrides(overrides, grid=True)
    choices: list[list[str]] = []
    for item in overrides:
        group, sep, option = item.partition("=")
        if sep and group in GRID_GROUPS and "," in option:
            choices.append([f"{group}={o.strip()}" for o in option.split(",") if o.strip()])
        else:
            choices.append([item])
    for group, options in default_grid(overrides).items():
        choices.append([f"{group}={o}" for o in options])
    return [compose(list(combo)) for combo in itertools.product(*choices)]


def default_grid(overrides: list[str]) -> dict[str, list[str]]:
    """The grid a sweep runs over where the command line chooses nothing: `grid` of conf/config.yaml (the
    default run compares `model: [toy, toy-base]`), or with experiment=NAME that recipe's own `grid` (none
    if it has none). A group the command line names in any way (`model=..`, `model.KEY=..`, `~model`)
    is the command line's choice and is not expanded."""
    from omegaconf import OmegaConf

    keys = {o.lstrip("+~").partition("=")[0] for o in overrides}
    named = {k.partition(".")[0] for k in keys}
    experiment = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").partition("=")[0] == "experiment"),
                      None)
    source = CONF_DIR / (f"experiment/{experiment}.yaml" if experiment else "config.yaml")
    grid = (OmegaConf.to_container(OmegaConf.load(source)).get("grid") or {}) if source.is_file() else {}
    where = source.relative_to(PROJECT_ROOT)
    if not (isinstance(grid, dict) and set(grid) <= set(GRID_GROUPS)):
        raise ConfigError(f"grid ({where})={grid!r} is invalid: a mapping of {' and/or '.join(GRID_GROUPS)} to "
                          "lists of options")
    for group, options in grid.items():
        allowed = group_options(group)
        if not (isinstance(options, list) and len(options) == len(set(options)) > 0
                and all(o in allowed for o in options)):
            raise ConfigError(f"grid.{group} ({where})={options!r} is invalid: a list of distinct options of "
                              f"conf/{group}/: {', '.join(allowed)}")
    return {group: list(options) for group, options in grid.items() if group not in named}
