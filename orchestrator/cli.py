"""The `ttc` command.

    ttc sweep [hydra overrides...]   run a sweep, e.g.
        ttc sweep dataset=gsm8k dataset.limit=50 'sweep.budgets=[128,512]' 'sweep.n=[1,4,16]'
        ttc sweep model=a,b dataset=gsm8k,math500    (a grid over models and datasets, one sweep)
    ttc show SWEEP_ID [--ci]         print a finished sweep's cells table (`ttc show`: list sweeps)
    ttc analyze SWEEP_ID             fit the scaling curves: fits.json, report.md, plots (also on MLflow)
    ttc reproduce RECIPE [--dry-run] run a recipe of conf/experiment/, compare with its published numbers
    ttc sync SWEEP_ID                replay to MLflow what a sweep could not log (safe to repeat)
    ttc ui [--port 5000]             serve the MLflow UI for the local store on 127.0.0.1

Bad input (an invalid key or value, an unknown group option, a missing or malformed dataset
file) prints one line naming what is wrong and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.table import Table

from orchestrator.config import ConfigError, compose, compose_grid
from orchestrator.datasets import DatasetError
from orchestrator.errors import SweepError

EXIT_BAD_INPUT = 2


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


def cmd_sweep(overrides: list[str], out: Console) -> int:
    return _run_and_report(compose_grid(overrides), out)[1]


def _run_and_report(cfg, out: Console):
    """Run a sweep and print its tables and paths; (result, exit status)."""
    from orchestrator.sweep import run

    result = run(cfg)
    for table in cells_tables(result.cells):
        out.print(table)
    out.print(f"95% bootstrap CIs: ttc show {result.sweep_id} --ci")
    out.print(f"cells:  {result.cells_path}")
    if result.plot_path:
        out.print(f"plot:   {result.plot_path}")
    if result.needs_sync:
        out.print(f"[yellow]mlflow: tracking failed ({result.tracking_error}); the results are complete in the "
                  f"store. When {result.tracking_uri} is back, run:[/]")
        out.print(f"  ttc sync {result.sweep_id}")
    elif result.tracking_uri:
        out.print(f"mlflow: {result.tracking_uri} (parent run {result.parent_run_id}); browse with `ttc ui`")
    out.print(f"sweep:  {result.sweep_id} ({result.units_run} units run, {result.units_cached} from the store)")
    if result.failed:
        for key, why in result.failed:
            out.print(f"[red]unit {key} failed:[/] {why}")
        out.print(f"[red]{len(result.failed)} units failed[/]; finished units are kept, re-run the same "
                  "command to retry only the missing ones")
        return result, 1
    return result, 0


def cmd_reproduce(recipe: str, dry_run: bool, overrides: list[str], out: Console) -> int:
    """Plan (and unless --dry-run, run) a recipe, then compare it with its published numbers."""
    from analysis.reproduce import compare, plot_reproduction, to_markdown
    from orchestrator.config import group_options
    from orchestrator.datasets import load_problems
    from orchestrator.plan import estimate_size, plan_units
    from orchestrator.tracking import log_to_sweep

    if recipe not in group_options("experiment"):
        raise ConfigError(f"RECIPE={recipe!r} is not a recipe; allowed: {', '.join(group_options('experiment'))} "
                          "(conf/experiment/)")
    cfg = compose([f"experiment={recipe}", *overrides])
    size = estimate_size(cfg, plan_units(cfg, load_problems(cfg.dataset)))
    out.print(f"recipe {recipe}: model {cfg.model.name} (tp={cfg.model.tensor_parallel_size}) on {cfg.dataset.name}, "
              f"budgets {list(cfg.sweep.budgets)}, N {list(cfg.sweep.n)}, strategy {cfg.sweep.strategy}")
    out.print(f"  {size['units']} units, {size['problems']} problems, {size['samples']:,} samples, "
              f"{size['rows']:,} sample rows")
    out.print(f"  at most {size['max_decode_tokens']:,.0f} decode tokens, about {size['gpu_hours']:,.1f} GPU-hours "
              f"at {cfg.model.est_tokens_per_s:,.0f} tokens/s per replica (model.est_tokens_per_s)")
    for p in cfg.published:
        out.print(f"  reproduces {p.aggregator.replace('k', str(p.n))} at B={p.budget}: {p.value} ({p.source})")
    if dry_run:
        return 0
    result, status = _run_and_report(cfg, out)
    table = compare(result.cells, cfg.published)
    title = f"{recipe}: ours vs published"
    md = result.sweep_dir / "reproduction.md"
    md.write_text(to_markdown(table, title), encoding="utf-8")
    table.to_csv(result.sweep_dir / "reproduction.csv", index=False)
    plot = plot_reproduction(result.cells, table, result.sweep_dir / "plots" / "reproduction.png", title)
    failure = cfg.tracking.enabled and log_to_sweep(cfg, result.sweep_id, result.sweep_dir,
                                                    [(md, None), (plot, "plots")])
    if failure:
        out.print(f"mlflow: not logged ({failure}); run `ttc sync {result.sweep_id}` when it can be")
    out.print(md.read_text(encoding="utf-8"))
    out.print(f"reproduction: {md}\nplot:         {plot}")
    return status


def cmd_show(sweep_id: str | None, overrides: list[str], ci: bool, out: Console) -> int:
    from orchestrator.store import Store

    store = Store(compose(overrides).store.path)
    if sweep_id is None:
        for sid in store.sweep_ids():
            out.print(sid)
        return 0
    _require_finished(store, sweep_id)
    for table in cells_tables(store.read_cells(sweep_id), ci=ci):
        out.print(table)
    return 0


def _require_finished(store, sweep_id: str) -> None:
    if not store.cells_path(sweep_id).is_file():
        raise ConfigError(f"SWEEP_ID={sweep_id!r}: no finished sweep with that id under {store.root / 'sweeps'}")


def _store_of(overrides: list[str]):
    """The store the `store.*` overrides name; the other overrides apply to the saved sweep's config."""
    from orchestrator.store import Store

    return Store(compose([o for o in overrides if o.startswith("store.")]).store.path)


def _saved_config(sweep_dir, overrides: list[str]):
    """The config a sweep ran with, as saved in its directory, with `overrides` on top."""
    from omegaconf import OmegaConf

    from orchestrator.config import from_dict

    saved = OmegaConf.merge(OmegaConf.load(sweep_dir / "config.yaml"), OmegaConf.from_dotlist(overrides))
    return from_dict(OmegaConf.to_container(saved, resolve=True))


def cmd_analyze(sweep_id: str, overrides: list[str], out: Console) -> int:
    """Fit the sweep's scaling curves; write fits.json, report.md and plots; attach them to its MLflow run."""
    from analysis.report import analyze, fit_metrics
    from orchestrator.tracking import log_to_sweep

    store = _store_of(overrides)
    sweep_dir = store.sweep_dir(sweep_id)
    _require_finished(store, sweep_id)
    with out.status(f"fitting the curves of {sweep_id}"):
        result = analyze(store, sweep_id)
    cfg = _saved_config(sweep_dir, overrides)
    failure = cfg.tracking.enabled and log_to_sweep(
        cfg, sweep_id, sweep_dir, [(p, None if p.parent == sweep_dir else "plots") for p in result.paths],
        fit_metrics(result.curves))
    out.print(f"fits:   {result.fits_path}\nreport: {result.report_path}")
    for path in result.plot_paths:
        out.print(f"plot:   {path}")
    if failure:
        out.print(f"mlflow: not logged ({failure}); run `ttc sync {sweep_id}` when it can be")
    return 0


def cmd_sync(sweep_id: str, overrides: list[str], out: Console) -> int:
    """Replay what a sweep could not log to MLflow; safe to run again."""
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


def cmd_ui(port: int, overrides: list[str]) -> int:
    from orchestrator.tracking import tracking_uri

    cfg = compose(overrides)
    uri = tracking_uri(cfg)
    cfg.store.path.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (cfg.store.path / "mlartifacts").as_uri()]
    print(f"MLflow UI for {uri} at http://127.0.0.1:{port} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, cmd)  # become the server, so Ctrl-C and kill reach it directly


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ttc", description="Test-time-compute scaling sweeps.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sweep = sub.add_parser("sweep", help="run a sweep: ttc sweep [hydra overrides...]")
    p_sweep.add_argument("overrides", nargs="*", help="e.g. dataset=gsm8k 'sweep.n=[1,4,16]'")
    p_show = sub.add_parser("show", help="print a sweep's cells table")
    p_show.add_argument("args", nargs="*", metavar="SWEEP_ID | KEY=VALUE",
                        help="a sweep id and overrides such as store.root=/data/ttc")
    p_show.add_argument("--ci", action="store_true", help="add 95%% bootstrap confidence intervals")
    p_an = sub.add_parser("analyze", help="fit scaling curves; write fits.json, report.md and plots")
    p_an.add_argument("sweep_id")
    p_an.add_argument("overrides", nargs="*", help="e.g. store.root=/data/ttc")
    p_rep = sub.add_parser("reproduce", help="run a recipe (conf/experiment/) and compare with published numbers")
    p_rep.add_argument("recipe")
    p_rep.add_argument("--dry-run", action="store_true", help="validate and plan; print the size; load no model")
    p_rep.add_argument("overrides", nargs="*")
    p_sync = sub.add_parser("sync", help="replay to MLflow what a sweep could not log (idempotent)")
    p_sync.add_argument("sweep_id")
    p_sync.add_argument("overrides", nargs="*", help="e.g. store.root=/data/ttc tracking.uri=http://host:5000")
    p_ui = sub.add_parser("ui", help="serve the MLflow UI for the local store on 127.0.0.1")
    p_ui.add_argument("--port", type=int, default=5000)
    p_ui.add_argument("overrides", nargs="*", help="e.g. store.root=/data/ttc")
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command not in ("show", "reproduce") or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "show":  # `show ID --ci KEY=VALUE`: positionals after an option arrive as extras
        args.args += extra
    if args.command == "reproduce":
        args.overrides += extra
    out = Console(soft_wrap=True)  # paths and commands stay on one line, to be copied
    try:
        if args.command == "sweep":
            return cmd_sweep(args.overrides, out)
        if args.command == "show":
            ids = [a for a in args.args if "=" not in a]
            return cmd_show(ids[0] if ids else None, [a for a in args.args if "=" in a], args.ci, out)
        if args.command == "analyze":
            return cmd_analyze(args.sweep_id, args.overrides, out)
        if args.command == "reproduce":
            return cmd_reproduce(args.recipe, args.dry_run, args.overrides, out)
        if args.command == "sync":
            return cmd_sync(args.sweep_id, args.overrides, out)
        return cmd_ui(args.port, args.overrides)
    except (ConfigError, DatasetError) as err:
        print(f"ttc: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SweepError as err:  # the run stopped part-way; what finished is in the store
        print(f"ttc: sweep stopped: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
