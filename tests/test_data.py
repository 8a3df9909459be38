"""Datasets, plans and the store: shipped files load, bad lines are named, keys are stable, writes are whole."""

import json

import pyarrow as pa
import pytest

from orchestrator.compose import compose, group_options
from orchestrator.config import DatasetConfig
from orchestrator.datasets import load_problems
from orchestrator.errors import DatasetError
from orchestrator.plan import plan_units
from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA
from orchestrator.store import Store
from orchestrator.units import derive_seed
from tests.rows import sample_row

EXPECTED_ROWS = {"math500": 500, "aime2024": 30, "aime2025": 30, "amc2023": 40, "gsm8k": 1319}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_shipped_datasets_load_whole(name):
    problems = load_problems(compose([f"dataset={name}"]).dataset)
    assert len(problems) == EXPECTED_ROWS[name]
    assert len({p.id for p in problems}) == len(problems)


def test_every_dataset_config_points_at_a_loadable_file():
    for name in group_options("dataset"):
        assert load_problems(compose([f"dataset={name}", "dataset.limit=3"]).dataset)


def test_malformed_line_is_named(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "problem": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: malformed JSON"):
        load_problems(DatasetConfig(name="bad", path=str(f)))


def test_text_that_is_not_utf8_is_named_by_line(tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"id": "a", "problem": "1+1", "answer": "2"}\n'
                  '{"id": "b", "problem": "d\u00e9j\u00e0", "answer": "1"}\n'
                  .encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 26\)"):
        load_problems(DatasetConfig(name="l", path=str(f)))


def test_missing_field_and_duplicate_id_are_named(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": "a", "problem": "p"}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.jsonl:1: field 'answer'"):
        load_problems(DatasetConfig(name="d", path=str(f)))
    row = json.dumps({"id": "a", "problem": "p", "answer": "1"})
    f.write_text(row + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: duplicate id"):
        load_problems(DatasetConfig(name="d", path=str(f)))


def test_plan_is_deterministic_and_keyed_by_content():
    cfg = compose(["dataset=gsm8k", "dataset.limit=40", "sweep.problems_per_unit=16"])
    problems = load_problems(cfg.dataset)
    a, b = plan_units(cfg, problems), plan_units(cfg, problems)
    assert [u.key for u in a] == [u.key for u in b]
    assert [len(u.problems) for u in a] == [16, 16, 8]
    assert len({u.key for u in a}) == 3
    other = plan_units(compose(["dataset=gsm8k", "dataset.limit=40", "sweep.problems_per_unit=16",
                                "sweep.seed=1"]), problems)
    assert not {u.key for u in a} & {u.key for u in other}
    assert derive_seed(0, "p", 1) == derive_seed(0, "p", 1) != derive_seed(0, "p", 2)


def _row(**overrides):
    return sample_row(**{"unit_key": "k", "problem_id": "p", "seed": 1, "budget": 8, "think_tokens": 8,
                         "prompt_tokens": 5, "forced": True, "answer_text": "\\boxed{1}", "extracted_answer": "1",
                         "correct": True, "latency_s": 0.1} | overrides)


def test_store_round_trip_keeps_the_schema(tmp_path):
    store = Store(tmp_path)
    batch = pa.RecordBatch.from_pylist([_row(), _row(sample_idx=1, correct=False)], schema=SAMPLE_SCHEMA)
    path = store.write_unit("m", "d", "k", batch)
    assert path == tmp_path / "samples" / "model=m" / "dataset=d" / "k.parquet"
    assert store.has_unit("m", "d", "k")
    table = store.read_units([path])
    assert table.schema == SAMPLE_SCHEMA and table.num_rows == 2
    assert not list(path.parent.glob(".*.tmp"))  # nothing half-written left beside it
    cells = store.write_cells
    store.create_sweep("s1", "a: 1\n")
    cells("s1", CELL_SCHEMA.empty_table())
    assert store.read_cells("s1").schema == CELL_SCHEMA
