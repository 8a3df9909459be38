"""The OpenAI-compatible engine's chat path and the checks before a sweep, against a local stand-in of the API.

A closed reasoning API cannot be reached from here; tests/openai_standin.py implements its request and
response schema (reasoning_effort, max_completion_tokens, usage.completion_tokens_details.reasoning_tokens,
429 with Retry-After, 5xx, OpenAI's error bodies). The open-server path (the cap ladder over
/v1/completions against a real vLLM server) is tests/test_openai_server_e2e.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket

import pytest

from orchestrator.cli import main
from orchestrator.compose import compose
from orchestrator.datasets import load_problems
from orchestrator.engines.openai import OpenAIEngine, estimate_bill
from orchestrator.errors import EngineError
from orchestrator.plan import plan_units
from tests.openai_standin import StandIn

KEY_VAR = "TTC_TEST_OPENAI_KEY"
KEY = "sk-standin-secret"
EFFORTS = "{low: 2000, medium: 6000, high: 16000}"


@pytest.fixture(scope="module")
def problems():
    return load_problems(compose(["dataset.limit=4"]).dataset)


@pytest.fixture(scope="module")
def api(problems):
    with StandIn({p.problem: p.answer for p in problems}, key=KEY, models=("o3-mini", "o1-mini")) as server:
        yield server


@pytest.fixture(autouse=True)
def key_in_env(monkeypatch, api):
    monkeypatch.setenv(KEY_VAR, KEY)
    api.reset()


def overrides(api: StandIn, *more: str) -> list[str]:
    """o3-mini on the stand-in, 4 toy problems, 3 effort levels, N up to 2; `more` adds or replaces keys."""
    base = ["model=o3-mini", f"model.base_url={api.base_url}", f"model.api_key_env={KEY_VAR}", "dataset.limit=4",
            "sweep.budgets=[2000,6000,16000]", "sweep.n=[1,2]", "sweep.problems_per_unit=4", "tracking=none",
            "model.max_retries=2"]
    merged = {o.partition("=")[0].lstrip("+"): o for o in [*base, *more]}
    return list(merged.values())


@pytest.fixture(scope="module")
def engine(api):
    """One engine on the stand-in (its grader processes take a few seconds to start), retrying twice."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_VAR, KEY)
        eng = OpenAIEngine(compose(overrides(api)).model)
    yield eng
    eng.close()


def unit_of(api: StandIn, *more: str):
    cfg = compose(overrides(api, *more))
    (unit,) = plan_units(cfg, load_problems(cfg.dataset))
    return unit


def test_effort_budgets_run_a_request_per_budget_with_reasoning_tokens_as_thinking(api, engine, problems):
    unit = unit_of(api)
    rows = engine.run_unit(unit).to_pylist()
    assert len(rows) == 4 * 2 * 3 and len(api.requests) == 4 * 2 * 3  # cell by cell: a request per budget
    sent = {r["seed"]: r for r in api.requests}
    assert len(sent) == len(api.requests)  # every request its own seed
    levels = {2000: "low", 6000: "medium", 16000: "high"}
    for req in api.requests:
        assert "temperature" not in req and "top_p" not in req and "max_tokens" not in req
        assert req["reasoning_effort"] in levels.values() and "max_completion_tokens" not in req
    for row in rows:
        assert row["engine"] == "openai" and row["engine_version"] == "o3-mini-2025-01-31"
        assert row["think_tokens"] > 0 and row["answer_tokens"] == 8 and not row["forced"]
        reference = next(p.answer for p in problems if p.id == row["problem_id"])
        assert row["correct"] == (row["extracted_answer"] == reference)
        assert (row["vote_class"] == 0) == row["correct"]
    # The reasoning tokens the API reported are the rows' thinking, level by level (longer with more effort).
    by_budget = {b: sum(r["think_tokens"] for r in rows if r["budget"] == b) for b in levels}
    assert by_budget[2000] < by_budget[6000] < by_budget[16000]
    # Seeded: the same unit again gives the same rows (but for the wall-clock latency).
    again = engine.run_unit(unit).drop_columns(["latency_s"])
    assert again.equals(engine.run_unit(unit).drop_columns(["latency_s"]))


def test_token_limit_budgets_send_max_completion_tokens_and_an_exhausted_one_has_no_answer(api, engine):
    unit = unit_of(api, "model=o1-mini", "sweep.budgets=[0,64,4096]", "sweep.n=[2]")
    eng = OpenAIEngine(unit.model)
    try:
        rows = eng.run_unit(unit).to_pylist()
    finally:
        eng.close()
    caps = sorted({r["max_completion_tokens"] for r in api.requests})
    assert caps == [1024, 1024 + 64, 1024 + 4096]  # the budget + model.answer_max_tokens
    assert all("reasoning_effort" not in r for r in api.requests)
    cut = [r for r in rows if r["finish_reason"] == "length"]
    assert cut and all(r["answer_text"] == "" and not r["correct"] and r["extracted_answer"] is None for r in cut)


def test_429_with_retry_after_and_a_500_are_retried_and_the_unit_completes(api, engine):
    api.script = [(429, {"Retry-After": "1"}), (500, {})]
    before = dict(engine.retries)
    rows = engine.run_unit(unit_of(api, "sweep.budgets=[2000]", "sweep.n=[1]"))
    assert rows.num_rows == 4
    assert engine.retries["HTTP 429"] == before.get("HTTP 429", 0) + 1
    assert engine.retries["HTTP 500"] == before.get("HTTP 500", 0) + 1
    waits = list(engine.waits)[-2:]
    assert ("HTTP 429", 1.0) in waits  # Retry-After honoured
    assert ("HTTP 500", 0.5) in waits  # no Retry-After: exponential backoff from 0.5 s
    assert [r["_status"] for r in api.requests].count(200) == 4


def test_a_unit_whose_requests_keep_failing_fails_with_one_line_naming_why(api, engine):
    api.fail_always = 503
    with pytest.raises(EngineError) as err:
        engine.run_unit(unit_of(api, "sweep.budgets=[2000]", "sweep.n=[1]"))
    message = str(err.value)
    assert "\n" not in message and "failed 3 times" in message and "HTTP 503" in message
    assert "model.max_retries=2" in message and KEY not in message


def test_a_request_the_api_refuses_fails_at_once_with_its_message(api, engine):
    unit = unit_of(api, "model.temperature=0.6")
    eng = OpenAIEngine(unit.model)
    try:
        with pytest.raises(EngineError, match="HTTP 400.*temperature"):
            eng.run_unit(unit)
    finally:
        eng.close()
    assert all(r["_status"] == 400 for r in api.requests) and eng.retries == {}


def test_the_key_is_in_no_unit_key_config_or_row(api, engine, monkeypatch):
    unit = unit_of(api)
    monkeypatch.setenv(KEY_VAR, "sk-another-key")
    assert unit_of(api).key == unit.key  # the key is not part of what a unit is
    assert KEY not in json.dumps(compose(overrides(api)).to_dict())
    monkeypatch.setenv(KEY_VAR, KEY)
    assert KEY not in json.dumps(engine.run_unit(unit_of(api, "sweep.budgets=[2000]", "sweep.n=[1]")).to_pylist())


# --- the checks before a sweep: one line, exit 2, nothing written -----------------------------------------


def dry_run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sweep", "--dry-run", *args])
    return code, out.getvalue(), err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("change, expected", [
    (lambda a: ["model.api_key_env=TTC_NO_SUCH_VARIABLE"], "the environment variable TTC_NO_SUCH_VARIABLE is not set"),
    (lambda a: [f"model.base_url=http://127.0.0.1:{free_port()}/v1"], "unreachable"),
    (lambda a: ["model.served_name=o9-giant"], "does not serve it; it serves o3-mini, o1-mini"),
    (lambda a: ["sweep.budgets=[2000,5000]"], "5000 is not an effort level of model 'o3-mini'"),
    (lambda a: ["sweep.strategy=extend"], "cannot continue a prompt"),
    (lambda a: ["model.api_key_env=TTC_WRONG_KEY"], "refused the key in TTC_WRONG_KEY (HTTP 401)"),
    (lambda a: ["model.api_key_env=sk-pasted-key"], "never the key itself"),
])
def test_bad_endpoint_or_budget_is_one_line_exit_2_nothing_written(api, tmp_path, monkeypatch, change, expected):
    monkeypatch.setenv("TTC_WRONG_KEY", "sk-wrong")
    store = tmp_path / "store"
    code, out, err = dry_run(*overrides(api, *change(api)), f"store.root={store}")
    assert code == 2, out + err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert "sk-wrong" not in err and KEY not in err and "sk-pasted-key" not in err
    assert not store.exists()


def test_dry_run_says_cell_by_cell_and_prints_the_bill(api, tmp_path):
    code, out, err = dry_run(*overrides(api), f"store.root={tmp_path / 'store'}")
    assert code == 0, err
    assert "runs cell by cell" in out and "4 problems x 2 samples x 3 budgets = 24 requests" in out
    assert "estimated bill: $" in out and "no upper bound" in out


def test_estimated_bill_of_token_limits_is_exact_arithmetic(api):
    cfg = compose(overrides(api, "model=o1-mini", "sweep.budgets=[0,1000]", "sweep.n=[2]",
                            "model.max_completion_tokens=null",
                            "model.price={input: 2.0, output: 10.0, cached_input: null}"))
    units = plan_units(cfg, load_problems(cfg.dataset))
    bill = estimate_bill(units)
    prompt = sum(-(-len(p.problem) // 4) for u in units for p in u.problems)  # characters / 4, rounded up
    out = 4 * 2 * (1024 + 1024 + 1000)  # problems x samples x (budget + answer_max_tokens) summed over budgets
    assert bill["requests"] == 4 * 2 * 2 and bill["output_tokens"] == out and bill["input_tokens"] == prompt * 2 * 2
    assert bill["usd"] == pytest.approx((prompt * 2 * 2 * 2.0 + out * 10.0) / 1e6)
    assert bill["usd_max"] == pytest.approx(bill["usd"])  # token limits are caps: the bill is an upper bound
