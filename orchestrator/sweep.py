"""One sweep, top to bottom: problems -> plan -> skip stored units -> Ray -> store -> cells -> MLflow.

`run(cfg)` is what `ttc sweep`, `jobs/sweep.py` and the tests call; `run([cfg, ...])` runs a
grid over several (model, dataset) pairs as one sweep, each model's engines loaded once. Everything that can be
checked before work starts (orchestrator/preflight.py, then placement on the cluster) is checked before
the sweep directory or an MLflow run exists, so bad input leaves nothing behind. The engines are
requested right after those checks and load while the sweep directory and its MLflow runs are
created; a sweep whose units are all in the store starts none.
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
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from orchestrator import dispatch, preflight
from orchestrator.config import Config, resolve_path
from orchestrator.model_files import model_shape
from orchestrator.store import Store, new_sweep_id
from orchestrator.tracking import Tracker, close_dead_sweeps, ui_base
from orchestrator.units import Unit


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
    units_retried: int = 0
    """Unit attempts lost with their engine and re-queued."""
    engines_lost: int = 0
    units_damaged: int = 0
    """Stored units found damaged, set aside and generated again."""
    completes: list[str] = field(default_factory=list)
    """Earlier unfinished sweeps (dead or stopped) that planned the same units: this one completes them."""
    ui_links: tuple[str, str] | None = None
    """(the sweep's runs with their charts, its parent run) in the MLflow UI; None when not logged."""


def run(grid: Config | Sequence[Config], console: Console | None = None) -> SweepResult:
    """Run the sweep and return where its results are. `grid` is one config, or one per
    (model, dataset) pair of a grid that shares its sweep, store, tracking and cluster sections."""
    from orchestrator import ray_backend  # Ray loads only once the inputs are known to be good

    checked = preflight.check(grid)  # every check that needs no cluster: nothing started, nothing written
    console = console or Console(stderr=True)
    try:
        if checked.todo:  # placement on the cluster itself, before anything is written: bad input if it cannot be
            _start_ray_for(checked.parts, ray_backend)
        return _run_started(checked.parts, checked.problems, checked.units, checked.cached, checked.todo,
                            checked.store, console, ray_backend)
    finally:
        ray_backend.stop_ray()


def _run_started(parts: list[Config], problems: list[list], units, cached, todo, store: Store, console: Console,
                 ray_backend) -> SweepResult:
    cfg = parts[0]
    cached, damaged = _verify_stored(cached, store, console)
    if damaged:
        if not todo:  # run() saw nothing to run and started no Ray: start it for the units to regenerate
            _start_ray_for(parts, ray_backend)
        todo = [*todo, *damaged]
    if not todo:  # every unit is in the store: no engine starts
        return _run_dispatching(parts, problems, units, cached, todo, damaged, store, console, None)
    # The engines load (~20 s for vLLM) while the driver closes dead sweeps and creates the sweep's
    # directory and MLflow runs; _schedule hands the dispatcher its result handler before it runs.
    by_model: dict[str, tuple] = {}
    for unit in todo:  # one model's units together: its engines load once, then go
        by_model.setdefault(unit.model.name, (unit.model, []))[1].append(unit)
    dispatcher = dispatch.Dispatcher(list(by_model.values()), cfg.cluster, lambda *a: None,
                                     ray_backend.RayBackend(cfg.cluster))
    try:  # a SchedulerError (an engine that cannot start) is a SweepError: the CLI says the sweep stopped
        dispatcher.start()
        return _run_dispatching(parts, problems, units, cached, todo, damaged, store, console, dispatcher)
    finally:
        dispatcher.close()


def _run_dispatching(parts: list[Config], problems: list[list], units, cached, todo, damaged, store: Store,
                     console: Console, dispatcher: dispatch.Dispatcher | None) -> SweepResult:
    cfg = parts[0]
    for line in close_dead_sweeps(store):
        console.print(escape(line), soft_wrap=True)
    keys = sorted(u.key for u in units)
    completes = [s.sweep_id for s in map(store.sweep_status, store.sweep_ids())
                 if s.state in ("dead", "stopped") and not s.completed_by and s.planned is not None
                 and sorted(s.planned) == keys]
    sweep_id = new_sweep_id()
    sweep_dir = store.create_sweep(sweep_id, OmegaConf.to_yaml(cfg.to_dict()), [u.key for u in units])
    if len(parts) > 1:  # the other (model, dataset) pairs of the grid, for the record
        (sweep_dir / "grid.yaml").write_text(OmegaConf.to_yaml(
            [{"model": asdict(p.model), "dataset": asdict(p.dataset)} for p in parts]), encoding="utf-8")
    tracker = None
    if cfg.tracking.enabled:
        tracker = Tracker(cfg, sweep_id, sweep_dir)
        tracker.start_sweep(cfg, sweep_dir / "config.yaml", [
            (p.model.name, p.dataset.name, dataset_digest(probs),
             p.dataset.hf_id or str(resolve_path(p.dataset.path or "")))
            for p, probs in zip(parts, problems)])
    pairs = ", ".join(f"{p.model.name} x {p.dataset.name} ({len(probs)} problems)" for p, probs in zip(parts, problems))
    console.print(f"sweep [bold]{sweep_id}[/]: {pairs}; {cfg.sweep.max_n} samples each, "
                  f"budgets {list(cfg.sweep.budgets)}, N {list(cfg.sweep.n)}; {len(units)} units "
                  f"({len(cached)} already in the store)")
    if completes:
        console.print(f"this sweep completes the unfinished sweep {', '.join(completes)} (the same {len(units)} "
                      f"planned units; {len(cached)} of them are in the store)", soft_wrap=True)
        if tracker:
            tracker.set_tags({"ttc.completes": ",".join(completes)})

    def record(unit: Unit, rows: int, seconds: float | None) -> None:
        path = store.unit_path(unit.model.name, unit.dataset, unit.key).relative_to(store.root)
        store.record_unit(sweep_id, {"unit_key": unit.key, "path": str(path), "rows": rows,
                                     "model": unit.model.name, "dataset": unit.dataset,
                                     "cached": seconds is None, "seconds": seconds})

    for unit in cached:
        record(unit, unit.rows, None)  # verified: the file holds exactly the unit's planned rows

    failed: list[tuple[str, str]] = []
    outcome, measured = None, {}
    ok = False
    try:
        if todo:
            outcome, measured = _schedule(todo, dispatcher, store, record, tracker, console)
            failed = [(u.key, why) for u, why in outcome.failed]
        # The analysis stack (scipy, pandas, matplotlib: about a second to import) loads here, once the units
        # have run, not before a sweep's first check.
        from analysis.cells import compute_cells, pricing_of
        from analysis.plots import plot_accuracy_vs_compute, plot_headline

        samples = store.sweep_samples(sweep_id)
        simulated = {p.model.name for p in parts if p.model.engine == "sim"}
        if simulated:  # simulated rows carry lengths and timings, never accuracy
            samples = samples.filter(pc.invert(pc.is_in(samples.column("model"),
                                                        value_set=pa.array(sorted(simulated)))))
        shapes = {name: model_shape(model) for name, model in {p.model.name: p.model for p in parts}.items()}
        verifier_shape = model_shape(cfg.verifier) if cfg.verifier is not None else None
        pricing = pricing_of(parts, store.throughput(measured, sweep_id))
        cells = compute_cells(samples, cfg.sweep.n, shapes, verifier_shape=verifier_shape, pricing=pricing)
        cells_path = store.write_cells(sweep_id, cells)
        plot_path, headline = None, []
        if cells.num_rows:
            plot_path = plot_accuracy_vs_compute(cells, store.plots_dir(sweep_id) / "accuracy_vs_compute.png")
            headline = plot_headline(cells, store.plots_dir(sweep_id) / "headline")
        if tracker:
            tracker.log_cells(cells)
            tracker.log_artifact(cells_path)
            for path in ([plot_path] if plot_path else []) + headline:
                tracker.log_artifact(path, "plots")
            tracker.log_summary({"units_run": len(todo) - len(failed), "units_cached": len(cached),
                                 "units_failed": len(failed), "units_damaged": len(damaged),
                                 "units_retried": outcome.retried if outcome else 0,
                                 "engines_lost": outcome.engines_lost if outcome else 0})
        ok = not failed
        for earlier in completes if ok else ():
            store.mark_completed(earlier, sweep_id)
    finally:
        if tracker:
            tracker.finish(ok)
        store.end_sweep(sweep_id, ok)
    # The model-training view of its runs, charts open: MLflow's UI would otherwise open on GenAI pages.
    links = tracker.links(ui_base(cfg)) if tracker else None
    return SweepResult(sweep_id, sweep_dir, cells_path, plot_path, cells, len(todo) - len(failed), len(cached),
                       failed, tracker.uri if tracker else None, tracker.parent_id if tracker else None,
                       tracker.needs_sync if tracker else False, tracker.error if tracker else None,
                       outcome.retried if outcome else 0, outcome.engines_lost if outcome else 0, len(damaged),
                       completes, links)


def _verify_stored(cached: list[Unit], store: Store, console: Console) -> tuple[list[Unit], list[Unit]]:
    """Split the stored units into those whose files hold exactly their planned rows and damaged ones,
    which are moved aside (kept under store.root/damaged/) to be generated again, one line each."""
    good, damaged = [], []
    for unit in cached:
        why = store.unit_problem(unit.model.name, unit.dataset, unit.key, [p.id for p in unit.problems],
                                 unit.n_samples, unit.budgets)
        if why is None:
            good.append(unit)
            continue
        where = store.set_aside(unit.model.name, unit.dataset, unit.key)
        console.print(f"[yellow]stored unit {unit.key} ({escape(unit.model.name)} x {escape(unit.dataset)}) is "
                      f"damaged: it {escape(why)}; moved to {escape(str(where))}; it runs again[/]", soft_wrap=True)
        damaged.append(unit)
    return good, damaged


def _start_ray_for(parts: list[Config], ray_backend) -> None:
    """Start Ray and check the models' placement, as run() does before anything is written."""
    ray_backend.start_ray(parts[0].cluster)
    # A model no node can hold raises PlacementError, a ConfigError: bad input, before anything is written.
    ray_backend.check_placement(list({p.model.name: p.model for p in parts}.values()), parts[0].cluster)


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
        self.model_tokens: dict[str, int] = {}  # generated tokens per model

    def add(self, unit: Unit, batch: pa.RecordBatch) -> None:
        # Thinking is shared by all budgets: count it once per sample (the largest budget's rows).
        top = batch.filter(pc.equal(batch.column("budget"), unit.budgets[-1]))
        tokens = ((pc.sum(top.column("think_tokens")).as_py() or 0)
                  + (pc.sum(batch.column("answer_tokens")).as_py() or 0))
        self.tokens += tokens
        self.model_tokens[unit.model.name] = self.model_tokens.get(unit.model.name, 0) + tokens
        table = pa.Table.from_batches([batch]).group_by("budget").aggregate([("correct", "count"), ("correct", "sum")])
        for budget, count, correct in zip(*(table.column(c).to_pylist()
                                            for c in ("budget", "correct_count", "correct_sum"))):
            acc = self.rows.setdefault((unit.model.name, unit.dataset, budget, unit.strategy), [0, 0, 0])
            acc[0] += len(unit.problems)
            acc[1] += count
            acc[2] += correct or 0

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.tokens / elapsed if elapsed > 0 else 0.0

    def tokens_per_engine_s(self, engine_seconds: dict[str, float]) -> dict[str, float]:
        """Each model's measured throughput: the tokens its units generated here over its engines' time
        from ready to their last result (dispatch.Outcome.engine_seconds)."""
        return {model: tokens / engine_seconds[model]
                for model, tokens in self.model_tokens.items() if engine_seconds.get(model, 0) > 0}

    def metrics(self) -> dict[tuple[str, str, int, str], tuple[int, dict[str, float]]]:
        """Per child: (step = its problems done, its running metrics)."""
        return {key: (problems, {"problems_done": float(problems), "running_pass_at_1": correct / rows,
                                 "tokens_per_s": self.tokens_per_s})
                for key, (problems, rows, correct) in self.rows.items() if rows}


def _schedule(todo: list[Unit], dispatcher: dispatch.Dispatcher, store: Store, record, tracker, console: Console):
    """Run the missing units on the started `dispatcher` with a progress bar; store each one the moment it
    arrives; say (one line each) which engines were lost and which units re-queued. Returns its Outcome and
    each model's measured generated tokens per engine-second (the bill's engine time)."""
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

        dispatcher.on_result = on_result
        dispatcher.note = lambda line: progress.console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)
        outcome = dispatcher.run()
    if tracker:
        tracker.log_live(live.metrics(), force=True)
    lost = outcome.engines_lost
    retried = (f"; {outcome.retried} unit{'s' * (outcome.retried != 1)} re-queued after {lost} lost "
               f"engine{'s' * (lost != 1)}" if outcome.retried or lost else "")
    console.print(f"{total_samples} samples generated in {time.perf_counter() - live.start:.1f} s{retried}")
    return outcome, live.tokens_per_engine_s(outcome.engine_seconds)
