"""Every check made before a sweep starts (orchestrator/preflight.py), through the real command line.

Each case: exit status 2, exactly one line on stderr naming the key, file or value, and nothing
written (no sweeps/ directory, no mlflow.db under store.root) and no Ray started. The checks need
no engine: these are fast-tier tests, the model is the committed toy reasoner's directory.
"""

import json
import os
import shutil
import socket

import pytest

from orchestrator.cli import main
from orchestrator.config import PROJECT_ROOT
from tests.conftest import ttc

TOY = PROJECT_ROOT / "models" / "toy-reasoner"


def refused(capsys, store, *overrides, command=("sweep",)) -> str:
    """Run `ttc sweep OVERRIDES store.root=STORE`; assert the contract; return the one error line."""
    import ray

    status = main([*command, *overrides, f"store.root={store}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("ttc: error: "), err
    assert not (store / "sweeps").exists() and not (store / "mlflow.db").exists()
    assert not ray.is_initialized()
    return err[0]


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


# --- dataset files ---------------------------------------------------------------------------

def test_latin1_dataset_names_file_and_line(capsys, store, tmp_path):
    data = tmp_path / "latin1.jsonl"
    good = json.dumps({"id": "a", "problem": "1+1", "answer": "2"}) + "\n"
    data.write_bytes(good.encode() + '{"id": "b", "problem": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"))
    line = refused(capsys, store, f"dataset.path={data}")
    assert f"{data}:2: not UTF-8 text (byte 0xe9" in line


def test_binary_dataset_is_one_line(capsys, store, tmp_path):
    data = tmp_path / "binary.jsonl"
    data.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # the start of a PNG file
    line = refused(capsys, store, f"dataset.path={data}")
    assert f"{data}:1: not UTF-8 text (byte 0x89 at column 1)" in line


# --- the model directory and its tokenizer ---------------------------------------------------

def test_model_directory_without_a_model(capsys, store, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert "no config.json" in refused(capsys, store, f"model.path={empty}")
    (empty / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "holds no weights" in refused(capsys, store, f"model.path={empty}")


def test_relative_model_path_under_an_existing_directory_is_not_a_hub_id(capsys, store):
    assert "model.path='models/no-such-model': no such model directory" in refused(
        capsys, store, "model.path=models/no-such-model")


def test_prompts_longer_than_the_context_name_the_longest_problem(capsys, store):
    line = refused(capsys, store, "dataset=gsm8k")
    assert "model.max_model_len=128" in line and "problem 'gsm8k-test-" in line and "needs" in line
    assert "of 1319 problems do not fit model 'toy'" in line


def test_think_end_must_be_one_token(capsys, store):
    assert "model.think_end='</th' must be one token" in refused(capsys, store, 'model.think_end="</th"')


# --- placement on this machine, before Ray starts ---------------------------------------------

@pytest.mark.parametrize("gpus, needle", [
    (0, "model.tensor_parallel_size=4 needs 4 GPUs on one node, but the cluster has no GPUs"),
    (2, "model.tensor_parallel_size=4 needs 4 GPUs and a CPU on one node, but the largest node has 2 GPUs"),
])
def test_tensor_parallel_larger_than_a_node(capsys, store, gpus, needle):
    # cluster.num_gpus fixes what the local Ray would advertise: the same result with and without real GPUs
    line = refused(capsys, store, "model.tensor_parallel_size=4", f"cluster.num_gpus={gpus}")
    assert needle in line


def test_kv_cache_larger_than_the_memory_without_gpus(capsys, store):
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    line = refused(capsys, store, f"model.kv_cache_gib={int(memory_gib) + 1}", "cluster.num_gpus=0")
    assert "is more than this machine's memory" in line and "model.kv_cache_gib" in line


def test_kv_cache_that_cannot_hold_one_sequence(capsys, store):
    line = refused(capsys, store, "model.kv_cache_gib=0.0001")
    assert "cannot hold one sequence of model.max_model_len tokens" in line and "raise model.kv_cache_gib" in line


# --- size -------------------------------------------------------------------------------------

def test_absurd_grid_names_the_figure_the_limit_and_the_key(capsys, store):
    line = refused(capsys, store, "sweep.n=[1000000000]")
    assert "128,000,000,000 sample rows" in line and "sweep.max_unit_rows=1,000,000" in line
    assert "raise sweep.max_unit_rows" in line


def test_too_many_rows_in_all(capsys, store):
    line = refused(capsys, store, "model=toy", "sweep.n=[100000]", "sweep.problems_per_unit=1")
    assert "102,400,000 sample rows" in line and "sweep.max_rows=20,000,000" in line


def test_store_larger_than_the_free_disk(capsys, store, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    rows_needed = 2 * free // (64 + 2 * 8)  # twice the free space at plan.ROW_BYTES_* for answer_max_tokens=8
    n = -(-rows_needed // (256 * 4))  # 256 problems x 4 budgets
    line = refused(capsys, store, f"sweep.n=[{n}]", "sweep.problems_per_unit=1", "sweep.max_unit_rows=1000000000000",
                   "sweep.max_rows=1000000000000")
    assert f"store.root='{store}'" in line and "GB of samples, but only" in line


def test_limits_are_keys(capsys, store):
    grid = ["model=toy", "dataset.limit=1", "sweep.n=[2000000]"]  # one unit of 8,000,000 rows: over the default limit
    assert "8,000,000 sample rows" in refused(capsys, store, *grid)
    assert main(["sweep", "--dry-run", *grid, "sweep.max_unit_rows=10000000", f"store.root={store}"]) == 0
    assert "8,000,000 sample rows" in capsys.readouterr().out
    assert not store.exists()


# --- store and tracking -------------------------------------------------------------------------

def test_store_root_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert "is a file, not a directory" in refused(capsys, f)
    assert "is a file, so no directory can be made under it" in refused(capsys, f / "store")


def test_store_root_that_cannot_be_written(capsys):
    # As root, permissions do not stop a write; /proc does (no file can be created there).
    from pathlib import Path

    assert "cannot write in /proc" in refused(capsys, Path("/proc/ttc-store"))


@pytest.mark.parametrize("uri, needle", [
    ("garbage://x", "MLflow has no tracking store for the scheme 'garbage'"),
    ("sqlite:////no/such/dir/mlflow.db", "no directory /no/such/dir for the sqlite database"),
])
def test_tracking_uri_mlflow_cannot_use(capsys, store, uri, needle):
    line = refused(capsys, store, f"tracking.uri={uri}")
    assert needle in line and "tracking.uri=" in line


# --- a cluster that does not answer ---------------------------------------------------------------

def test_cluster_address_where_nothing_listens_times_out_in_one_line(capsys, store):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = refused(capsys, store, "cluster=ray", f"cluster.address=127.0.0.1:{port}", "cluster.connect_timeout_s=5")
    assert f"no Ray cluster answers at '127.0.0.1:{port}' within cluster.connect_timeout_s=5 s" in line


# --- the real command line, in its own process ---------------------------------------------------

def test_empty_key_through_the_real_command(tmp_path):
    run = ttc("sweep", "=8", f"store.root={tmp_path / 'store'}")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "ttc: error: '=8' has no key before '='; write KEY=VALUE, e.g. sweep.seed=1"]
    assert not (tmp_path / "store").exists()


def test_dry_run_checks_prints_the_size_and_writes_nothing(capsys, store):
    assert main(["sweep", "--dry-run", "dataset.limit=40", "sweep.problems_per_unit=16", f"store.root={store}"]) == 0
    out = capsys.readouterr().out
    # The default run: the toy reasoner and the toy base (conf/config.yaml's grid), 40 problems each.
    assert "6 units (0 in the store), 80 problems, 1,280 samples, 5,120 sample rows" in out
    assert "KV cache of toy: 4,096 bytes per token" in out and "KV cache of toy-base" in out
    assert "nothing written" in out
    assert not store.exists()


def test_analyze_passes_the_criterion_through(capsys, tmp_path):
    from omegaconf import OmegaConf

    from analysis.cells import compute_cells
    from orchestrator.compose import compose
    from orchestrator.store import Store
    from tests.test_plots_report import NS, degenerate_samples

    store = Store(tmp_path / "store")
    cfg = compose(["tracking=none", f"store.root={store.root}"])
    store.create_sweep("s1", OmegaConf.to_yaml(cfg.to_dict()))
    table = degenerate_samples()  # tiny: the criterion is recorded whatever the fits find
    path = store.write_unit("mini", "tiny", "mini-tiny", table)
    store.record_unit("s1", {"unit_key": "mini-tiny", "path": str(path.relative_to(store.root)),
                             "rows": table.num_rows, "model": "mini", "dataset": "tiny"})
    store.write_cells("s1", compute_cells(store.sweep_samples("s1"), NS, {}))  # no shapes: tokens, not FLOPs
    assert main(["analyze", "s1", "--criterion", "extrapolation", f"store.root={store.root}"]) == 0
    fits = json.loads((store.sweep_dir("s1") / "fits.json").read_text())
    assert fits["criterion"] == "extrapolation"
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "s1", "--criterion", "bic", f"store.root={store.root}"])
    assert exit_.value.code == 2


# --- the verifier ----------------------------------------------------------------------------------------------


def verifier_with_another_vocabulary(tmp_path):
    """The toy verifier with every token renamed: the same model, a vocabulary the toy reasoner does not share."""
    other = tmp_path / "other-verifier"
    shutil.copytree(PROJECT_ROOT / "models" / "toy-verifier", other)
    tokenizer = json.loads((other / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"] = {f"x{token}": i for token, i in tokenizer["model"]["vocab"].items()}
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    return other


def test_a_verifier_with_another_vocabulary_or_without_the_vllm_engine_is_refused(capsys, store, tmp_path):
    other = verifier_with_another_vocabulary(tmp_path)
    line = refused(capsys, store, "verifier=toy", f"verifier.path={other}")
    assert f"verifier.path='{other}'" in line and "another vocabulary" in line
    line = refused(capsys, store, "verifier=toy", "verifier.path=models/no-such-verifier")
    assert line.startswith("ttc: error: verifier.path='models/no-such-verifier': no such model directory")
    line = refused(capsys, store, "verifier=toy", "model.engine=sim")
    assert "verifier='toy-verifier'" in line and "model.engine='sim'" in line
    assert "no verifier is chosen" in refused(capsys, store, "verifier.kv_cache_gib=0.5")


def test_a_verifier_reading_text_may_have_its_own_vocabulary(capsys, store, tmp_path):
    other = verifier_with_another_vocabulary(tmp_path)
    status = main(["sweep", "--dry-run", "model=toy", "verifier=toy", f"verifier.path={other}",
                   "verifier.input_template='{problem} {response}'", f"store.root={store}"])
    out = capsys.readouterr().out
    assert status == 0 and "verifier toy-verifier scores every answer" in out and "it reads the text" in out
