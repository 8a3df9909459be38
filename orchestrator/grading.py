"""Grading: extract a final answer from model output and compare it with the reference.

Extraction is ours and cheap (last `\\boxed{}`, else the text after "Final Answer:", else
the last number). Comparison is math-verify's, run in a child process so that one
pathological answer can never hang the sweep: each comparison has a time limit, and a
child that overruns it is killed and replaced. A new child first imports math-verify and
grades a few warm-up pairs, which takes seconds (tens on a loaded machine), then reports
ready; that start-up has its own generous limit and is never charged to an answer, and a
child that cannot start raises GraderError rather than grading answers wrong. Only
math-verify's LaTeX parser is used, which builds SymPy objects with a grammar and never
evaluates the text it reads (its plain-expression parser goes through SymPy's
`parse_expr`, which calls `eval`).
Verdicts are cached per (answer, reference): reasoning models repeat their answers.

maj@k votes with classes of mathematically equal answers, by the same equality
(`Grader.vote_classes`, once per problem over all of its answers). math-verify logs the whole
input when a parse times out (a megabyte on one line); the child caps what it logs.
`GraderPool` puts a few Graders behind a thread pool, so that an engine's event loop hands
grading off and never waits on a slow comparison.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from multiprocessing.connection import Connection

from orchestrator.errors import GraderError

TIME_LIMIT_S = 5
"""Seconds math-verify may spend on each parse and on the comparison of one answer."""
STARTUP_LIMIT_S = 120
"""Seconds a new child may take to import math-verify and grade the warm-up pairs."""
# The parent's own wait for a verdict, beyond the child's three limited steps (two parses and a
# comparison): slack for a busy machine, not time for work.
_HANG_GRACE_S = 5
LOG_LIMIT_CHARS = 500
"""Longest message the child lets math-verify log (it logs the whole input of a parse that timed out)."""
_READY = "ready"
# Grading these once loads what SymPy, the LaTeX grammar and math-verify import only on first
# use (fractions against decimals, tuples and symbols, a trigonometric simplification).
_WARM_UP = (("0.5", "\\frac{1}{2}"), ("(\\pi/2, x\\cdot x)", "\\left( \\frac{\\pi}{2}, x^2 \\right)"),
            ("\\sin(x)^2+\\cos(x)^2", "1"))

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL = re.compile(r"final answer\s*(?:is)?\s*[:：]?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance (an unclosed one is skipped); None if none.

    Linear in the text: every brace is matched once with a stack (scanning from each box would be
    quadratic in the number of unclosed boxes)."""
    starts = [m.end() for m in _BOXED.finditer(text)]  # just after each box's opening brace
    if not starts:
        return None
    close: dict[int, int] = {}  # position of a "{" -> position of its matching "}"
    open_at: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            open_at.append(i)
        elif ch == "}" and open_at:
            close[open_at.pop()] = i
    for start in reversed(starts):
        end = close.get(start - 1)
        if end is not None:
            return text[start:end].strip()
    return None


def extract_answer(text: str) -> str | None:
    """The final answer in `text`: last \\boxed{}, else after 'Final Answer:', else the last number."""
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    finals = _FINAL.findall(text)
    if finals:
        answer = finals[-1].strip().strip("$").strip().rstrip(".").strip()
        if answer:
            return answer
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


def _normalise(answer: str) -> str:
    return re.sub(r"\s+", "", answer).strip("$").rstrip(".")


class _CapLength(logging.Filter):
    """Shortens a log record's message to `limit` characters, saying how long it was."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.limit:
            record.msg, record.args = f"{message[:self.limit]}... [{len(message):,} characters in all]", None
        return True


def cap_math_verify_logs(limit: int = LOG_LIMIT_CHARS) -> None:
    """Cap every message of math-verify's loggers (a filter on each: a parent's filter misses its children's)."""
    import math_verify  # noqa: F401 - creates the module loggers

    for name in [n for n in logging.root.manager.loggerDict if n == "math_verify" or n.startswith("math_verify.")]:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _CapLength) for f in logger.filters):
            logger.addFilter(_CapLength(limit))


def _verify_loop(conn: Connection, limit_s: int, startup_limit_s: int) -> None:
    """Child process: warm up, say ready, then answer (candidate, reference) pairs until the pipe closes."""
    from math_verify import LatexExtractionConfig, parse, verify

    cap_math_verify_logs()
    latex_only = [LatexExtractionConfig(boxed_match_priority=0)]

    # Vote classes compare each answer with several others: parse each distinct string once.
    @lru_cache(maxsize=4096)
    def parsed(answer: str, limit: int) -> tuple:
        return tuple(parse(f"${answer}$", latex_only, parsing_timeout=limit))

    def equal(candidate: str, reference: str, limit: int) -> bool:
        gold, pred = parsed(reference, limit), parsed(candidate, limit)
        return bool(gold) and bool(pred) and verify(list(gold), list(pred), timeout_seconds=limit)

    # Under the start-up limit, so that the first answers' limits are spent on the answers.
    for candidate, reference in _WARM_UP:
        equal(candidate, reference, startup_limit_s)
    conn.send(_READY)
    while True:
        try:
            candidate, reference = conn.recv()
        except EOFError:
            return
        try:
            ok = equal(candidate, reference, limit_s)
        except Exception:  # noqa: BLE001 - any failure to parse is a wrong answer, not a crash
            ok = False
        conn.send(ok)


class Grader:
    """Grades answers against references; math-verify runs in a child process with a time limit."""

    def __init__(self, time_limit_s: int = TIME_LIMIT_S, startup_limit_s: int = STARTUP_LIMIT_S) -> None:
        self.time_limit_s = time_limit_s
        self.startup_limit_s = startup_limit_s
        self._cache: dict[tuple[str, str], bool] = {}
        self._ctx = mp.get_context("spawn")  # fork is unsafe beside vLLM's threads
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.timeouts = 0

    def _start(self) -> Connection:
        """The pipe to a ready child, starting one (and waiting until it is ready) if there is none."""
        if self._conn is None:
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_verify_loop, daemon=True,
                                     args=(child, self.time_limit_s, self.startup_limit_s))
            proc.start()
            child.close()
            self._proc, self._conn = proc, parent
            died = False
            try:
                ready = parent.poll(self.startup_limit_s) and parent.recv() == _READY
            except (EOFError, OSError):
                ready, died = False, True
                proc.join(timeout=30)  # for its own exit code rather than the kill's
            if not ready:
                self._kill()
                why = (f"exited with code {proc.exitcode} while starting (its traceback is on stderr)" if died
                       else f"was not ready within startup_limit_s={self.startup_limit_s}")
                raise GraderError(f"the math-verify child process {why}; no answer was graded")
        return self._conn

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None

    def equivalent(self, candidate: str, reference: str) -> bool:
        """Whether two answers are mathematically equal; False if that cannot be decided in time."""
        if _normalise(candidate) == _normalise(reference):
            return True
        key = (candidate, reference)
        if key not in self._cache:
            conn = self._start()
            try:
                conn.send(key)
                # The child enforces its own limit with SIGALRM; this outer one catches a hang in C code.
                if conn.poll(self.time_limit_s * 3 + _HANG_GRACE_S):
                    self._cache[key] = conn.recv()
                else:
                    self.timeouts += 1
                    self._kill()
                    self._cache[key] = False
            except (EOFError, OSError):  # the child died on this answer: undecidable, so wrong
                self._kill()
                self._cache[key] = False
        return self._cache[key]

    def vote_classes(self, answers: Sequence[str | None], reference: str,
                     correct: Sequence[bool] | None = None) -> list[int | None]:
        """maj@k's vote class of each of one problem's answers, by this grader's equality.

        Class 0 is the answers equal to the reference: exactly those `grade` calls correct (the same
        cached verdicts; `correct`, when given, is those verdicts, taken as they are: the rows were
        graded by another grader of a pool). Wrong answers form classes 1, 2, ... numbered by first appearance in the
        order given (the engine gives (sample_idx, budget) order): an answer joins the first class
        whose first member it equals (normalised text first, then math-verify with the first member
        as the reference), else it opens a new class. None (no extracted answer) abstains: None.
        Each comparison has the grader's time limit; one that times out or fails counts as not
        equal, so the answer joins no class by that comparison and at worst forms its own class.
        The result depends only on the answers and their order (and on no comparison timing out)."""
        classes: list[int | None] = []
        firsts: list[str] = []  # first member of wrong class 1, 2, ...
        by_text: dict[str, int] = {}  # normalised text of a wrong answer -> its class
        for i, answer in enumerate(answers):
            if answer is None:
                classes.append(None)
            elif correct[i] if correct is not None else self.equivalent(answer, reference):
                classes.append(0)
            else:
                text = _normalise(answer)
                if text not in by_text:
                    found = next((c for c, first in enumerate(firsts, 1) if self.equivalent(answer, first)), None)
                    if found is None:
                        firsts.append(answer)
                        found = len(firsts)
                    by_text[text] = found
                classes.append(by_text[text])
        return classes

    def grade(self, text: str, reference: str) -> tuple[str | None, bool]:
        """(extracted answer or None, whether it is correct)."""
        answer = extract_answer(text)
        return answer, answer is not None and self.equivalent(answer, reference)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc = self._conn = None

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GraderPool:
    """`workers` Graders, each with its own math-verify child, behind a thread pool: thread-safe, and
    every call returns a Future at once, so an engine's event loop never waits on a comparison.

    The verdicts are a Grader's: the same answers get the same verdicts whichever Grader gives them
    (unless a comparison times out, as with one Grader). Each call takes a free Grader for its
    duration. `start()` starts every child in the background (their imports take seconds), so an
    engine can overlap that with its own start rather than pay it while generating."""

    def __init__(self, workers: int = 2, time_limit_s: int = TIME_LIMIT_S,
                 startup_limit_s: int = STARTUP_LIMIT_S) -> None:
        self._graders = [Grader(time_limit_s, startup_limit_s) for _ in range(workers)]
        self._free: queue.SimpleQueue[Grader] = queue.SimpleQueue()
        for grader in self._graders:
            self._free.put(grader)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="grader")

    def _with_grader(self, work: Callable[[Grader], object]) -> object:
        grader = self._free.get()
        try:
            return work(grader)
        finally:
            self._free.put(grader)

    def start(self) -> list[Future]:
        """Start every child now, in the background; a child that cannot start raises from its Future."""
        return [self._pool.submit(self._with_grader, Grader._start) for _ in self._graders]

    def grade(self, text: str, reference: str) -> Future:
        """A Future of `Grader.grade(text, reference)`."""
        return self._pool.submit(self._with_grader, lambda g: g.grade(text, reference))

    def vote_classes(self, answers: Sequence[str | None], reference: str,
                     correct: Sequence[bool] | None = None) -> Future:
        """A Future of `Grader.vote_classes(answers, reference, correct)`."""
        return self._pool.submit(self._with_grader, lambda g: g.vote_classes(answers, reference, correct))

    @property
    def timeouts(self) -> int:
        return sum(g.timeouts for g in self._graders)

    def close(self) -> None:
        """Drop queued work, wait for running comparisons (each has its time limit), stop every child."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for grader in self._graders:
            grader.close()

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
