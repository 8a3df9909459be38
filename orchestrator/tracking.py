"""MLflow tracking: one parent run per sweep, one child run per (model, dataset, budget, strategy).

The only module that imports mlflow, and only the driver calls it. Layout (DESIGN.md):
experiment = sweep name; the parent run (named by its models, datasets, grid and sweep id) holds
the resolved config, git commit, engine versions, `sweep_id` tag, a markdown description with the
headline table, summary metrics (each budget's maj@N_max and pass@N_max, the best accuracy and its
tokens per problem), the sweep-wide progress while it runs, the cells table (Parquet and CSV) and
plots; each child run (named `B=15 · model · dataset · cap`, what differs first) holds tags `model`,
`dataset`, `budget`, `strategy`, the dataset as an MLflow dataset input, its own progress while the
sweep runs (stepped by its problems done), and `maj_accuracy` / `pass_at_k` / `tokens_per_problem`
stepped by N (one point per N).

MLflow 3.17's UI opens on its GenAI pages unless the URL says otherwise: the experiment page reads
the workflow from the `workflowType` query parameter (else from the browser's local storage,
default `genai`; the `mlflow.experimentKind` tag no longer decides it). So `runs_url` links to
`#/experiments/<id>/runs?workflowType=machine_learning&compareRunsMode=CHART&viewStateShareKey=<sweep>`,
and each sweep stores its view as the experiment tag `mlflow.sharedViewState.<sweep>` (the form of
the UI's own "share view"): only its child runs, listed by budget, metric columns shown, and the
charts in order (maj_accuracy first, x = N on a log axis, progress apart).

Tracking must never cost a result. Every call is an idempotent operation: runs are found by
their `ttc.run_key` tag before one is created, and metric points carry fixed timestamps, so
MLflow drops an exact repeat. If the tracking server fails, that operation and every later
one are appended to the sweep's `tracking_pending.jsonl` instead, the sweep goes on, and
`ttc sync SWEEP_ID` replays the file; replaying twice changes nothing.

A sweep whose driver died never ends its runs: `close_dead_sweeps` (called by the next sweep
and by `ttc show`) ends them as KILLED, through the same journaled operations.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import shlex
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa

from orchestrator.colors import ramp_color
from orchestrator.config import PROJECT_ROOT, Config, StoreConfig, from_dict
from orchestrator.errors import TrackingError
from orchestrator.store import Store, atomic_write

METRIC_OF = {"maj@k": "maj_accuracy", "pass@k": "pass_at_k", "bon@k": "bon_accuracy", "wmaj@k": "wmaj_accuracy"}
PENDING = "tracking_pending.jsonl"
LIVE_INTERVAL_S = 5.0  # live metrics at most this often: one log_batch per child per interval
SWEEP_WIDE = ("tokens_per_s",)  # live figures of the whole sweep: logged on the parent run, not copied to each child
UI_PORT = 5000  # `ttc ui`'s default port, where a local store's links point
SHARED_VIEW = "mlflow.sharedViewState."  # experiment tag prefix the UI reads a `viewStateShareKey` link from
EXPERIMENT_NOTE = ("ttc sweeps: one parent run per sweep, one child run per budget. `ttc ui` prints a link to each "
                   "sweep's runs and charts. If the sidebar says GenAI, click Model training once: MLflow "
                   "remembers it.")
EXPERIMENT_TAGS = {
    # Read by MLflow 3.x UIs that decide the experiment's page by its kind (3.17 decides by the URL, see runs_url).
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.experiment.primaryMetric.name": "maj_accuracy",
    "mlflow.experiment.primaryMetric.greaterIsBetter": "true",
}


def sync_command(cfg: Config, sweep_id: str) -> str:
    """The `ttc sync` command that finds this sweep again: its store.root and tracking.uri when not the defaults."""
    parts = ["ttc", "sync", sweep_id]
    if cfg.store.root != StoreConfig().root:
        parts.append(f"store.root={cfg.store.path}")
    if cfg.tracking.uri:
        parts.append(f"tracking.uri={cfg.tracking.uri}")
    return shlex.join(parts)


def tracking_uri(cfg: Config) -> str:
    """The configured URI, or the default sqlite database under store.root (always absolute)."""
    return cfg.tracking.uri or f"sqlite:///{cfg.store.path / 'mlflow.db'}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def child_key(sweep_id: str, model: str, dataset: str, budget: int, strategy: str) -> str:
    return f"{sweep_id}/{model}/{dataset}/B={budget}/{strategy}"


def child_name(model: str, dataset: str, budget: int, strategy: str) -> str:
    """What differs between a sweep's children comes first, so a cut-off name still tells them apart."""
    return f"B={budget} · {model} · {dataset} · {strategy}"


def _values(xs: list[int]) -> str:
    return ",".join(map(str, xs)) if len(xs) <= 4 else f"{xs[0]}..{xs[-1]}"


def parent_name(sweep_id: str, models: list[str], datasets: list[str], budgets: list[int], ns: list[int]) -> str:
    """E.g. `toy · toy_arith · B=0,15,30,50 · N=1..16 · 20261205-014731-ab12cd`."""
    return (f"{', '.join(dict.fromkeys(models))} · {', '.join(dict.fromkeys(datasets))} · B={_values(budgets)} · "
            f"N={_values(ns)} · {sweep_id}")


def _col(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's column key


def _chart(uuid: str, section: str, metric: str, title: str, x: str = "step", x_log: bool = True,
           x_range: tuple[float, float] | None = None) -> dict:
    """One line chart card of the UI's saved chart layout (fields as MLflow 3.17's RunsChartsLineCardConfig).
    `x_range` is in axis units: log10 of the step on a log axis."""
    return {"type": "LINE", "uuid": uuid, "metricSectionId": section, "deleted": False, "isGenerated": False,
            "runsCountToCompare": 100, "metricKey": metric, "selectedMetricKeys": [metric], "displayName": title,
            "xAxisKey": x, "xAxisScaleType": "log" if x_log else "linear", "scaleType": "linear",
            "lineSmoothness": 0, "range": {"xMin": x_range[0], "xMax": x_range[1]} if x_range else {},
            "selectedXAxisMetricKey": "", "displayPoints": True,
            "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False, "useGlobalXaxisKey": False,
            "useGlobalLineSmoothing": False}


def view_state(sweep_id: str, ns: list[int] | None = None) -> dict:
    """The UI view of one sweep's runs, stored as the experiment tag SHARED_VIEW + sweep_id: its child runs only,
    each a row of its own (ordered by anything but start time, the UI does not fetch their parent to fold them
    under it), ordered by budget, result metrics as columns, and the charts in order: the results, one point per N
    on a log axis, maj@N_max against the budget, then the progress. Metrics not named here still get charts, in a
    section after these. `ns`: the sweep's N, to frame the log axis on them."""
    results, progress = "ttc-results", "ttc-progress"
    card = {"deleted": False, "isGenerated": False, "runsCountToCompare": 100}
    # Plotly labels minor ticks below the first N (0.8, 0.9) when it frames the axis itself.
    n_range = (math.log10(min(ns)) - 0.05, math.log10(max(ns)) + 0.05) if ns else None
    charts = [
        _chart("ttc-maj", results, "maj_accuracy", "maj_accuracy (x: N, log)", x_range=n_range),
        {**card, "type": "SCATTER", "uuid": "ttc-serial", "metricSectionId": results,
         "xaxis": {"key": "budget", "type": "METRIC"}, "yaxis": {"key": "maj_accuracy", "type": "METRIC"}},
        _chart("ttc-pass", results, "pass_at_k", "pass_at_k (x: k, log)", x_range=n_range),
        _chart("ttc-tokens", results, "tokens_per_problem", "tokens_per_problem (x: N, log)", x_range=n_range),
        {**card, "type": "BAR", "uuid": "ttc-think", "metricSectionId": results, "metricKey": "mean_think_tokens",
         "displayName": "mean_think_tokens"},
        {**card, "type": "BAR", "uuid": "ttc-budget", "metricSectionId": results, "metricKey": "budget",
         "deleted": True},  # the budget is in each run's name: no chart of its own
        _chart("ttc-running", progress, "running_pass_at_1", "running_pass_at_1 (x: problems done)", x_log=False),
        _chart("ttc-done", progress, "problems_done", "problems_done (x: time)", x="time-relative", x_log=False),
    ]
    sections = [{"uuid": uuid, "name": name, "display": True, "isReordered": True, "deleted": False,
                 "isGenerated": False, "columns": 2}  # two wide charts a row: the parallel and the serial curve
                for uuid, name in ((results, "Results (step = N)"), (progress, "Progress (step = problems done)"))]
    return {
        # search facets
        "searchFilter": f"tags.sweep_id = '{sweep_id}' and tags.`ttc.kind` = 'cell'",
        "orderByKey": _col("metrics", "budget"), "orderByAsc": True, "startTime": "ALL", "lifecycleFilter": "Active",
        "datasetsFilter": [], "modelVersionFilter": "All Runs",
        # UI state
        "selectedColumns": [_col("metrics", m) for m in ("maj_accuracy", "pass_at_k", "tokens_per_problem",
                                                          "mean_think_tokens", "budget")]
                           + [_col("params", p) for p in ("model", "dataset", "strategy", "problems")],
        "compareRunCharts": charts, "compareRunSections": sections, "isAccordionReordered": True,
        "runsHiddenMode": "SHOW_ALL", "hideEmptyCharts": True, "viewMaximized": False, "runListHidden": False,
        "useGroupedValuesInCharts": True, "groupBy": None,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def packed_view(sweep_id: str, ns: list[int] | None = None) -> str:
    """view_state as the UI stores a shared view: `deflate;` + base64 of zlib, about 1 kB a sweep."""
    data = json.dumps(view_state(sweep_id, ns), separators=(",", ":")).encode()
    return "deflate;" + base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def ui_base(cfg: Config, port: int = UI_PORT) -> str:
    """Where the UI of this config's tracking store is served: the tracking server itself, or `ttc ui` locally."""
    uri = tracking_uri(cfg)
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"


def runs_url(base: str, experiment_id: str, sweep_id: str, shared_view: bool = True) -> str:
    """The sweep's child runs in the UI's model-training view, charts open. Without its shared view (a sweep
    logged before there was one) the same filter and order go in the URL, and MLflow's default charts follow."""
    query = {"workflowType": "machine_learning", "compareRunsMode": "CHART"}
    if shared_view:
        query["viewStateShareKey"] = sweep_id
    else:
        state = view_state(sweep_id)
        query |= {"searchFilter": state["searchFilter"], "orderByKey": state["orderByKey"], "orderByAsc": "true"}
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """One run's page (the parent's: description, summary metrics, artifacts) in the model-training view."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _summary(cells: pa.Table) -> tuple[dict[str, float], str]:
    """The parent run's summary metrics and its markdown description, from the cells table."""
    df = cells.to_pandas()
    if df.empty:
        return {}, "No cells: a simulated engine (`model.engine=sim`) reports lengths and timings, never accuracy."
    pairs = sorted({(m, d) for m, d in zip(df.model, df.dataset)})
    metrics: dict[str, float] = {}
    parts = []
    for model, dataset in pairs:
        g = df[(df.model == model) & (df.dataset == dataset)]
        prefix = "" if len(pairs) == 1 else re.sub(r"[^\w.\- /:]", "_", f"{model}/{dataset}/")
        n_max = int(g.n.max())
        maj, pas = g[g.aggregator == "maj@k"], g[g.aggregator == "pass@k"]
        lines = [f"| B (thinking tokens) | mean think tokens | pass@1 | maj@{n_max} | pass@{n_max} | "
                 f"tokens per problem at N={n_max} |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for budget, b in g.groupby("budget", sort=True):
            at = {(r.aggregator, int(r.n)): r for r in b.itertuples()}
            top_maj, top_pass, one = at.get(("maj@k", n_max)), at.get(("pass@k", n_max)), at.get(("pass@k", 1))
            if top_maj is not None:
                metrics[f"{prefix}maj_at_{n_max}_B{budget}"] = float(top_maj.accuracy)
            if top_pass is not None:
                metrics[f"{prefix}pass_at_{n_max}_B{budget}"] = float(top_pass.accuracy)
            def cell(r) -> str:
                return "" if r is None else f"{r.accuracy:.3f}"

            lines.append(f"| {budget} | {b.mean_think_tokens.iloc[0]:.1f} | {cell(one)} | {cell(top_maj)} | "
                         f"{cell(top_pass)} | {'' if top_maj is None else f'{top_maj.tokens_per_problem:,.0f}'} |")
        where = f"{model} on {dataset}, {int(g.problems.iloc[0])} problems, {', '.join(sorted(set(g.strategy)))}"
        if not maj.empty:  # the best a user gets (a vote), and what it costs: the first line the UI shows
            best = maj.sort_values(["accuracy", "tokens_per_problem"], ascending=[False, True]).iloc[0]
            metrics[f"{prefix}best_maj_accuracy"] = float(best.accuracy)
            metrics[f"{prefix}best_tokens_per_problem"] = float(best.tokens_per_problem)
            head = (f"**Best: maj@{int(best.n)} = {best.accuracy:.3f}** [{best.ci_low:.2f}, {best.ci_high:.2f}] at "
                    f"B = {int(best.budget)}, {best.tokens_per_problem:,.0f} tokens per problem ({where})")
        else:
            best_pass = float(pas.accuracy.max())
            metrics[f"{prefix}best_pass_at_k"] = best_pass
            head = f"**Best: pass@k = {best_pass:.3f}** ({where})"
        parts.append("\n".join([head, "", *lines]))
    parts.append("Each child run is one budget B: its `maj_accuracy` and `pass_at_k` have one point per N (the "
                 "step is N), so its chart is the parallel-scaling curve of that budget. Every cell with its 95% "
                 "interval: `cells.csv` (and `cells.parquet`) under Artifacts.")
    return metrics, "\n\n".join(parts)


class Tracker:
    """Logs one sweep to MLflow, or to the pending file while MLflow is unreachable."""

    def __init__(self, cfg: Config, sweep_id: str, sweep_dir: Path) -> None:
        # Fail fast on a dead server (MLflow's defaults retry for minutes); the journal keeps the call.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(cfg)
        self.local = self.uri.startswith("sqlite:")
        if self.local:
            cfg.store.path.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.artifact_root = (cfg.store.path / "mlartifacts").as_uri() if self.local else None
        self.experiment_name = cfg.sweep.name
        self.sweep_id = sweep_id
        self.pending = sweep_dir / PENDING
        self.children: list[str] = []  # the child runs start_sweep opened, for finish to end
        self.offline = self.pending.exists()
        self.error: str | None = None
        self._experiment_id: str | None = None
        self._run_ids: dict[str, str] = {}
        self._last_live = 0.0

    @property
    def parent_key(self) -> str:
        return self.sweep_id

    @property
    def parent_id(self) -> str | None:
        return self._run_ids.get(self.parent_key)

    @property
    def needs_sync(self) -> bool:
        return self.pending.exists()

    # --- the operations: each idempotent, each either applied or journaled ---
    def record(self, op: str, **args: Any) -> None:
        """Apply one operation (`_op_<op>`) now, or journal it for `ttc sync` once MLflow has failed."""
        if not self.offline:
            try:
                getattr(self, f"_op_{op}")(**args)
                return
            except Exception as err:  # noqa: BLE001 - any tracking failure: keep the call, go on
                self.offline, self.error = True, " ".join(str(err).split())[:300]
        with self.pending.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"op": op, "args": args}) + "\n")

    def replay(self) -> int:
        """Apply every journaled operation; returns how many. If MLflow is still unreachable, raises
        TrackingError and leaves the journal as it was (the operations already applied are idempotent)."""
        lines = self.pending.read_text(encoding="utf-8").splitlines() if self.pending.exists() else []
        quiet = logging.getLogger("urllib3.connectionpool")  # its retry warnings would bury the one line
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            for i, line in enumerate(lines):
                entry = json.loads(line)
                try:
                    getattr(self, f"_op_{entry['op']}")(**entry["args"])
                except Exception as err:  # noqa: BLE001 - any failure of MLflow: one line, journal kept
                    why = " ".join(str(err).split())[:200] or type(err).__name__
                    raise TrackingError(f"{self.uri}: operation {i + 1} of {len(lines)} failed ({why}); "
                                        f"{self.pending} is kept, run this again once MLflow is back") from None
        finally:
            quiet.setLevel(level)
        if lines:
            done = self.pending.with_name("tracking_synced.jsonl")
            with done.open("a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
            self.pending.unlink()
        self.offline = False
        return len(lines)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (found.experiment_id if found is not None else
                                   self.client.create_experiment(self.experiment_name,
                                                                 artifact_location=self.artifact_root,
                                                                 tags={**EXPERIMENT_TAGS,
                                                                       "mlflow.note.content": EXPERIMENT_NOTE}))
        return self._experiment_id

    def _op_experiment_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_experiment_tag(self._experiment(), key, value)

    def _run_id(self, key: str) -> str:
        if key not in self._run_ids:
            found = self.client.search_runs([self._experiment()], filter_string=f"tags.`ttc.run_key` = '{key}'",
                                            max_results=1)
            if not found:
                raise LookupError(f"no MLflow run with ttc.run_key={key}")
            self._run_ids[key] = found[0].info.run_id
        return self._run_ids[key]

    def _op_run(self, key: str, name: str, tags: dict[str, str], parent: str | None, start_ms: int) -> None:
        try:
            self._run_id(key)
            return
        except LookupError:
            pass
        tags = {**tags, "ttc.run_key": key}
        if parent is not None:
            tags["mlflow.parentRunId"] = self._run_id(parent)
        run = self.client.create_run(self._experiment(), start_time=start_ms, run_name=name, tags=tags)
        self._run_ids[key] = run.info.run_id

    def _op_log(self, key: str, metrics: list[list] | None = None, params: dict[str, str] | None = None,
                tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(self._run_id(key),
                              metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics or []],
                              params=[Param(k, v[:6000]) for k, v in (params or {}).items()],
                              tags=[RunTag(k, v) for k, v in (tags or {}).items()])

    def _op_dataset(self, key: str, name: str, digest: str, source: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest, source_type="local" if self.local else "path", source=source)
        self.client.log_inputs(self._run_id(key), [DatasetInput(dataset, [InputTag("mlflow.data.context", "eval")])])

    def _op_artifact(self, key: str, path: str, artifact_dir: str | None) -> None:
        self.client.log_artifact(self._run_id(key), path, artifact_dir)

    def _op_end(self, key: str, status: str, end_ms: int) -> None:
        self.client.set_terminated(self._run_id(key), status, end_time=end_ms)

    def _op_end_running(self, status: str, end_ms: int) -> None:
        """End every run of this sweep still RUNNING (parent and children): a repeat finds none."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return  # no run of it was ever created
        token = None
        while True:
            page = self.client.search_runs([experiment.experiment_id], max_results=1000, page_token=token,
                                           filter_string=f"tags.sweep_id = '{self.sweep_id}' and "
                                                         "attributes.status = 'RUNNING'")
            for run in page:
                self.client.set_terminated(run.info.run_id, status, end_time=end_ms)
            token = page.token
            if not token:
                return

    # --- what the sweep calls ---
    def start_sweep(self, cfg: Config, config_path: Path, pairs: list[tuple[str, str, str, str]]) -> None:
        """The parent run with the resolved config, and a child run per (model, dataset, budget, strategy).
        `pairs` holds (model, dataset, dataset digest, dataset source) for every pair of the grid."""
        now = int(time.time() * 1000)
        budgets, ns = list(cfg.sweep.budgets), list(cfg.sweep.n)
        models, datasets = [m for m, _, _, _ in pairs], [d for _, d, _, _ in pairs]
        # The sweep's view of its runs, for the link runs_url prints (the tag survives in the journal like any call).
        self.record("experiment_tags", tags={**EXPERIMENT_TAGS, SHARED_VIEW + self.sweep_id:
                                                                   packed_view(self.sweep_id, ns)})
        tags = {"sweep_id": self.sweep_id, "ttc.kind": "sweep",
                "mlflow.note.content": (f"Sweep `{self.sweep_id}`: {', '.join(dict.fromkeys(models))} on "
                                        f"{', '.join(dict.fromkeys(datasets))}; budgets B = {budgets} thinking "
                                        f"tokens, N = {ns} samples, strategy {cfg.sweep.strategy}. Running: "
                                        "the headline table appears here when it finishes.")}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        self.record("run", key=self.parent_key, name=parent_name(self.sweep_id, models, datasets, budgets, ns),
                 tags=tags, parent=None, start_ms=now)
        params = _flatten(cfg.to_dict())
        if len(pairs) > 1:
            params["grid"] = json.dumps([[m, d] for m, d, _, _ in pairs])
        self.record("log", key=self.parent_key, params=params)
        self.record("artifact", key=self.parent_key, path=str(config_path), artifact_dir=None)
        strategy = cfg.sweep.strategy
        order, count = 0, len(pairs) * len(budgets)
        for model, dataset, digest, source in pairs:
            for budget in budgets:
                key = child_key(self.sweep_id, model, dataset, budget, strategy)
                self.children.append(key)
                # Child run colors in the UI, dark to light in grid order: the plots' ramp (orchestrator/colors.py).
                color = ramp_color(order / max(count - 1, 1))
                tags = {"model": model, "dataset": dataset, "budget": str(budget), "strategy": strategy,
                        "sweep_id": self.sweep_id, "ttc.kind": "cell", "mlflow.runColor": color}
                order += 1  # children start 1 ms apart in grid order: the UI lists them by start time
                self.record("run", key=key, name=child_name(model, dataset, budget, strategy), tags=tags,
                         parent=self.parent_key, start_ms=now + order)
                # `budget` also as a metric (step 0): the UI sorts and plots by metrics, numerically (params are text)
                self.record("log", key=key, params={"model": model, "dataset": dataset, "budget": str(budget),
                                                 "strategy": strategy}, metrics=[["budget", budget, now, 0]])
                self.record("dataset", key=key, name=dataset, digest=digest, source=source)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.record("log", key=self.parent_key, tags=tags)

    def log_live(self, progress: dict[tuple[str, str, int, str], tuple[int, dict[str, float]]],
                 force: bool = False) -> None:
        """Running metrics at a bounded rate: per child, its own problems done and accuracy so far, stepped by
        its problems done; on the parent, the sweep's problems done and tokens/s (SWEEP_WIDE), stepped by the
        sweep's problems done."""
        now = time.monotonic()
        if not force and now - self._last_live < LIVE_INTERVAL_S:
            return
        self._last_live = now
        ts = int(time.time() * 1000)
        done: dict[tuple[str, str, str], int] = {}  # per (model, dataset, strategy): every budget counts a problem
        wide: dict[str, float] = {}
        for (model, dataset, budget, strategy), (step, metrics) in progress.items():
            key = child_key(self.sweep_id, model, dataset, budget, strategy)
            self.record("log", key=key, metrics=[[name, value, ts, step] for name, value in metrics.items()
                                              if name not in SWEEP_WIDE])
            done[(model, dataset, strategy)] = max(done.get((model, dataset, strategy), 0), step)
            wide.update({name: value for name, value in metrics.items() if name in SWEEP_WIDE})
        if done:
            step = sum(done.values())
            self.record("log", key=self.parent_key, metrics=[[name, value, ts, step] for name, value in
                                                          sorted({**wide, "problems_done": float(step)}.items())])

    def log_cells(self, cells: pa.Table) -> None:
        """Final metrics per child (maj_accuracy, pass_at_k and tokens_per_problem stepped by N; mean_think_tokens,
        which does not depend on N, once), the parent's summary metrics and description, and the cells as CSV."""
        ts = int(time.time() * 1000)
        df = cells.to_pandas()
        for (model, dataset, budget, strategy), g in df.groupby(["model", "dataset", "budget", "strategy"], sort=True):
            metrics = []
            for row in g.itertuples():
                name = METRIC_OF.get(row.aggregator, row.aggregator.replace("@k", "_accuracy"))
                metrics.append([name, float(row.accuracy), ts, int(row.n)])
                if row.aggregator == "maj@k":  # compute is the same for both aggregators: log it once
                    metrics.append(["tokens_per_problem", float(row.tokens_per_problem), ts, int(row.n)])
            metrics.append(["mean_think_tokens", float(g.mean_think_tokens.iloc[0]), ts, 0])
            key = child_key(self.sweep_id, model, dataset, int(budget), strategy)
            self.record("log", key=key, metrics=metrics, params={"problems": str(int(g.problems.iloc[0]))})
        summary, description = _summary(cells)
        if len(description) > 7900:  # MLflow keeps at most 8,000 characters of a tag
            description = description[:7800].rsplit("\n", 1)[0] + "\n\n(cut here: every cell is in `cells.csv`)"
        self.record("log", key=self.parent_key, metrics=[[k, v, ts, 0] for k, v in sorted(summary.items())],
                 tags={"mlflow.note.content": description})
        csv = self.pending.parent / "cells.csv"  # beside cells.parquet: the UI previews CSV as a table
        atomic_write(csv, lambda tmp: df.to_csv(tmp, index=False, float_format="%.6g"))
        self.record("artifact", key=self.parent_key, path=str(csv), artifact_dir=None)

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        self.record("artifact", key=self.parent_key, path=str(path), artifact_dir=artifact_dir)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Figures of the whole sweep on the parent run (units re-queued, engines lost, ...)."""
        ts = int(time.time() * 1000)
        self.record("log", key=self.parent_key, metrics=[[k, float(v), ts, 0] for k, v in sorted(metrics.items())])

    def end_running(self, status: str = "KILLED") -> None:
        """For a sweep whose driver died: end its runs that were left RUNNING."""
        self.record("end_running", status=status, end_ms=int(time.time() * 1000))

    def finish(self, ok: bool) -> None:
        now = int(time.time() * 1000)
        status = "FINISHED" if ok else "FAILED"
        for key in self.children:
            self.record("end", key=key, status=status, end_ms=now)
        self.record("end", key=self.parent_key, status=status, end_ms=now)

    def links(self, base: str) -> tuple[str, str] | None:
        """(the sweep's runs with their charts, the parent run's page) in the UI at `base`; None while the
        runs are only journaled."""
        if self.offline or self.parent_id is None or self._experiment_id is None:
            return None
        return runs_url(base, self._experiment_id, self.sweep_id), run_url(base, self._experiment_id, self.parent_id)


def sweep_links(cfg: Config, sweep_id: str, base: str) -> tuple[str, str, str] | None:
    """(parent run name, runs URL, parent run URL) of a logged sweep, read from its tracking store; None if
    the store has no parent run for it (not logged yet, tracking off, or the store cannot be opened)."""
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=tracking_uri(cfg))
        experiment = client.get_experiment_by_name(cfg.sweep.name)
        if experiment is None:
            return None
        found = client.search_runs([experiment.experiment_id], max_results=1,
                                   filter_string=f"tags.`ttc.run_key` = '{sweep_id}'")
    except Exception:  # noqa: BLE001 - a store this MLflow cannot read: no link, the UI still starts
        return None
    if not found:
        return None
    run, eid = found[0], experiment.experiment_id
    shared = SHARED_VIEW + sweep_id in experiment.tags  # sweeps logged before views were stored have none
    return run.info.run_name, runs_url(base, eid, sweep_id, shared), run_url(base, eid, run.info.run_id)


def log_to_sweep(cfg: Config, sweep_id: str, sweep_dir: Path, artifacts: list[tuple[Path, str | None]],
                 metrics: dict[str, float] | None = None) -> str | None:
    """Attach files (and metrics, e.g. fitted parameters) made after a sweep to its parent run.
    Returns None, or why they were journaled for `ttc sync` instead."""
    tracker = Tracker(cfg, sweep_id, sweep_dir)
    for path, artifact_dir in artifacts:
        tracker.log_artifact(path, artifact_dir)
    if metrics:
        ts = int(time.time() * 1000)
        tracker.record("log", key=tracker.parent_key, metrics=[[k, v, ts, 0] for k, v in sorted(metrics.items())])
    return (tracker.error or "earlier operations are still waiting for sync") if tracker.needs_sync else None


def close_dead_sweeps(store: Store) -> list[str]:
    """End as KILLED the MLflow runs of every sweep under `store` whose driver died (once per sweep: the
    sweep directory records it); returns one line per sweep closed."""
    lines = []
    for sweep_id in store.sweep_ids():
        status = store.sweep_status(sweep_id)
        if status.state != "dead" or status.closed:
            continue
        sweep_dir = store.sweep_dir(sweep_id)
        try:
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(OmegaConf.load(sweep_dir / "config.yaml"), resolve=True)
            data["store"] = {**data.get("store", {}), "root": str(store.root)}  # wherever it was run from
            cfg = from_dict(data)
        except Exception as err:  # noqa: BLE001 - a config of another version, a broken file: say so, go on
            lines.append(f"sweep {sweep_id} is dead; its config cannot be read ({' '.join(str(err).split())[:200]}), "
                         "so its MLflow runs are left as they are")
            store.mark_closed(sweep_id, "unreadable config")
            continue
        if not cfg.tracking.enabled:
            store.mark_closed(sweep_id, "no tracking")
            continue
        try:
            tracker = Tracker(cfg, sweep_id, sweep_dir)
        except Exception as err:  # noqa: BLE001 - a URI this MLflow cannot open: nothing to end there
            lines.append(f"sweep {sweep_id} is dead; its tracking.uri={tracking_uri(cfg)} cannot be opened "
                         f"({' '.join(str(err).split())[:200]}), so its MLflow runs are left as they are")
            store.mark_closed(sweep_id, "tracking unavailable")
            continue
        tracker.end_running("KILLED")  # applied, or journaled while MLflow is down
        store.mark_closed(sweep_id, "KILLED")
        if tracker.needs_sync:
            lines.append(f"sweep {sweep_id} is dead (its driver is gone); marking its MLflow runs KILLED is "
                         f"journaled until `{sync_command(cfg, sweep_id)}`")
        else:
            lines.append(f"sweep {sweep_id} is dead (its driver is gone): its MLflow runs are now KILLED")
    return lines
