"""Grading: golden (model output, reference, verdict) triples, including the tricky ones,
and the math-verify child's time limits: a hanging answer is cut off, start-up is not."""

import time

import pytest

from orchestrator import grading
from orchestrator.errors import GraderError
from orchestrator.grading import Grader, _verify_loop, extract_answer

GOLDEN = [
    # (model output, reference, correct)
    ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac34", True),
    ("Final Answer: 18.", "18", True),
    ("Final Answer: $x=5$", "5", True),
    ("first 3, then 7, so 42", "42", True),  # last number as the fallback
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\boxed{2,125}", "2125", True),  # thousands separator
    ("\\boxed{1} and later \\boxed{7}", "7", True),  # the last box wins
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\boxed{7}", "4", False),
    ("\\boxed{4.5}", "4", False),
    ("no answer here", "1", False),
    ("\\boxed{unclosed", "1", False),
    ("\\boxed{__import__('os').system('touch /tmp/ttc-pwned')}", "0", False),
]


@pytest.fixture(scope="module")
def grader():
    # A generous limit: a verdict must not depend on how busy the machine is.
    with Grader(time_limit_s=10) as g:
        yield g


@pytest.mark.parametrize("text, reference, verdict", GOLDEN)
def test_golden_verdicts(grader, text, reference, verdict):
    assert grader.grade(text, reference)[1] is verdict


def test_extraction_order():
    assert extract_answer("\\boxed{3} Final Answer: 5") == "3"
    assert extract_answer("Final Answer: 5, or 6") == "5, or 6"
    assert extract_answer("it costs $1,234 in total") == "1234"
    assert extract_answer("nothing") is None


def test_pathological_answer_times_out_as_wrong():
    # A power tower SymPy would try to evaluate for ever: bounded by the time limit, graded wrong.
    with Grader(time_limit_s=1) as g:
        assert g.equivalent("9^{9^{9^{9^{9}}}}", "5") is False
        assert g.equivalent("\\frac{3}{6}", "0.5") is True  # and the grader still works afterwards


# Children for the tests below; spawned children import them from this module.
HANG = "hang"
START_DELAY_S = 3.5  # longer than the 3 s a time_limit_s=1 answer gets with no grace


class _HangsOnHang:
    """A child's end of the pipe that blocks for ever on receiving HANG, as a hang in C code would."""

    def __init__(self, conn):
        self._conn = conn

    def recv(self):
        candidate, reference = self._conn.recv()
        if candidate == HANG:
            time.sleep(3600)
        return candidate, reference

    def send(self, obj):
        self._conn.send(obj)


def _slow_child(conn, limit_s, startup_limit_s):
    time.sleep(START_DELAY_S)  # a cold start on a loaded machine
    _verify_loop(_HangsOnHang(conn), limit_s, startup_limit_s)


def _broken_child(conn, limit_s, startup_limit_s):
    raise ImportError("no math-verify here")


@pytest.mark.e2e  # real process timing: two cold starts longer than an answer's 3 s window, and that window (~12 s)
def test_start_up_is_not_charged_to_an_answer(monkeypatch):
    monkeypatch.setattr(grading, "_verify_loop", _slow_child)
    monkeypatch.setattr(grading, "_HANG_GRACE_S", 0)  # the parent waits 3 s for each answer
    with Grader(time_limit_s=1) as g:
        assert g.equivalent("\\frac{3}{6}", "0.5") is True  # right after construction
        assert g.equivalent(HANG, "1") is False and g.timeouts == 1  # the parent killed the child
        assert g.equivalent("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}") is True  # right after the restart
        assert g.timeouts == 1


@pytest.mark.parametrize("child, startup_limit_s, message", [
    (_slow_child, 1, "not ready within startup_limit_s=1"),
    (_broken_child, 120, "exited with code 1"),  # a busy machine may take seconds even to fail
])
def test_a_child_that_cannot_start_is_an_error(monkeypatch, child, startup_limit_s, message):
    monkeypatch.setattr(grading, "_verify_loop", child)
    with Grader(startup_limit_s=startup_limit_s) as g, pytest.raises(GraderError, match=message):
        g.equivalent("\\frac{3}{6}", "0.5")


def _last_boxed_by_rescanning(text):
    """The former quadratic extraction (scan forward from every box, last first): the reference."""
    starts = [m.end() for m in grading._BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def test_last_boxed_agrees_with_rescanning_on_random_texts():
    import random

    rng = random.Random(0)
    pieces = ["\\boxed{", "\\fbox {", "{", "}", "}", "7", "x", " ", "\\frac{1}{2}"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert grading._last_boxed(text) == _last_boxed_by_rescanning(text), text
    for text, *_ in GOLDEN:
        assert grading._last_boxed(text) == _last_boxed_by_rescanning(text), text


def test_many_unclosed_boxes_extract_in_one_pass():
    # 100,000 unclosed boxes: quadratic extraction would take hours; this one simply finishes.
    unclosed = "\\boxed{" * 100_000
    assert extract_answer("\\boxed{7} " + unclosed) == "7"  # the last box that closes
    assert extract_answer(unclosed + " so 42") == "42"  # no box closes: the last number
    assert extract_answer(unclosed + "}") is None  # only the innermost, empty box closes: nothing to extract
    assert extract_answer("\\boxed{\\boxed{3}" + unclosed) == "3"


def test_math_verify_logs_are_capped(caplog):
    import logging

    from math_verify import LatexExtractionConfig, parse

    grading.cap_math_verify_logs()
    limit = grading.LOG_LIMIT_CHARS + len("... [1,000,000 characters in all]")
    with caplog.at_level(logging.WARNING):
        # The real path: a parse of 40 KB overruns 1 s here (3 KB already does) and math-verify logs the input
        # it gave up on (whether it overruns depends on the machine, so only the cap is asserted on what it
        # logs). Not 400 KB: that one is stuck where the alarm cannot interrupt it, for ~40 s.
        parse("$" + "1+" * 20_000 + "1$", [LatexExtractionConfig()], parsing_timeout=1)
        logging.getLogger("math_verify.grader").warning("x" * 10**6)  # any of its loggers
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("math_verify")]
    assert messages and all(len(m) <= limit for m in messages)
    assert messages[-1].endswith("[1,000,000 characters in all]")
