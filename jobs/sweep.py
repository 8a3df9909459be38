"""Run a sweep through Hydra's own entry point, for Hydra's multirun, sweepers and launchers.

    python jobs/sweep.py dataset=gsm8k dataset.limit=50 'sweep.budgets=[128,512]' 'sweep.n=[1,4,16]'
    python jobs/sweep.py --multirun model=toy sweep.seed=0,1,2

`ttc sweep` does the same with ttc's one-line errors; both call `orchestrator.sweep.run`.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from orchestrator.config import from_dict
from orchestrator.sweep import run


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(from_dict(OmegaConf.to_container(cfg, resolve=True)))


if __name__ == "__main__":
    main()
