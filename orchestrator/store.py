"""The result store: Parquet samples shared by all sweeps, and one directory per sweep.

Layout (DESIGN.md, "Data contracts"), under `store.root`:
    samples/model=<m>/dataset=<d>/<unit_key>.parquet   one file per unit, keyed by content
    sweeps/<sweep_id>/config.yaml                      the resolved config
    sweeps/<sweep_id>/manifest.jsonl                   one line per finished unit
    sweeps/<sweep_id>/cells.parquet                    the aggregated grid
    sweeps/<sweep_id>/plots/
Every file is written to a temporary name and renamed, so a unit is in the store whole or
not at all. The store knows nothing of Ray or MLflow.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.schema import CELL_SCHEMA, SAMPLE_SCHEMA


def atomic_write(path: Path, write) -> None:
    """Create `path` whole or not at all: `write(tmp)` writes a temporary file beside it, which is then
    renamed to `path` (creating its directory if needed); the temporary file never outlives the call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def new_sweep_id() -> str:
    """Sortable by start time, unique without coordination: 20261129-204512-3fa2c1."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- samples, shared by all sweeps ---
    def unit_path(self, model: str, dataset: str, key: str) -> Path:
        return self.root / "samples" / f"model={model}" / f"dataset={dataset}" / f"{key}.parquet"

    def has_unit(self, model: str, dataset: str, key: str) -> bool:
        return self.unit_path(model, dataset, key).is_file()

    def write_unit(self, model: str, dataset: str, key: str, batch: pa.RecordBatch | pa.Table) -> Path:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        table = table.cast(SAMPLE_SCHEMA)
        path = self.unit_path(model, dataset, key)
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def read_units(self, paths: Iterable[Path]) -> pa.Table:
        tables = [pq.read_table(p, schema=SAMPLE_SCHEMA) for p in paths]
        return pa.concat_tables(tables) if tables else SAMPLE_SCHEMA.empty_table()

    # --- sweeps ---
    def sweep_dir(self, sweep_id: str) -> Path:
        return self.root / "sweeps" / sweep_id

    def create_sweep(self, sweep_id: str, config_yaml: str) -> Path:
        d = self.sweep_dir(sweep_id)
        d.mkdir(parents=True, exist_ok=False)
        atomic_write(d / "config.yaml", lambda tmp: tmp.write_text(config_yaml, encoding="utf-8"))
        return d

    def record_unit(self, sweep_id: str, entry: dict) -> None:
        """Append one finished unit to the sweep's manifest (a single short line per write)."""
        with (self.sweep_dir(sweep_id) / "manifest.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def manifest(self, sweep_id: str) -> list[dict]:
        path = self.sweep_dir(sweep_id) / "manifest.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def sweep_samples(self, sweep_id: str) -> pa.Table:
        """Every sample row of a sweep's finished units."""
        return self.read_units(self.root / e["path"] for e in self.manifest(sweep_id))

    def cells_path(self, sweep_id: str) -> Path:
        return self.sweep_dir(sweep_id) / "cells.parquet"

    def write_cells(self, sweep_id: str, cells: pa.Table) -> Path:
        path = self.cells_path(sweep_id)
        atomic_write(path, lambda tmp: pq.write_table(cells.cast(CELL_SCHEMA), tmp))
        return path

    def read_cells(self, sweep_id: str) -> pa.Table:
        return pq.read_table(self.cells_path(sweep_id), schema=CELL_SCHEMA)

    def plots_dir(self, sweep_id: str) -> Path:
        d = self.sweep_dir(sweep_id) / "plots"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def sweep_ids(self) -> list[str]:
        d = self.root / "sweeps"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []
