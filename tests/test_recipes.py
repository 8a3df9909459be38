"""Reproduction recipes (conf/experiment/): each composes, names its sources, and plans with --dry-run."""

import pytest

from orchestrator.cli import main
from orchestrator.compose import compose, group_options

RECIPES = group_options("experiment")


def test_the_required_recipes_exist():
    assert {"r1_distill_qwen_1.5b_aime24", "r1_distill_qwen_7b_aime24", "r1_distill_qwen_32b_aime24",
            "s1_32b_budget_forcing_aime24", "llmonkeys_pythia_70m_math"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_composes_with_sourced_points_on_its_grid(recipe):
    cfg = compose([f"experiment={recipe}"])
    assert cfg.published, "a recipe pairs its grid with published numbers"
    for point in cfg.published:
        assert point.budget in cfg.sweep.budgets and point.n in cfg.sweep.n
        assert "arXiv" in point.source or "models/" in point.source or "github.com/" in point.source


@pytest.mark.parametrize("recipe", RECIPES)
def test_dry_run_plans_without_a_model(recipe, capsys):
    assert main(["reproduce", recipe, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "units" in out and "samples" in out and "GPU-hours" in out and "reproduces" in out


def test_unknown_recipe_exits_2(capsys):
    assert main(["reproduce", "no_such_recipe", "--dry-run"]) == 2
    assert "allowed:" in capsys.readouterr().err


@pytest.mark.e2e
def test_reproduce_runs_the_toy_recipe_and_writes_the_comparison(tmp_path):
    from tests.conftest import ttc

    run = ttc("reproduce", "toy_scaling", "dataset.limit=24", "sweep.problems_per_unit=12", f"store.root={tmp_path}")
    assert run.returncode == 0, run.stdout + run.stderr
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    table = (sweep_dir / "reproduction.md").read_text()
    assert table.count("| pass@1 at B=") == 4 and "| maj@16 at B=50 |" in table
    assert (sweep_dir / "reproduction.csv").is_file() and (sweep_dir / "plots" / "reproduction.png").is_file()
