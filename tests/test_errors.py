"""The error vocabulary (orchestrator/errors.py): one module, two families, one exit status each."""

import ast
import inspect
import pickle
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.cli import FAILURES, _failure
from orchestrator.errors import (
    BadInput,
    ConfigError,
    DatasetError,
    EngineError,
    FitError,
    GraderError,
    PlacementError,
    ProbeError,
    SchedulerError,
    Stopped,
    SweepError,
    TrackingError,
    TtcError,
)

PROJECT = Path(__file__).resolve().parents[1]
ERRORS = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, TtcError)]


def test_every_error_is_in_exactly_one_family():
    for cls in ERRORS:
        if cls not in (TtcError, BadInput, Stopped):
            assert issubclass(cls, BadInput) != issubclass(cls, Stopped), cls


@pytest.mark.parametrize("cls, status, line", [
    (ConfigError, 2, "ttc: error: x"), (DatasetError, 2, "ttc: error: x"), (PlacementError, 2, "ttc: error: x"),
    (ProbeError, 2, "ttc: error: x"), (SweepError, 1, "ttc: sweep stopped: x"),
    (SchedulerError, 1, "ttc: sweep stopped: x"), (TrackingError, 1, "ttc: sync failed: x"),
    (EngineError, 1, "ttc: stopped: x"), (GraderError, 1, "ttc: stopped: x"), (FitError, 1, "ttc: stopped: x"),
])
def test_the_cli_maps_each_error_to_its_exit_status(cls, status, line):
    got_status, what = _failure(cls("x"))
    assert (got_status, f"ttc: {what}: x") == (status, line)
    assert all(issubclass(family, TtcError) for family in FAILURES)


def test_the_builtin_bases_stay_what_callers_catch():
    # `except ValueError` around parsing and `except RuntimeError` around fits and engines catch what they did.
    assert issubclass(ConfigError, ValueError) and issubclass(DatasetError, ValueError)
    for cls in (SweepError, SchedulerError, EngineError, GraderError, TrackingError, ProbeError, FitError):
        assert issubclass(cls, RuntimeError), cls
    assert issubclass(SchedulerError, SweepError) and issubclass(PlacementError, ConfigError)


def test_a_message_is_one_line_naming_what_and_what_is_allowed():
    assert str(ConfigError("sweep.n=[0] is invalid: each N >= 1")) == "sweep.n=[0] is invalid: each N >= 1"
    err = ConfigError("unknown strategy 'wait'", what="sweep.strategy", allowed="cap, extend")
    assert str(err) == "sweep.strategy: unknown strategy 'wait'; allowed: cap, extend"
    assert (err.what, err.allowed, err.message) == ("sweep.strategy", "cap, extend", "unknown strategy 'wait'")
    assert str(DatasetError("malformed JSON", what="d.jsonl:2")) == "d.jsonl:2: malformed JSON"
    fit = FitError("no start converged on 3 points", form="logistic")  # the form is its `what`
    assert str(fit) == "logistic: no start converged on 3 points" and fit.form == "logistic"


def test_an_error_survives_pickling_as_it_crosses_processes():
    # Ray and the grader's children pickle exceptions: the line and the fields come back whole.
    err = pickle.loads(pickle.dumps(EngineError("cannot start", what="model.path", allowed="a model directory")))
    assert type(err) is EngineError and str(err) == "model.path: cannot start; allowed: a model directory"
    assert err.what == "model.path" and err.allowed == "a model directory"
    fit = pickle.loads(pickle.dumps(FitError("no bootstrap resample could be fitted", form="power")))
    assert fit.form == "power" and str(fit) == "power: no bootstrap resample could be fitted"


def test_no_module_defines_an_error_of_its_own():
    # One vocabulary: every Error class of the project lives in orchestrator/errors.py.
    found = []
    for path in [*PROJECT.glob("orchestrator/**/*.py"), *PROJECT.glob("analysis/*.py"), *PROJECT.glob("jobs/*.py"),
                 *PROJECT.glob("bench/*.py")]:
        if path.name == "errors.py" and path.parent.name == "orchestrator":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                found.append(f"{path.relative_to(PROJECT)}: {node.name}")
    assert not found, found
