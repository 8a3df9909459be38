"""maj@k's vote classes with the real grader (its math-verify child): equal answers vote together."""

import pytest

from orchestrator.grading import Grader


@pytest.fixture(scope="module")
def grader():
    with Grader(time_limit_s=10) as g:  # generous: a class must not depend on how busy the machine is
        yield g


def test_the_issue_example_groups_equal_wrong_answers(grader):
    # math-verify's LaTeX parser reads all three as the rational 1/2.
    assert grader.vote_classes(["3", "3", "1/2", "0.5", "\\frac{1}{2}"], "3") == [0, 0, 1, 1, 1]


def test_abstentions_correct_answers_written_differently_and_order(grader):
    answers = [None, "7", "6/2", "3.0", "0.50", "07", None, "\\dfrac{1}{2}", " 7 ", "2"]
    assert grader.vote_classes(answers, "3") == [None, 1, 0, 0, 2, 1, None, 2, 1, 3]
    # Class 0 is exactly what grade() calls correct.
    assert [c == 0 for c in grader.vote_classes(answers, "3")] == \
        [a is not None and grader.equivalent(a, "3") for a in answers]
    assert grader.vote_classes([], "3") == [] and grader.vote_classes([None], "3") == [None]


def test_classes_are_deterministic_and_numbered_by_first_appearance(grader):
    answers = ["5", "\\frac{4}{2}", "2", "5.0", "x"]
    first = grader.vote_classes(answers, "1")
    assert first == [1, 2, 2, 1, 3]
    with Grader(time_limit_s=10) as fresh:  # a new child, an empty cache: the same classes
        assert fresh.vote_classes(answers, "1") == first


def test_an_answer_whose_comparisons_time_out_forms_its_own_class():
    # A power tower SymPy would try to evaluate for ever: every comparison times out, so it joins no class.
    tower = "9^{9^{9^{9^{9}}}}"
    with Grader(time_limit_s=1) as g:
        assert g.vote_classes(["4", tower, "4"], "5") == [1, 2, 1]


def test_given_verdicts_decide_class_zero(grader):
    # The engine grades rows on one grader of a pool and votes on another: class 0 is the rows graded correct.
    assert grader.vote_classes(["3", "6/2", "4", None], "3", [True, False, False, False]) == [0, 1, 2, None]


def test_a_pool_of_graders_gives_one_graders_verdicts_and_classes(grader):
    from orchestrator.grading import GraderPool

    texts = ["\\boxed{0.5}", "The Final Answer: 1/2", "\\boxed{3}", "no answer here", "so 7", "\\boxed{\\frac{2}{4}}"]
    with GraderPool(workers=2, time_limit_s=10) as pool:
        futures = [pool.grade(t, "\\frac{1}{2}") for t in texts]  # all at once, on both workers
        assert [f.result() for f in futures] == [grader.grade(t, "\\frac{1}{2}") for t in texts]
        answers = ["3", "3", "1/2", "0.5", "\\frac{1}{2}"]
        assert pool.vote_classes(answers, "3").result() == grader.vote_classes(answers, "3") == [0, 0, 1, 1, 1]
