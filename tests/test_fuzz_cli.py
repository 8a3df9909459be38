"""Property-based test of `ttc sweep`'s contract on bad input (Hypothesis).

Override lists are drawn from the config schema itself: real keys with valid and invalid values,
misspelled and unknown keys, group options real and not, Hydra syntax errors, empty keys, keys and
groups given twice. Each list goes through `ttc sweep --dry-run`, which makes every check a sweep
makes before it starts (orchestrator/preflight.py: the same function `run()` calls first) and no
more: no engine, no Ray started. The contract: exit status 0 or 2, never a traceback, on 2 exactly one
line on stderr, and nothing written under store.root either way.
"""

import contextlib
import dataclasses
import io
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.compose import GROUPS, group_options
from orchestrator.config import SECTIONS

FIELDS = {f"{name}.{f.name}": str(f.type) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
          if f"{name}.{f.name}" != "store.root"}  # the test owns store.root: it must stay where nothing is written
WORD = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
INT = st.integers(-3, 5000).map(str) | st.sampled_from(["1e9", "1000000000", "0", "-1"])


def _valid(kind: str):
    """Values of the annotated type that are often valid (and sometimes break a cross-field rule)."""
    increasing = st.lists(st.integers(0, 64), min_size=1, max_size=4, unique=True).map(sorted)
    return {"int": st.integers(1, 64).map(str), "int | None": st.integers(1, 64).map(str) | st.just("null"),
            "float": st.floats(0.05, 4).map(lambda v: f"{v:.3f}"), "bool": st.sampled_from(["true", "false"]),
            "str": WORD, "str | None": WORD | st.just("null"),
            "tuple[int, ...]": increasing.map(lambda v: "[" + ",".join(map(str, v)) + "]"),
            "dict[str, Any] | None": st.just("null")}.get(kind, WORD)


def _invalid(kind: str):
    """Values of the wrong type or range, and text Hydra reads in surprising ways."""
    number = st.floats(allow_nan=True, allow_infinity=True).map(repr) | INT
    ints = st.lists(st.integers(-2, 300), max_size=5).map(lambda v: "[" + ",".join(map(str, v)) + "]")
    odd = st.sampled_from(["null", "true", "[]", "{}", "abc", "''", "[1,[2]]", "{a: 1}", "${nope}", "{bogus: 1}"])
    return {"int": INT, "int | None": INT, "float": number, "tuple[int, ...]": ints}.get(kind, INT) | odd


def _misspelled(key: str):
    """The key with one character dropped, doubled or replaced."""
    return st.integers(0, len(key) - 1).flatmap(lambda i: st.sampled_from([
        key[:i] + key[i + 1:], key[:i] + key[i] + key[i:], key[:i] + "x" + key[i + 1:]]))


KEYS = st.sampled_from(sorted(FIELDS))
valid_field = KEYS.flatmap(lambda k: _valid(FIELDS[k]).map(lambda v: f"{k}={v}"))
invalid_field = KEYS.flatmap(lambda k: _invalid(FIELDS[k]).map(lambda v: f"{k}={v}"))
group_override = st.sampled_from(GROUPS).flatmap(
    lambda g: st.one_of(*[st.sampled_from(group_options(g))] * 3, WORD, st.just("")).map(lambda o: f"{g}={o}"))
unknown_key = (KEYS.flatmap(_misspelled) | WORD).map(lambda k: f"{k}=1")
syntax_error = st.sampled_from(["=8", "+=1", "sweep.n=[1", "a b=1", "sweep..n=1", "model.path", "~", "sweep.seed=0,1",
                                "sweep.n=[1,2", "dataset=gsm8k,", "''=1", "model.name='", "experiment=null", "-x=1"])
prefixed = (valid_field | invalid_field).flatmap(lambda o: st.sampled_from(["+", "++", "~"]).map(lambda p: p + o))
# Mostly good overrides, so that a good share of lists passes every check; each kind of bad one is common.
override = st.one_of(valid_field, valid_field, valid_field, group_override, invalid_field, unknown_key,
                     syntax_error, prefixed)


@st.composite
def override_lists(draw):
    # Keys given twice come from the branch below only (Hypothesis likes to repeat a draw).
    items = draw(st.lists(override, max_size=3, unique_by=lambda o: o.partition("=")[0].lstrip("+~")))
    if draw(st.integers(0, 3)) == 0:  # a group or key given twice, the second time maybe with another value
        items.append(draw(group_override if draw(st.booleans()) else st.sampled_from(items or ["sweep.seed=1"])))
    return draw(st.permutations(items))


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(overrides=override_lists())
def test_sweep_checks_exit_0_or_2_with_one_line_and_write_nothing(tmp_path_factory, overrides):
    store = tmp_path_factory.getbasetemp() / "fuzz-store"  # never created: a dry run writes nothing
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["sweep", "--dry-run", *overrides, f"store.root={store}"])
        except SystemExit as exit_:  # argparse: an override that looks like an option (`-x=1`)
            status = exit_.code
    lines = err.getvalue().strip().splitlines()
    assert status in (0, 2), (overrides, status, lines)
    assert "Traceback" not in err.getvalue()
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("ttc: error: "), (overrides, lines)
    else:
        assert "checked: nothing started" in out.getvalue(), (overrides, out.getvalue(), lines)
    assert not store.exists(), overrides
