"""Datasets: load a dataset config's problems as `Problem` records.

`LOADERS` maps each source kind to its loader, in plain sight. A JSONL file holds one
object per line with string fields `id`, `problem` and `answer`, in UTF-8; any defect
(text that is not UTF-8, a malformed line, a missing field) is reported as one line naming
the file and line. The shipped copies live in data/ (data/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import DatasetConfig, resolve_path
from orchestrator.errors import DatasetError


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


def _problem_from(row: object, where: str) -> Problem:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object with id, problem, answer")
    fields = {}
    for key in ("id", "problem", "answer"):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "problem":
            value = str(value)  # numeric ids and answers are common; store them as text
        if not isinstance(value, str) or not value:
            raise DatasetError(f"{where}: field '{key}' must be a non-empty string, got {value!r}")
        fields[key] = value
    return Problem(**fields)


def load_jsonl(cfg: DatasetConfig) -> list[Problem]:
    assert cfg.path is not None
    path = resolve_path(cfg.path)
    if not path.is_file():
        raise DatasetError(f"dataset.path: file not found: {path} (dataset '{cfg.name}')")
    try:
        problems = _read_jsonl(path, cfg.limit)
    except OSError as err:
        raise DatasetError(f"dataset.path: cannot read {path} ({err.strerror or err})") from None
    if not problems:
        raise DatasetError(f"{path}: no problems in the file")
    return problems


def _read_jsonl(path: Path, limit: int | None) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    with path.open("rb") as f:  # bytes, so that text that is not UTF-8 is named by its line
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DatasetError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                                   "a dataset file must be UTF-8 JSONL (re-save it as UTF-8)") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{where}: malformed JSON line ({err.msg}); each line must be one "
                                   "JSON object with id, problem, answer") from None
            problem = _problem_from(row, where)
            if problem.id in seen:
                raise DatasetError(f"{where}: duplicate id {problem.id!r}; ids must be unique")
            seen.add(problem.id)
            problems.append(problem)
            if limit is not None and len(problems) >= limit:
                break
    return problems


def load_hf(cfg: DatasetConfig) -> list[Problem]:
    """A Hugging Face dataset with id/problem/answer columns (needs network and `datasets`)."""
    try:
        import datasets as hf_datasets
    except ImportError:
        raise DatasetError(f"dataset.hf_id={cfg.hf_id!r} needs the `datasets` package: "
                           "pip install datasets (or use dataset.path with a local JSONL file)") from None
    try:
        rows = hf_datasets.load_dataset(cfg.hf_id, split=cfg.hf_split)
    except Exception as err:  # noqa: BLE001 - no network, no such dataset or split: one line, whatever the cause
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise DatasetError(f"dataset.hf_id={cfg.hf_id!r} (split {cfg.hf_split!r}) cannot be loaded: {first}") from None
    if cfg.limit is not None:
        rows = rows.select(range(min(cfg.limit, len(rows))))
    return [_problem_from(row, f"{cfg.hf_id}[{i}]") for i, row in enumerate(rows)]


LOADERS: dict[str, Callable[[DatasetConfig], list[Problem]]] = {"jsonl": load_jsonl, "hf": load_hf}


def load_problems(cfg: DatasetConfig) -> list[Problem]:
    """The dataset's problems, in file order, at most `cfg.limit`."""
    return LOADERS["hf" if cfg.hf_id else "jsonl"](cfg)

