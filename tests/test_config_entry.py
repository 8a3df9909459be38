"""jobs/sweep.py, Hydra's own entry point, is `ttc sweep` per run: the same spelling, checks and one-line errors."""

import subprocess
import sys

import pytest

from jobs.sweep import _checked
from tests.conftest import PROJECT


def _job(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT / "jobs" / "sweep.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)


def test_schema_keys_reach_hydra_as_ttc_sweep_sets_them():
    assert _checked(["--multirun", "cluster.num_cpus=2", "sweep=debug", "sweep.seed=0,1", "hydra.verbose=true"]) == [
        "--multirun", "++cluster.num_cpus=2", "sweep=debug", "++sweep.seed=0,1", "hydra.verbose=true"]


def test_bad_overrides_are_one_line_and_exit_2(tmp_path):
    done = _job("sweep.budget=[8]", "tracking=none", f"store.root={tmp_path / 'store'}", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("ttc: error: sweep.budget is not a known key (did you mean sweep.budgets?)")
    done = _job("--multirun", "sweep.seed=0,1", "sweep.n=[0]", "tracking=none", f"store.root={tmp_path / 'store'}",
                cwd=tmp_path)  # a value: checked by `ttc sweep` in the first job
    assert done.returncode == 2 and "ttc: error: sweep.n=[0] is invalid" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "store").exists()


@pytest.mark.e2e
def test_each_job_is_a_ttc_sweep(tmp_path):
    store = tmp_path / "store"
    done = _job("--multirun", "model.engine=sim", "model.name=sim", "model.path=sim/demo", "model.sim.time_scale=0",
                "sweep=debug", "sweep.seed=0,1", "cluster.num_cpus=2", "tracking=none", f"store.root={store}",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # 8 problems, 4 a unit
    assert done.stdout.count("sweep:  ") == 2 and "(2 units run, 0 from the store)" in done.stdout
    assert len(list((store / "sweeps").iterdir())) == 2
