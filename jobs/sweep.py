"""Run a sweep through Hydra's own entry point, for Hydra's multirun, sweepers and launchers.

    python jobs/sweep.py dataset=gsm8k dataset.limit=50 'sweep.budgets=[128,512]' 'sweep.n=[1,4,16]'
    python jobs/sweep.py --multirun model=toy sweep.seed=0,1,2

`ttc sweep` does the same with ttc's checks of the overrides themselves (a key given twice, a
misspelled key); both call `orchestrator.sweep.run`, and bad input is one line and exit status 2.
"""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from orchestrator.config import ConfigError, from_dict
from orchestrator.datasets import DatasetError
from orchestrator.sweep import run


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(from_dict(OmegaConf.to_container(cfg, resolve=True)))
    except (ConfigError, DatasetError) as err:  # Hydra would print a traceback; bad input is one line
        print(f"ttc: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
