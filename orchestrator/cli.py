"""The `ttc` command.

    ttc sweep [hydra overrides...]   run a sweep, e.g.
        ttc sweep dataset=gsm8k dataset.limit=50 'sweep.budgets=[128,512]' 'sweep.n=[1,4,16]'
        ttc sweep model=a,b dataset=gsm8k,math500    (a grid over models and datasets, one sweep)
        ttc sweep --json ...         the same, then one JSON object of its id and paths as the last line
    ttc show SWEEP_ID [--ci]         print a finished sweep's cells table (`ttc show`: list sweeps)
    ttc analyze SWEEP_ID             fit the scaling curves: fits.json, report.md, plots (also on MLflow)
    ttc reproduce RECIPE [--dry-run] run a recipe of conf/experiment/, compare with its published numbers
    ttc sync SWEEP_ID                replay to MLflow what a sweep could not log (safe to repeat)
    ttc ui [SWEEP_ID] [--port 5000] [--workers 1]   serve the MLflow UI; print links to a sweep's runs and charts

Bad input (an invalid key or value, an unknown group option, a missing or malformed dataset
file) prints one line naming what is wrong and exits with status 2; a sweep that stopped part-way
prints one line and exits with status 1 (`FAILURES`: the errors of orchestrator/errors.py by family).
Each command is a row of `COMMANDS`: its name, help, arguments and handler.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from orchestrator.compose import compose, compose_grid
from orchestrator.errors import BadInput, ConfigError, Stopped, SweepError, TrackingError, TtcError

EXIT_BAD_INPUT = 2
FAILURES: dict[type[TtcError], tuple[int, str]] = {
    BadInput: (EXIT_BAD_INPUT, "error"),  # nothing was written: fix the named key, file or line and run again
    SweepError: (1, "sweep stopped"),  # what finished is in the store: the same command runs only the rest
    TrackingError: (1, "sync failed"),  # `ttc sync` met MLflow down: its journal is kept as it was
    Stopped: (1, "stopped"),
}
"""How each error family ends a command: (exit status, the word after `ttc: `); the most specific class wins."""


def cells_tables(cells, ci: bool = False) -> list[Table]:
    """One table per (model, dataset, aggregator): budgets down, N across, accuracy (and 95% CI) in cells."""
    df = cells.to_pandas()
    tables = []
    for (model, dataset, aggregator), g in df.groupby(["model", "dataset", "aggregator"], sort=True):
        ns = sorted(g.n.unique())
        table = Table(title=f"{model} on {dataset}: {aggregator} ({int(g.problems.iloc[0])} problems)")
        table.add_column("budget", justify="right")
        table.add_column("think tok", justify="right")
        for n in ns:
            table.add_column(f"N={n}", justify="right")
        for budget, row in g.groupby("budget", sort=True):
            by_n = {int(r.n): r for r in row.itertuples()}
            table.add_row(str(budget), f"{row.mean_think_tokens.iloc[0]:.1f}",
                          *(_accuracy(by_n[n], ci) if n in by_n else "" for n in ns))
        tables.append(table)
    return tables


def _accuracy(cell, ci: bool) -> str:
    return f"{cell.accuracy:.3f} [{cell.ci_low:.2f},{cell.ci_high:.2f}]" if ci else f"{cell.accuracy:.3f}"


def cmd_sweep(overrides: list[str], out: Console, dry_run: bool = False, as_json: bool = False) -> int:
    """Run a sweep; with `dry_run`, only make every check made before one starts and print its size. With
    `as_json`, a finished sweep's last stdout line is one JSON object (`sweep_json`), for scripts."""
    grid = compose_grid(overrides)
    if dry_run:
        from orchestrator.preflight import check

        checked = check(grid)
        _print_size(checked, out)
        out.print(f"checked: nothing started, nothing written under {checked.store.root}; run it without --dry-run",
                  markup=False)
        return 0
    result, status = _run_and_report(grid, out)
    if as_json:
        print(json.dumps(sweep_json(grid[0], result, status)), flush=True)
    return status


def sweep_json(cfg, result, status: int) -> dict[str, Any]:
    """Where a finished sweep's results are, for `ttc sweep --json`: its id, the store, the samples
    directory, cells.parquet, report.md (written by `ttc analyze`), the plots directory, and how it ended."""
    sweep_dir = result.sweep_dir
    return {
        "sweep_id": result.sweep_id, "status": "finished" if status == 0 else "units_failed",
        "store": str(cfg.store.path), "samples": str(cfg.store.path / "samples"), "sweep_dir": str(sweep_dir),
        "cells": str(result.cells_path), "report": str(sweep_dir / "report.md"), "plots": str(sweep_dir / "plots"),
        "units_run": result.units_run, "units_cached": result.units_cached, "units_failed": len(result.failed),
        "tracking_uri": result.tracking_uri, "parent_run_id": result.parent_run_id, "needs_sync": result.needs_sync,
    }


def _print_size(checked, out: Console) -> None:
    """The size of a checked sweep: units, samples, rows, decode tokens, hours, store growth, KV cache; for
    models behind a server or an API how they run (a chat API cell by cell), and the bill at model.price."""
    size, sweep = checked.size, checked.parts[0].sweep

    def say(text: str) -> None:  # names and paths are text, not rich markup
        out.print(text, markup=False)

    for part, problems in zip(checked.parts, checked.problems):
        m = part.model
        say(f"{m.name} (tp={m.tensor_parallel_size}) on {part.dataset.name} ({len(problems)} problems): budgets "
            f"{list(sweep.budgets)}, N {list(sweep.n)}, strategy {sweep.strategy}")
        if part.verifier is not None:
            say(f"  verifier {part.verifier.name} scores every answer (bon@k and wmaj@k; "
                f"{'it reads the text' if part.verifier.input_template else 'it reads the token ids'})")
    say(f"  {size['units']} units ({len(checked.cached)} in the store), {size['problems']} problems, "
        f"{size['samples']:,} samples, {size['rows']:,} sample rows (at most {size['max_unit_rows']:,} in one "
        f"unit; limits sweep.max_unit_rows={sweep.max_unit_rows:,}, sweep.max_rows={sweep.max_rows:,})")
    rates = ", ".join(dict.fromkeys(f"{p.model.est_tokens_per_s:,.0f}" for p in checked.parts
                                    if p.model.engine != "openai"))
    if rates:
        say(f"  at most {size['max_decode_tokens']:,.0f} decode tokens, about {size['gpu_hours']:,.1f} GPU-hours "
            f"at {rates} tokens/s per replica (model.est_tokens_per_s)")
    else:
        say("  no GPU-hours of ours: the models run behind model.base_url (requests and the bill below)")
    say(f"  store: about {size['new_store_bytes'] / 1e6:,.1f} MB of new samples under {checked.store.root} "
        f"({size['free_bytes'] / 1e9:,.1f} GB free)")
    for name, kv in size["kv"].items():
        say(f"  KV cache of {name}: {kv['bytes_per_token']:,} bytes per token; model.kv_cache_gib={kv['cache_gib']:g} "
            f"holds {kv['cache_bytes'] // kv['sequence_bytes']:,} sequences of model.max_model_len tokens")
    for part, problems in zip(checked.parts, checked.problems):
        m = part.model
        if m.engine == "openai" and m.api == "chat":
            kind = ("effort levels (model.effort_budgets)" if m.effort_budgets else
                    "prompted budgets (model.budget_prompt)" if m.budget_prompt else
                    "token limits (max_completion_tokens)")
            say(f"  {m.name} runs cell by cell: a chat API cannot continue a prompt, so every budget is its own "
                f"request ({len(problems)} problems x {sweep.max_n} samples x {len(sweep.budgets)} budgets = "
                f"{len(problems) * sweep.max_n * len(sweep.budgets):,} requests to {m.base_url}; budgets as {kind})")
        elif m.engine == "openai":
            say(f"  {m.name} is served at {m.base_url} (model.served_name={m.served_name or m.path}): the cap ladder "
                "runs as in-process, over /v1/completions; its GPU time is the server's, not counted above")
    bill = size.get("bill")
    if bill:
        cached = f" ({bill['cached_input_tokens']:,} of them cached)" if bill["cached_input_tokens"] else ""
        if bill["usd_max"] is None:
            bound = "no upper bound: effort levels and prompted budgets are not caps (set model.max_completion_tokens)"
        elif bill["usd_max"] > bill["usd"] * 1.001:
            bound = f"at most ${bill['usd_max']:,.2f} with every request at model.max_completion_tokens"
        else:
            bound = "an upper bound"
        say(f"  estimated bill: ${bill['usd']:,.2f} at model.price ({bill['requests']:,} requests, about "
            f"{bill['input_tokens']:,} input tokens{cached} and {bill['output_tokens']:,} output tokens at the "
            f"budgets; {bound})")


def _run_and_report(cfg, out: Console):
    """Run a sweep and print its tables and paths; (result, exit status)."""
    from rich.markup import escape

    from orchestrator.sweep import run
    from orchestrator.tracking import sync_command

    result = run(cfg)
    for table in cells_tables(result.cells):
        out.print(table)
    out.print(f"95% confidence intervals: ttc show {result.sweep_id} --ci")
    out.print(f"cells:  {result.cells_path}")
    if result.plot_path:
        out.print(f"plot:   {result.plot_path}")
    if result.needs_sync:
        out.print(f"[yellow]mlflow: tracking failed ({result.tracking_error}); the results are complete in the "
                  f"store. When {result.tracking_uri} is back, run:[/]")
        out.print(f"  {escape(sync_command(cfg if not isinstance(cfg, list) else cfg[0], result.sweep_id))}")
    elif result.tracking_uri:
        served = result.tracking_uri.startswith(("http://", "https://"))
        if result.ui_links:
            out.print(f"mlflow: {result.ui_links[0]}" + ("" if served else " (serve it with `ttc ui`)"),
                      markup=False, soft_wrap=True)
        else:
            out.print(f"mlflow: {result.tracking_uri} (parent run {result.parent_run_id}); browse with `ttc ui`")
    notes = []
    if result.units_damaged:
        notes.append(f"{result.units_damaged} damaged unit{'s' * (result.units_damaged != 1)} set aside and "
                     "generated again")
    if result.units_retried or result.engines_lost:
        notes.append(f"{result.engines_lost} engine{'s' * (result.engines_lost != 1)} lost, {result.units_retried} "
                     f"unit{'s' * (result.units_retried != 1)} re-queued")
    if result.completes:
        notes.append(f"completes sweep {', '.join(result.completes)}")
    out.print(f"sweep:  {result.sweep_id} ({result.units_run} units run, {result.units_cached} from the store)"
              + "".join(f"; {n}" for n in notes))
    if result.failed:
        for key, why in result.failed:
            out.print(f"[red]unit {key} failed:[/] {why}")
        out.print(f"[red]{len(result.failed)} units failed[/]; finished units are kept, re-run the same "
                  "command to retry only the missing ones")
        return result, 1
    return result, 0


def cmd_reproduce(recipe: str, dry_run: bool, overrides: list[str], out: Console) -> int:
    """Plan (and unless --dry-run, run) a recipe, then compare it with its published numbers."""
    from analysis.reproduce import write_reproduction
    from orchestrator.compose import group_options
    from orchestrator.preflight import check
    from orchestrator.tracking import sync_command

    if recipe not in group_options("experiment"):
        raise ConfigError(f"RECIPE={recipe!r} is not a recipe; allowed: {', '.join(group_options('experiment'))} "
                          "(conf/experiment/)")
    cfg = compose([f"experiment={recipe}", *overrides])
    # A recipe is sized on any machine (a laptop, for a GPU cluster): this machine's GPUs and memory are
    # checked only when it runs.
    out.print(f"recipe {recipe}:")
    _print_size(check(cfg, placement=False), out)
    for p in cfg.published:
        out.print(f"  reproduces {p.aggregator.replace('k', str(p.n))} at B={p.budget}: {p.value} ({p.source})")
    if dry_run:
        return 0
    result, status = _run_and_report(cfg, out)
    written = write_reproduction(cfg, recipe, result.sweep_id, result.sweep_dir, result.cells)
    if written.tracking_failure:
        out.print(f"mlflow: not logged ({written.tracking_failure}); run `{sync_command(cfg, result.sweep_id)}` "
                  "when it can be")
    out.print(written.markdown_path.read_text(encoding="utf-8"))
    out.print(f"reproduction: {written.markdown_path}\nplot:         {written.plot_path}")
    return status


def cmd_show(sweep_id: str | None, overrides: list[str], ci: bool, out: Console) -> int:
    """List the sweeps with their status, or print one finished sweep's cells. Sweeps found dead (their
    driver gone before they finished) get their MLflow runs ended as KILLED, saying so on stderr."""
    from rich.markup import escape

    from orchestrator.tracking import close_dead_sweeps

    store = _store_of(overrides)
    for line in close_dead_sweeps(store):
        print(f"ttc: {line}", file=sys.stderr)
    if sweep_id is None:
        for sid in store.sweep_ids():
            status = store.sweep_status(sid)
            out.print(f"{sid}  {status.state:<8}  {escape(status.detail)}")
        return 0
    _require_finished(store, sweep_id)
    for table in cells_tables(store.read_cells(sweep_id), ci=ci):
        out.print(table)
    return 0


def _require_finished(store, sweep_id: str) -> None:
    if store.cells_path(sweep_id).is_file():
        return
    if sweep_id in store.sweep_ids():
        status = store.sweep_status(sweep_id)
        again = "; re-run its command to complete it (only the missing units run)" if status.state in (
            "dead", "stopped") else ""
        raise ConfigError(f"SWEEP_ID={sweep_id!r}: the sweep is {status.state}, without cells ({status.detail}){again}")
    raise ConfigError(f"SWEEP_ID={sweep_id!r}: no finished sweep with that id under {store.root / 'sweeps'}")


def _store_of(overrides: list[str]):
    """The store the `store.*` overrides name; the other overrides apply to the saved sweep's config. Every
    override is checked first (a misspelled key is one line, not ignored)."""
    from orchestrator.compose import check_overrides
    from orchestrator.store import Store

    check_overrides(overrides)
    return Store(compose([o for o in overrides if o.lstrip("+").startswith("store.")]).store.path)


def _saved_config(sweep_dir, overrides: list[str]):
    """The config a sweep ran with, as saved in its directory, with `overrides` on top."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from orchestrator.compose import check_overrides
    from orchestrator.config import from_dict
    from orchestrator.preflight import check_tracking_uri

    check_overrides(overrides)  # the same one-line refusals as `ttc sweep` (syntax, unknown keys, a key twice)
    try:
        saved = OmegaConf.merge(OmegaConf.load(sweep_dir / "config.yaml"), OmegaConf.from_dotlist(overrides))
        data = OmegaConf.to_container(saved, resolve=True)
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError(" ".join(str(err).split())) from None
    cfg = from_dict(data)
    if cfg.tracking.enabled:
        check_tracking_uri(cfg.tracking)
    return cfg


def cmd_analyze(sweep_id: str, overrides: list[str], out: Console, criterion: str = "aicc") -> int:
    """Fit the sweep's scaling curves; write fits.json, report.md and plots; attach them to its MLflow run.
    `criterion` chooses each curve's form: "aicc" (lowest corrected AIC) or "extrapolation" (lowest held-out error)."""
    from analysis.report import analyze, fit_metrics
    from orchestrator.tracking import log_to_sweep, sync_command

    store = _store_of(overrides)
    sweep_dir = store.sweep_dir(sweep_id)
    _require_finished(store, sweep_id)
    with out.status(f"fitting the curves of {sweep_id}"):
        result = analyze(store, sweep_id, criterion=criterion)
    cfg = _saved_config(sweep_dir, overrides)
    failure = cfg.tracking.enabled and log_to_sweep(
        cfg, sweep_id, sweep_dir, [(p, None if p.parent == sweep_dir else "plots") for p in result.paths],
        fit_metrics(result.curves))
    out.print(f"fits:   {result.fits_path}\nreport: {result.report_path}")
    for path in result.plot_paths:
        out.print(f"plot:   {path}")
    if failure:
        out.print(f"mlflow: not logged ({failure}); run `{sync_command(cfg, sweep_id)}` when it can be")
    return 0


def cmd_sync(sweep_id: str, overrides: list[str], out: Console) -> int:
    """Replay what a sweep could not log to MLflow; safe to run again. MLflow still down: TrackingError (one
    line, exit 1), the journal kept as it was."""
    from orchestrator.tracking import Tracker

    store = _store_of(overrides)
    sweep_dir = store.sweep_dir(sweep_id)
    if not (sweep_dir / "config.yaml").is_file():
        raise ConfigError(f"SWEEP_ID={sweep_id!r}: no sweep with that id under {store.root / 'sweeps'}")
    cfg = _saved_config(sweep_dir, overrides)
    tracker = Tracker(cfg, sweep_id, sweep_dir)
    if not tracker.needs_sync:
        out.print(f"sweep {sweep_id}: nothing to sync")
        return 0
    count = tracker.replay()
    out.print(f"sweep {sweep_id}: replayed {count} tracking operations to {tracker.uri}")
    return 0


def cmd_ui(port: int, overrides: list[str], workers: int = 1) -> int:
    """Serve the MLflow UI of the store and print links to a sweep's runs (SWEEP_ID among `overrides`, else the
    latest finished sweep): MLflow 3.17 opens on its GenAI pages, the links open the model-training view."""
    from orchestrator.preflight import check_store_root, check_tracking_uri
    from orchestrator.store import Store
    from orchestrator.tracking import sweep_links, tracking_uri

    ids = [o for o in overrides if "=" not in o]
    if len(ids) > 1:
        raise ConfigError(f"ttc ui takes one SWEEP_ID, got {' '.join(ids)}")
    if workers < 1:
        raise ConfigError(f"--workers={workers}: the web server needs at least 1 worker")
    cfg = compose([o for o in overrides if "=" in o])
    check_store_root(cfg.store)
    check_tracking_uri(cfg.tracking)
    uri = tracking_uri(cfg)
    cfg.store.path.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.store.path)
    if ids and not (store.sweep_dir(ids[0]) / "config.yaml").is_file():
        raise ConfigError(f"SWEEP_ID={ids[0]!r}: no sweep with that id under {store.root / 'sweeps'}")
    sweep_id = ids[0] if ids else next((s for s in reversed(store.sweep_ids())
                                        if store.sweep_status(s).state == "finished"), None)
    base = f"http://127.0.0.1:{port}"
    links = None
    if sweep_id:  # its saved config names its experiment; the store is the one served, wherever the sweep ran
        try:
            saved = _saved_config(store.sweep_dir(sweep_id), [o for o in overrides if "=" in o and not
                                                              o.startswith("store.")] + [f"store.root={store.root}"])
        except (ConfigError, ValueError):
            saved = None  # a config of another version: the UI starts without a link
        if saved is not None and saved.tracking.enabled and tracking_uri(saved) == uri:
            links = sweep_links(saved, sweep_id, base)
    # One web worker (MLflow's default is 4) and no job runner (its huey consumers serve GenAI judge and trace
    # jobs, which ttc never submits): 2 processes and about 0.5 GB instead of 15 and 2.3 GB, measured on 2 cores.
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (cfg.store.path / "mlartifacts").as_uri()]
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    print(f"MLflow UI for {uri} at {base} ({workers} worker{'s' * (workers != 1)}; Ctrl-C to stop)", flush=True)
    if links:
        name, runs, parent = links
        print(f"sweep {sweep_id} ({name}):\n  runs and charts: {runs}\n  summary:         {parent}", flush=True)
    elif sweep_id:
        print(f"sweep {sweep_id} has no MLflow runs in {uri}; open {base}, then \"Model training\"", flush=True)
    os.execv(sys.executable, cmd)  # become the server, so Ctrl-C and kill reach it directly


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (not usage + error), exit status 2 like all bad input."""

    def error(self, message: str):
        print(f"ttc: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def _arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argument of a command, as `add_argument` takes it."""
    return flags, options


@dataclass(frozen=True)
class Command:
    """One `ttc` command: a row of COMMANDS (its name, its help, its arguments as argparse takes them)."""

    name: str
    help: str
    args: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    run: Callable[[argparse.Namespace, Console], int]
    """Runs the parsed command, printing to the console; returns the exit status."""


def _show(a: argparse.Namespace, out: Console) -> int:
    ids = [x for x in a.args if "=" not in x]  # `show [SWEEP_ID] [KEY=VALUE...]`, in any order
    return cmd_show(ids[0] if ids else None, [x for x in a.args if "=" in x], a.ci, out)


OVERRIDES = "hydra overrides, e.g. store.root=/data/ttc"
COMMANDS = {c.name: c for c in (
    Command("sweep", "run a sweep: ttc sweep [hydra overrides...]", (
        _arg("overrides", nargs="*", default=[], help="e.g. dataset=gsm8k 'sweep.n=[1,4,16]'"),
        _arg("--dry-run", action="store_true",
             help="make every check made before a sweep starts, print its size; start and write nothing"),
        _arg("--json", action="store_true",
             help="after the sweep, print one JSON object (sweep_id, store, samples, cells, report, plots, "
                  "status) as the last line of stdout")),
        lambda a, out: cmd_sweep(a.overrides, out, a.dry_run, a.json)),
    Command("show", "print a sweep's cells table", (
        _arg("args", nargs="*", default=[], metavar="SWEEP_ID | KEY=VALUE",
             help="a sweep id and overrides such as store.root=/data/ttc"),
        _arg("--ci", action="store_true", help="add 95%% confidence intervals")),
        _show),
    Command("analyze", "fit scaling curves; write fits.json, report.md and plots", (
        _arg("sweep_id"),
        _arg("overrides", nargs="*", default=[], help=OVERRIDES),
        _arg("--criterion", choices=("aicc", "extrapolation"), default="aicc",
             help="how each curve's form is chosen: lowest AICc (default) or lowest held-out error")),
        lambda a, out: cmd_analyze(a.sweep_id, a.overrides, out, a.criterion)),
    Command("reproduce", "run a recipe (conf/experiment/) and compare with published numbers", (
        _arg("recipe"),
        _arg("--dry-run", action="store_true", help="validate and plan; print the size; load no model"),
        _arg("overrides", nargs="*", default=[], help=OVERRIDES)),
        lambda a, out: cmd_reproduce(a.recipe, a.dry_run, a.overrides, out)),
    Command("sync", "replay to MLflow what a sweep could not log (idempotent)", (
        _arg("sweep_id"),
        _arg("overrides", nargs="*", default=[], help="e.g. store.root=/data/ttc tracking.uri=http://host:5000")),
        lambda a, out: cmd_sync(a.sweep_id, a.overrides, out)),
    Command("ui", "serve the MLflow UI for the local store on 127.0.0.1", (
        _arg("--port", type=int, default=5000),
        _arg("--workers", type=int, default=1, help="web server worker processes (MLflow's default is 4)"),
        _arg("overrides", nargs="*", default=[],
             help="SWEEP_ID (default: the latest finished sweep) and overrides such as store.root=/data/ttc")),
        lambda a, out: cmd_ui(a.port, a.overrides, a.workers)),
)}


def _parser(name: str | None = None) -> _Parser:
    """`ttc`'s parser, which only picks the command (and prints `ttc --help`); with `name`, that command's."""
    if name is not None:
        parser = _Parser(prog=f"ttc {name}", description=COMMANDS[name].help)
        for flags, options in COMMANDS[name].args:
            parser.add_argument(*flags, **options)
        return parser
    parser = _Parser(prog="ttc", description="Test-time-compute scaling sweeps.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():  # each parses its own arguments (main): these only name it
        sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def _failure(err: TtcError) -> tuple[int, str]:
    """The row of FAILURES for `err`: its own class's, else its nearest base's."""
    return next(FAILURES[cls] for cls in type(err).__mro__ if cls in FAILURES)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = _parser().parse_args(argv[:1]).command  # `ttc`, `ttc --help`, an unknown command: argparse's own lines
    # Intermixed: overrides may come before and after options (`ttc show ID --ci store.root=...`).
    args = _parser(name).parse_intermixed_args(argv[1:])
    out = Console(soft_wrap=True)  # paths and commands stay on one line, to be copied
    try:
        return COMMANDS[name].run(args, out)
    except TtcError as err:
        status, what = _failure(err)
        print(f"ttc: {what}: {err}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
