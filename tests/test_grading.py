"""Grading: golden (model output, reference, verdict) triples, including the tricky ones."""

import pytest

from orchestrator.grading import Grader, extract_answer

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
    with Grader(time_limit_s=2) as g:
        yield g


@pytest.mark.parametrize("text, reference, verdict", GOLDEN)
def test_golden_verdicts(grader, text, reference, verdict):
    assert grader.grade(text, reference)[1] is verdict


def test_extraction_order():
    assert extract_answer("\\boxed{3} Final Answer: 5") == "3"
    assert extract_answer("Final Answer: 5, or 6") == "5, or 6"
    assert extract_answer("it costs $1,234 in total") == "1234"
    assert extract_answer("nothing") is None


def test_pathological_answer_times_out_as_wrong(grader):
    # A power tower SymPy would try to evaluate for ever: bounded by the time limit, graded wrong.
    assert grader.equivalent("9^{9^{9^{9^{9}}}}", "5") is False
    assert grader.equivalent("7", "7") is True  # and the grader still works afterwards
