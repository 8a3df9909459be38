"""Import rules (STYLE.md, "one noun per module, imports one way"), read from the source and checked in one fresh
interpreter: who may import vllm, ray and mlflow; no import cycles among the project's modules; analysis never
reaches Ray or vLLM; a sweep and the CLI start without the analysis stack (scipy, pandas, matplotlib); the
engine registry says how every engine's version is read.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "analysis")

ONLY = {"vllm": "orchestrator/engines/", "ray": "orchestrator/ray_backend.py", "mlflow": "orchestrator/tracking.py"}
"""The one place that may import each package, at the top of a file or inside a function."""

ANALYSIS_STACK = ("scipy", "pandas", "matplotlib")


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


@functools.cache
def _imports(path: Path, top_only: bool) -> frozenset[str]:
    """Every dotted name an import statement of the file names (`from a.b import c`: a.b, and a.b.c if that is a
    module), skipping `if TYPE_CHECKING:` blocks; with `top_only`, also skipping function bodies (the imports
    that run when the module is imported)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit_one(sub)
                continue
            if top_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(names)


def _graph(top_only: bool) -> dict[str, set[str]]:
    """Project module -> the project modules its import statements load. Importing a.b.c loads packages a and
    a.b first, except for a module inside them (its package is already loading)."""
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for imported in _imports(path, top_only):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in MODULES and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_only_the_engines_import_vllm_only_the_backend_ray_only_tracking_mlflow():
    wrong = [f"{path.relative_to(ROOT)} imports {package}"
             for name, path in MODULES.items()
             for package, allowed in ONLY.items()
             if package in {n.split(".")[0] for n in _imports(path, top_only=False)}
             and not str(path.relative_to(ROOT)).startswith(allowed)]
    assert not wrong, wrong


def test_no_import_cycles_even_inside_functions():
    # A cycle closed by an import inside a function works until someone moves the import to the top; none at all.
    assert _cycle(_graph(top_only=False)) is None


def test_analysis_reaches_no_engine_scheduler_or_tracker():
    # Every project module that importing an analysis module loads, and what those load at their top.
    graph = _graph(top_only=True)
    for name in (m for m in MODULES if m.split(".")[0] == "analysis"):
        seen, todo = set(), [name]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
        loaded = {n.split(".")[0] for m in seen for n in _imports(MODULES[m], top_only=True)}
        assert not loaded & set(ONLY), (name, sorted(loaded & set(ONLY)))


def test_a_sweep_and_the_cli_start_without_the_analysis_stack_or_any_engine():
    """Importing the CLI and the sweep (what `ttc sweep` loads before its checks) loads none of the analysis
    stack, vLLM, Ray or MLflow: each loads where it is used."""
    heavy = (*ANALYSIS_STACK, *ONLY, "torch")
    code = ("import sys, orchestrator.cli, orchestrator.sweep; "
            f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == []


def test_every_engine_in_the_registry_says_how_its_version_is_read():
    # The planner keys units by engine_version (orchestrator/engines/__init__.py): an engine without a way to
    # read its version would fail at plan time, not here.
    from orchestrator.config import ENGINE_NAMES
    from orchestrator.engines import ENGINES, VERSIONS

    assert set(VERSIONS) == set(ENGINES) == set(ENGINE_NAMES)
