"""MLflow tracking: one parent run per sweep, one child run per (model, dataset, budget, strategy).

The only module that imports mlflow, and only the driver calls it. Layout (DESIGN.md):
experiment = sweep name; the parent run holds the resolved config, git commit, engine
versions, `sweep_id` tag, cells table and plots; each child run holds tags `model`,
`dataset`, `budget`, `strategy`, the dataset as an MLflow dataset input, live progress
while the sweep runs, and `maj_accuracy` / `pass_at_k` stepped by N (one point per N).

Tracking must never cost a result. Every call is an idempotent operation: runs are found by
their `ttc.run_key` tag before one is created, and metric points carry fixed timestamps, so
MLflow drops an exact repeat. If the tracking server fails, that operation and every later
one are appended to the sweep's `tracking_pending.jsonl` instead, the sweep goes on, and
`ttc sync SWEEP_ID` replays the file; replaying twice changes nothing.

A sweep whose driver died never ends its runs: `close_dead_sweeps` (called by the next sweep
and by `ttc show`) ends them as KILLED, through the same journaled operations.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from orchestrator.config import PROJECT_ROOT, Config, StoreConfig, from_dict
from orchestrator.store import Store

METRIC_OF = {"maj@k": "maj_accuracy", "pass@k": "pass_at_k"}
PENDING = "tracking_pending.jsonl"
LIVE_INTERVAL_S = 5.0  # live metrics at most this often: one log_batch per child per interval


class TrackingError(RuntimeError):
    """MLflow could not be reached (or refused) while replaying the journal; the message is one line."""


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
    def _do(self, op: str, **args: Any) -> None:
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
            # The kind tag makes MLflow's UI open on the runs table (parents with nested children),
            # not on its GenAI traces view.
            self._experiment_id = (found.experiment_id if found is not None else
                                   self.client.create_experiment(self.experiment_name,
                                                                 artifact_location=self.artifact_root,
                                                                 tags={"mlflow.experimentKind":
                                                                       "custom_model_development"}))
        return self._experiment_id

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
        tags = {"sweep_id": self.sweep_id, "ttc.kind": "sweep"}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        self._do("run", key=self.parent_key, name=self.sweep_id, tags=tags, parent=None, start_ms=now)
        params = _flatten(cfg.to_dict())
        if len(pairs) > 1:
            params["grid"] = json.dumps([[m, d] for m, d, _, _ in pairs])
        self._do("log", key=self.parent_key, params=params)
        self._do("artifact", key=self.parent_key, path=str(config_path), artifact_dir=None)
        strategy = cfg.sweep.strategy
        for model, dataset, digest, source in pairs:
            for budget in cfg.sweep.budgets:
                key = child_key(self.sweep_id, model, dataset, budget, strategy)
                self.children.append(key)
                tags = {"model": model, "dataset": dataset, "budget": str(budget), "strategy": strategy,
                        "sweep_id": self.sweep_id, "ttc.kind": "cell"}
                self._do("run", key=key, name=f"{model}/{dataset}/B={budget}/{strategy}", tags=tags,
                         parent=self.parent_key, start_ms=now)
                self._do("log", key=key, params={"model": model, "dataset": dataset, "budget": str(budget),
                                                 "strategy": strategy})
                self._do("dataset", key=key, name=dataset, digest=digest, source=source)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._do("log", key=self.parent_key, tags=tags)

    def log_live(self, progress: dict[tuple[str, str, int, str], tuple[int, dict[str, float]]],
                 force: bool = False) -> None:
        """Running metrics per child (problems done, accuracy so far, tokens/s), stepped by its problems
        done, at a bounded rate."""
        now = time.monotonic()
        if not force and now - self._last_live < LIVE_INTERVAL_S:
            return
        self._last_live = now
        ts = int(time.time() * 1000)
        for (model, dataset, budget, strategy), (step, metrics) in progress.items():
            key = child_key(self.sweep_id, model, dataset, budget, strategy)
            self._do("log", key=key, metrics=[[name, value, ts, step] for name, value in metrics.items()])

    def log_cells(self, cells: pa.Table) -> None:
        """Final metrics per child: maj_accuracy and pass_at_k stepped by N, compute per N."""
        ts = int(time.time() * 1000)
        df = cells.to_pandas()
        for (model, dataset, budget, strategy), g in df.groupby(["model", "dataset", "budget", "strategy"], sort=True):
            metrics = []
            for row in g.itertuples():
                metrics.append([METRIC_OF[row.aggregator], float(row.accuracy), ts, int(row.n)])
                if row.aggregator == "maj@k":  # compute is the same for both aggregators: log it once
                    metrics.append(["tokens_per_problem", float(row.tokens_per_problem), ts, int(row.n)])
                    metrics.append(["mean_think_tokens", float(row.mean_think_tokens), ts, int(row.n)])
            key = child_key(self.sweep_id, model, dataset, int(budget), strategy)
            self._do("log", key=key, metrics=metrics, params={"problems": str(int(g.problems.iloc[0]))})

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        self._do("artifact", key=self.parent_key, path=str(path), artifact_dir=artifact_dir)

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Figures of the whole sweep on the parent run (units re-queued, engines lost, ...)."""
        ts = int(time.time() * 1000)
        self._do("log", key=self.parent_key, metrics=[[k, float(v), ts, 0] for k, v in sorted(metrics.items())])

    def end_running(self, status: str = "KILLED") -> None:
        """For a sweep whose driver died: end its runs that were left RUNNING."""
        self._do("end_running", status=status, end_ms=int(time.time() * 1000))

    def finish(self, ok: bool) -> None:
        now = int(time.time() * 1000)
        status = "FINISHED" if ok else "FAILED"
        for key in self.children:
            self._do("end", key=key, status=status, end_ms=now)
        self._do("end", key=self.parent_key, status=status, end_ms=now)


def log_to_sweep(cfg: Config, sweep_id: str, sweep_dir: Path, artifacts: list[tuple[Path, str | None]],
                 metrics: dict[str, float] | None = None) -> str | None:
    """Attach files (and metrics, e.g. fitted parameters) made after a sweep to its parent run.
    Returns None, or why they were journaled for `ttc sync` instead."""
    tracker = Tracker(cfg, sweep_id, sweep_dir)
    for path, artifact_dir in artifacts:
        tracker.log_artifact(path, artifact_dir)
    if metrics:
        ts = int(time.time() * 1000)
        tracker._do("log", key=tracker.parent_key, metrics=[[k, v, ts, 0] for k, v in sorted(metrics.items())])
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
