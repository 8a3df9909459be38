"""MLflow tracking: one parent run per sweep, one child run per (model, dataset, budget, strategy).

The only module that imports mlflow, and only the driver calls it. It talks through an
`MlflowClient` bound to one absolute URI (no global `mlflow.set_tracking_uri`). The
default store is a sqlite database under `store.root` with artifacts beside it; MLflow's
file store is never used. Child runs carry `maj_accuracy` and `pass_at_k` stepped by N,
one point per N, so the MLflow UI draws each serial budget's parallel curve.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pyarrow as pa

from orchestrator.config import PROJECT_ROOT, Config

METRIC_OF = {"maj@k": "maj_accuracy", "pass@k": "pass_at_k"}


def tracking_uri(cfg: Config) -> str:
    """The configured URI, or the default sqlite database under store.root (always absolute)."""
    return cfg.tracking.uri or f"sqlite:///{cfg.store.path / 'mlflow.db'}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


class Tracker:
    """Logs one sweep to MLflow."""

    def __init__(self, cfg: Config) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(cfg)
        if self.uri.startswith("sqlite:"):
            cfg.store.path.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.artifact_root = (cfg.store.path / "mlartifacts").as_uri() if self.uri.startswith("sqlite:") else None
        self.experiment_id = self._experiment(cfg.sweep.name)
        self.parent_id: str | None = None

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self.artifact_root)

    def start_sweep(self, sweep_id: str, cfg: Config, config_yaml: str) -> str:
        from mlflow.entities import Param

        tags = {"sweep_id": sweep_id, "ttc.kind": "sweep"}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run = self.client.create_run(self.experiment_id, run_name=sweep_id, tags=tags)
        self.parent_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in _flatten(cfg.to_dict()).items()]
        self.client.log_batch(self.parent_id, params=params)
        self.client.log_text(self.parent_id, config_yaml, "config.yaml")
        return self.parent_id

    def log_cells(self, cells: pa.Table) -> list[str]:
        """One finished child run per (model, dataset, budget, strategy), metrics stepped by N."""
        from mlflow.entities import Metric, Param

        assert self.parent_id is not None, "start_sweep first"
        df = cells.to_pandas()
        child_ids = []
        for (model, dataset, budget, strategy), g in df.groupby(["model", "dataset", "budget", "strategy"], sort=True):
            tags = {"mlflow.parentRunId": self.parent_id, "model": model, "dataset": dataset,
                    "budget": str(budget), "strategy": strategy, "ttc.kind": "cell"}
            run = self.client.create_run(self.experiment_id, run_name=f"{model}/{dataset}/B={budget}/{strategy}",
                                         tags=tags)
            metrics, now = [], int(time.time() * 1000)
            for row in g.itertuples():
                step = int(row.n)
                metrics.append(Metric(METRIC_OF[row.aggregator], float(row.accuracy), now, step))
                if row.aggregator == "maj@k":  # compute is the same for both aggregators: log it once
                    metrics.append(Metric("tokens_per_problem", float(row.tokens_per_problem), now, step))
                    metrics.append(Metric("mean_think_tokens", float(row.mean_think_tokens), now, step))
            params = [Param("model", model), Param("dataset", dataset), Param("budget", str(budget)),
                      Param("strategy", strategy), Param("problems", str(int(g.problems.iloc[0])))]
            self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
            self.client.set_terminated(run.info.run_id, "FINISHED")
            child_ids.append(run.info.run_id)
        return child_ids

    def set_tags(self, tags: dict[str, str]) -> None:
        assert self.parent_id is not None
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, key, value)

    def log_artifact(self, path: Path, artifact_dir: str | None = None) -> None:
        assert self.parent_id is not None
        self.client.log_artifact(self.parent_id, str(path), artifact_dir)

    def finish(self, ok: bool) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, "FINISHED" if ok else "FAILED")
