"""`ttc sweep` through Hydra's own entry point, for Hydra's multirun, sweepers and launchers.

    python jobs/sweep.py dataset=gsm8k dataset.limit=50 'sweep.budgets=[128,512]' 'sweep.n=[1,4,16]'
    python jobs/sweep.py --multirun sweep.seed=0,1,2        # three sweeps, one per seed

Each run (each job of a multirun) is `ttc sweep` with that run's overrides: the same checks of the
overrides, the same one-line errors and exit status 2, the same `grid` of conf/config.yaml (with no
model=..., the toy reasoner and the toy base model in one sweep). What differs is Hydra's: a comma list
is a multirun, so `--multirun model=a,b` runs one sweep per model where `ttc sweep model=a,b` runs one
sweep over both, and Hydra writes its own outputs/ (or multirun/) directory of logs.
"""

import sys

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from orchestrator.cli import main as ttc
from orchestrator.compose import check_overrides, schema_override
from orchestrator.errors import ConfigError


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # Hydra composed `cfg` (for its sweepers and launchers); the run itself is `ttc sweep` with the same
    # overrides, so both entry points check, compose and report one way. `ttc sweep` composes with Hydra's
    # compose API, which needs the global Hydra of this app set aside while it runs.
    overrides = list(HydraConfig.get().overrides.task)
    app = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        status = ttc(["sweep", *overrides])
    finally:
        GlobalHydra.instance().clear()
        GlobalHydra.instance().initialize(app)
    if status:
        sys.exit(status)


def _checked(argv: list[str]) -> list[str]:
    """The overrides as `ttc sweep` reads them: a key of the schema that the chosen YAML leaves to its default
    (`cluster.num_cpus=2`) becomes Hydra's add-or-override `++` (Hydra alone refuses a key its YAML does not
    state). Without --multirun they get `ttc sweep`'s one-line checks before Hydra's own messages."""
    overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    if not {"-m", "--multirun"} & set(argv):
        try:
            check_overrides(overrides, grid=False)
        except ConfigError as err:
            print(f"ttc: error: {err}", file=sys.stderr)
            sys.exit(2)
    return [schema_override(a) if a in overrides else a for a in argv]


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_checked(sys.argv[1:])]
    main()
