"""One sweep, top to bottom: problems -> plan -> skip stored units -> Ray -> store -> cells -> MLflow.

`run(cfg)` is what `ttc sweep`, `jobs/sweep.py` and the tests call; `run([cfg, ...])` runs a
grid over several (model, dataset) pairs as one sweep, each model's engines loaded once. Everything that can be
checked before work starts (config, dataset file, model directory) is checked before the
sweep directory or an MLflow run exists, so bad input leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from analysis.cells import compute_cells
from analysis.plots import plot_accuracy_vs_compute
from orchestrator.config import Config, ConfigError, resolve_path
from orchestrator.datasets import load_problems
from orchestrator.errors import SweepError
from orchestrator.plan import Unit, model_shape, plan_units
from orchestrator.store import Store, new_sweep_id
from orchestrator.tracking import Tracker


@dataclass
class SweepResult:
    sweep_id: str
    sweep_dir: Path
    cells_path: Path
    plot_path: Path | None
    cells: pa.Table
    units_run: int
    units_cached: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    needs_sync: bool = False
    tracking_error: str | None = None


def check_model_path(cfg: Config) -> None:
    """A path that is clearly local (absolute, ./ or ~) must exist; anything else may be a hub id."""
    path = cfg.model.path
    if path.startswith(("/", "./", "../", "~")) and cfg.model.local_path() is None:
        raise ConfigError(f"model.path={path!r}: no such model directory")


def run(grid: Config | Sequence[Config], console: Console | None = None) -> SweepResult:
    """Run the sweep and return where its results are. `grid` is one config, or one per
    (model, dataset) pair of a grid that shares its sweep, store, tracking and cluster sections."""
    from orchestrator import scheduler  # Ray loads only once the inputs are known to be good

    parts = [grid] if isinstance(grid, Config) else list(grid)
    cfg = parts[0]  # the sections every part shares
    console = console or Console(stderr=True)
    for part in parts:
        check_model_path(part)
    loaded = {dataset: load_problems(dataset) for dataset in dict.fromkeys(part.dataset for part in parts)}
    problems = [loaded[part.dataset] for part in parts]
    units = [u for part, probs in zip(parts, problems) for u in plan_units(part, probs)]
    store = Store(cfg.store.path)
    stored = [store.has_unit(u.model.name, u.dataset, u.key) for u in units]
    cached = [u for u, done in zip(units, stored) if done]
    todo = [u for u, done in zip(units, stored) if not done]
    models = list({part.model.name: part.model for part in parts}.values())

    if todo:  # placement is checked before anything is written: a model that cannot be placed is bad input
        scheduler.start_ray(cfg.cluster)
        try:
            scheduler.check_placement(models, cfg.cluster)
        except scheduler.SchedulerError as err:
            scheduler.stop_ray()
            raise ConfigError(str(err)) from None
    try:
        return _run_started(parts, problems, units, cached, todo, store, console, scheduler)
    finally:
        scheduler.stop_ray()


def _run_started(parts: list[Config], problems: list[list], units, cached, todo, store: Store, console: Console,
                 scheduler) -> SweepResult:
    cfg = parts[0]
    sweep_id = new_sweep_id()
    sweep_dir = store.create_sweep(sweep_id, OmegaConf.to_yaml(cfg.to_dict()))
    if len(parts) > 1:  # the other (model, dataset) pairs of the grid, for the record
        (sweep_dir / "grid.yaml").write_text(OmegaConf.to_yaml(
            [{"model": asdict(p.model), "dataset": asdict(p.dataset)} for p in parts]), encoding="utf-8")
    tracker = None
    if cfg.tracking.enabled:
        tracker = Tracker(cfg, sweep_id, sweep_dir)
        tracker.start_sweep(cfg, sweep_dir / "config.yaml", [
            (p.model.name, p.dataset.name, dataset_digest(probs), p.dataset.hf_id or str(resolve_path(p.dataset.path or "")))
            for p, probs in zip(parts, problems)])
    pairs = ", ".join(f"{p.model.name} x {p.dataset.name} ({len(probs)} problems)" for p, probs in zip(parts, problems))
    console.print(f"sweep [bold]{sweep_id}[/]: {pairs}; {cfg.sweep.max_n} samples each, "
                  f"budgets {list(cfg.sweep.budgets)}, N {list(cfg.sweep.n)}; {len(units)} units "
                  f"({len(cached)} already in the store)")

    def record(unit: Unit, rows: int, seconds: float | None) -> None:
        path = store.unit_path(unit.model.name, unit.dataset, unit.key).relative_to(store.root)
        store.record_unit(sweep_id, {"unit_key": unit.key, "path": str(path), "rows": rows,
                                     "model": unit.model.name, "dataset": unit.dataset,
                                     "cached": seconds is None, "seconds": seconds})

    for unit in cached:
        record(unit, unit.rows, None)

    failed: list[tuple[str, str]] = []
    ok = False
    try:
        if todo:
            failed = _schedule(cfg, todo, store, record, tracker, console, scheduler)
        samples = store.sweep_samples(sweep_id)
        simulated = {p.model.name for p in parts if p.model.engine == "sim"}
        if simulated:  # simulated rows carry lengths and timings, never accuracy
            samples = samples.filter(pc.invert(pc.is_in(samples.column("model"), value_set=pa.array(sorted(simulated)))))
        shapes = {name: model_shape(model) for name, model in {p.model.name: p.model for p in parts}.items()}
        cells = compute_cells(samples, cfg.sweep.n, shapes)
        cells_path = store.write_cells(sweep_id, cells)
        plot_path = None
        if cells.num_rows:
            plot_path = plot_accuracy_vs_compute(cells, store.plots_dir(sweep_id) / "accuracy_vs_compute.png")
        if tracker:
            tracker.log_cells(cells)
            tracker.log_artifact(cells_path)
            if plot_path:
                tracker.log_artifact(plot_path, "plots")
        ok = not failed
    finally:
        if tracker:
            tracker.finish(ok)
    return SweepResult(sweep_id, sweep_dir, cells_path, plot_path, cells, len(todo) - len(failed), len(cached),
                       failed, tracker.uri if tracker else None, tracker.parent_id if tracker else None,
                       tracker.needs_sync if tracker else False, tracker.error if tracker else None)


def dataset_digest(problems: list) -> str:
    """A short content hash of the problems used, for MLflow's dataset input."""
    h = hashlib.sha256()
    for p in problems:
        h.update(f"{p.id}\x1f{p.problem}\x1f{p.answer}\x1e".encode())
    return h.hexdigest()[:16]


class LiveStats:
    """Running per-budget figures for MLflow while the sweep runs: problems done, pass@1 so far, tokens/s."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.tokens = 0
        self.rows: dict[tuple[str, str, int, str], list[int]] = {}  # key -> [problems, rows, correct]

    def add(self, unit: Unit, batch: pa.RecordBatch) -> None:
        # Thinking is shared by all budgets: count it once per sample (the largest budget's rows).
        top = batch.filter(pc.equal(batch.column("budget"), unit.budgets[-1]))
        self.tokens += (pc.sum(top.column("think_tokens")).as_py() or 0) + (pc.sum(batch.column("answer_tokens")).as_py() or 0)
        table = pa.Table.from_batches([batch]).group_by("budget").aggregate([("correct", "count"), ("correct", "sum")])
        for budget, count, correct in zip(*(table.column(c).to_pylist() for c in ("budget", "correct_count", "correct_sum"))):
            acc = self.rows.setdefault((unit.model.name, unit.dataset, budget, unit.strategy), [0, 0, 0])
            acc[0] += len(unit.problems)
            acc[1] += count
            acc[2] += correct or 0

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.tokens / elapsed if elapsed > 0 else 0.0

    def metrics(self) -> dict[tuple[str, str, int, str], tuple[int, dict[str, float]]]:
        """Per child: (step = its problems done, its running metrics)."""
        return {key: (problems, {"problems_done": float(problems), "running_pass_at_1": correct / rows,
                                 "tokens_per_s": self.tokens_per_s})
                for key, (problems, rows, correct) in self.rows.items() if rows}


def _schedule(cfg: Config, todo: list[Unit], store: Store, record, tracker, console: Console,
              scheduler) -> list[tuple[str, str]]:
    """Run the missing units with a progress bar; store each one the moment it arrives."""
    total_samples = sum(u.samples for u in todo)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    live = LiveStats()
    tagged = False
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting engine", total=len(todo), rate="")

        def on_result(unit: Unit, batch: pa.RecordBatch, info: dict) -> None:
            nonlocal tagged
            store.write_unit(unit.model.name, unit.dataset, unit.key, batch)  # first: the result is safe
            record(unit, batch.num_rows, round(time.perf_counter() - live.start, 3))
            live.add(unit, batch)
            progress.update(task, advance=1, description="units", rate=f"{live.tokens_per_s:,.0f} tok/s")
            if tracker:
                if not tagged:
                    tracker.set_tags({f"ttc.{k}": v for k, v in info.items()})
                    tagged = True
                tracker.log_live(live.metrics())

        by_model: dict[str, tuple] = {}
        for unit in todo:  # one model's units together: its engines load once, then go
            by_model.setdefault(unit.model.name, (unit.model, []))[1].append(unit)
        try:
            outcome = scheduler.run_models(list(by_model.values()), cfg.cluster, on_result)
        except scheduler.SchedulerError as err:
            raise SweepError(str(err)) from None
    if tracker:
        tracker.log_live(live.metrics(), force=True)
    console.print(f"{total_samples} samples generated in {time.perf_counter() - live.start:.1f} s")
    return [(u.key, why) for u, why in outcome.failed]
