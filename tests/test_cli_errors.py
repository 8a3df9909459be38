"""Bad input through the real command line: one line naming the problem, status 2, nothing left behind."""

import json

import pytest

from orchestrator.cli import main


def _run(capsys, args):
    status = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


@pytest.mark.parametrize("override, needle", [
    ("sweep.budgets=[-1,8]", "sweep.budgets"),
    ("sweep.budgets=[8,8]", "no duplicates"),
    ("sweep.budgets=[]", "empty grid"),
    ("sweep.n=[]", "sweep.n"),
    ("sweep.n=[0]", "sweep.n"),
    ("dataset=no_such_dataset", "allowed: aime2024"),
    ("dataset.path=/no/such/file.jsonl", "file not found: /no/such/file.jsonl"),
    ("model.path=/no/such/model", "model.path"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, override, needle):
    store = tmp_path / "store"
    status, err = _run(capsys, ["sweep", override, f"store.root={store}"])
    assert status == 2
    assert len(err) == 1 and err[0].startswith("ttc: error:") and needle in err[0]
    assert not store.exists()  # no sweep directory, no MLflow database


def test_malformed_jsonl_line_is_named(capsys, tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": "1+1", "answer": "2"}) + "\n{oops\n", encoding="utf-8")
    store = tmp_path / "store"
    status, err = _run(capsys, ["sweep", f"dataset.path={data}", f"store.root={store}"])
    assert status == 2 and len(err) == 1
    assert f"{data}:2: malformed JSON" in err[0]
    assert not store.exists()


def test_show_unknown_sweep_exits_2(capsys, tmp_path):
    status, err = _run(capsys, ["show", "nope", f"store.root={tmp_path}"])
    assert status == 2 and "SWEEP_ID='nope'" in err[0]
