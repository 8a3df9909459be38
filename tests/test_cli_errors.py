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
    ("=8", "'=8' has no key before '='"),
    ("sweep.n=[1", "'sweep.n=[1' is not a valid override"),
    ("sweep.budget=[8]", "sweep.budget is not a known key (did you mean sweep.budgets?)"),
    ("sweeps.n=[1]", "did you mean sweep.n"),
    ("dataset=gsm8", "dataset=gsm8 is not a known option (did you mean gsm8k?)"),
    ("sweep.seed=0,1,2", "a comma list of values (a Hydra sweep) works only for model= and dataset="),
    ("model.name=123", "model.name='123'"),
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


@pytest.mark.parametrize("overrides, needle", [
    (["dataset=toy_arith", "dataset=gsm8k"], "dataset is given twice (dataset=toy_arith and dataset=gsm8k)"),
    (["model=toy", "model=toy-cool,toy"], "model is given twice"),
    (["sweep.seed=1", "sweep.seed=2"], "sweep.seed is given twice"),
])
def test_a_key_given_twice_is_refused_never_silently_the_last(capsys, tmp_path, overrides, needle):
    store = tmp_path / "store"
    status, err = _run(capsys, ["sweep", *overrides, f"store.root={store}"])
    assert status == 2 and len(err) == 1 and needle in err[0]
    assert not store.exists()


def test_a_misspelled_key_never_suggests_adding_it(capsys, tmp_path):
    status, err = _run(capsys, ["sweep", "sweep.budget=[8]", f"store.root={tmp_path}"])
    assert status == 2 and "+sweep.budget" not in err[0] and "sweep.budgets" in err[0]


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--no-such-option"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "unrecognized arguments: --no-such-option" in err[0]
