"""The result store: Parquet samples shared by all sweeps, and one directory per sweep.

Layout (DESIGN.md, "Data contracts"), under `store.root`:
    samples/model=<m>/dataset=<d>/<unit_key>.parquet   one file per unit, keyed by content
    sweeps/<sweep_id>/driver.json                      the process running it (pid, host, start, end)
    sweeps/<sweep_id>/plan.json                        the unit keys it planned
    sweeps/<sweep_id>/config.yaml                      the resolved config
    sweeps/<sweep_id>/manifest.jsonl                   one line per finished unit
    sweeps/<sweep_id>/cells.parquet                    the aggregated grid
    sweeps/<sweep_id>/plots/
    damaged/<stamp>/model=<m>/dataset=<d>/<unit_key>.parquet   units found damaged, kept for a look
    throughput.json                                    each model's last measured tokens per engine-second
Every file is written to a temporary name and renamed, so a unit is in the store whole or
not at all. Files can still be damaged from outside (a full disk, a copy cut short, a hand
edit), so a stored unit is verified before it is reused (`unit_problem`). A sweep's status
(`sweep_status`) comes from its driver record: a sweep whose driver is gone before it ended
is dead, not running. The store knows nothing of Ray or MLflow.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator.schema import CELL_SCHEMA, LATER_COLUMNS, SAMPLE_SCHEMA


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


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), so a reused pid is not mistaken
    for it; None where /proc does not say (no such process, or not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": the command may hold spaces
    if not fields or fields[0] in ("Z", "X"):  # a zombie has exited already
        return None
    return fields[19]


def driver_alive(driver: dict) -> bool | None:
    """Is the process a driver record names still running? None when it cannot be told from here
    (another host, or no way to look)."""
    if driver.get("host") != socket.gethostname():
        return None
    if driver.get("boot_id") and _boot_id() and driver["boot_id"] != _boot_id():
        return False  # the machine restarted since
    pid = int(driver["pid"])
    if Path("/proc").is_dir() and driver.get("process_start"):
        return _process_start(pid) == driver["process_start"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class SweepStatus:
    """What a sweep directory says about its sweep."""

    sweep_id: str
    state: str
    """finished: its driver ended it and wrote the cells; stopped: its driver ended it without cells (an
    error stopped it); running: its driver is alive; dead: its driver is gone and never ended it;
    unknown: its driver runs on another host, which cannot be checked from here."""
    detail: str
    planned: list[str] | None
    """The unit keys it planned (None for sweeps made before plans were recorded)."""
    units_done: int
    closed: bool
    """A dead sweep whose MLflow runs have been ended (or journaled to be)."""
    completed_by: str | None
    """A later sweep that planned the same units and finished."""


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
        """A file exists for the unit (see `unit_problem` for whether it can be trusted)."""
        return self.unit_path(model, dataset, key).is_file()

    def unit_problem(self, model: str, dataset: str, key: str, problem_ids: Sequence[str], n_samples: int,
                     budgets: Sequence[int]) -> str | None:
        """None if the stored unit holds exactly its planned rows, one per (problem, sample index, budget);
        otherwise why it cannot be used. Cheap: the Parquet footer first, then only the key columns."""
        path = self.unit_path(model, dataset, key)
        try:
            meta = pq.ParquetFile(path)
            missing = [n for n in SAMPLE_SCHEMA.names if n not in meta.schema_arrow.names and n not in LATER_COLUMNS]
            if missing:
                return f"lacks the columns {', '.join(missing)}"
            rows, planned = meta.metadata.num_rows, len(problem_ids) * n_samples * len(budgets)
            if rows != planned:
                return f"holds {rows} rows, planned {planned}"
            table = meta.read(columns=["unit_key", "problem_id", "sample_idx", "budget"])
        except Exception as err:  # noqa: BLE001 - whatever pyarrow raises, the file is not a readable unit
            return f"is not a readable Parquet file ({_first_line(err)})"
        keys = set(table.column("unit_key").to_pylist())
        if keys != {key}:
            return f"holds rows of other units ({', '.join(sorted(str(k) for k in keys - {key})[:3])})"
        got = set(zip(*(table.column(c).to_pylist() for c in ("problem_id", "sample_idx", "budget"))))
        want = {(p, s, b) for p in problem_ids for s in range(n_samples) for b in budgets}
        if got != want:  # the row count is right, so some planned key is missing
            lacking = min(want - got, key=str)
            return (f"holds {len(got & want)} of its {len(want)} planned (problem, sample, budget) keys, "
                    f"e.g. not {lacking}")
        return None

    def set_aside(self, model: str, dataset: str, key: str) -> Path:
        """Move a damaged unit out of the samples (so it is generated again) into damaged/, kept for a look."""
        src = self.unit_path(model, dataset, key)
        dst = self.root / "damaged" / new_sweep_id() / src.relative_to(self.root / "samples")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return dst

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

    def create_sweep(self, sweep_id: str, config_yaml: str, unit_keys: Sequence[str] | None = None) -> Path:
        """The sweep's directory, its driver record (this process) first, its planned unit keys, its config."""
        d = self.sweep_dir(sweep_id)
        d.mkdir(parents=True, exist_ok=False)
        driver = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
                  "process_start": _process_start(os.getpid()), "started_ms": int(time.time() * 1000),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._write_json(d / "driver.json", driver)
        if unit_keys is not None:
            self._write_json(d / "plan.json", {"units": list(unit_keys)})
        atomic_write(d / "config.yaml", lambda tmp: tmp.write_text(config_yaml, encoding="utf-8"))
        return d

    @staticmethod
    def _write_json(path: Path, data: dict) -> None:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8"))

    @staticmethod
    def _read_json(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def throughput(self, measured: dict[str, float], sweep_id: str) -> dict[str, float]:
        """Each model's generated tokens per engine-second for the bill: `measured` by this sweep where it
        ran enough units to measure (then kept), else the last measurement kept in the store. A re-run that
        finds every unit stored so gives the cells the first run gave."""
        path = self.root / "throughput.json"
        kept = self._read_json(path) or {}
        if measured:
            kept |= {m: {"tokens_per_engine_s": v, "sweep_id": sweep_id} for m, v in measured.items()}
            self._write_json(path, kept)
        return {m: float(v["tokens_per_engine_s"]) for m, v in kept.items()
                if isinstance(v, dict) and isinstance(v.get("tokens_per_engine_s"), (int, float))}

    def _update_driver(self, sweep_id: str, **fields) -> None:
        path = self.sweep_dir(sweep_id) / "driver.json"
        self._write_json(path, (self._read_json(path) or {}) | fields)

    def end_sweep(self, sweep_id: str, ok: bool) -> None:
        """The driver is done with the sweep (ok: nothing failed), whether or not it wrote the cells."""
        self._update_driver(sweep_id, ended_ms=int(time.time() * 1000), ok=ok)

    def mark_closed(self, sweep_id: str, status: str) -> None:
        """A dead sweep's MLflow runs were ended with `status` (or that was journaled): done once."""
        self._update_driver(sweep_id, closed=status, closed_ms=int(time.time() * 1000))

    def mark_completed(self, sweep_id: str, by: str) -> None:
        """An unfinished sweep's planned units are all in sweep `by`, which finished."""
        self._update_driver(sweep_id, completed_by=by)

    def sweep_status(self, sweep_id: str) -> SweepStatus:
        d = self.sweep_dir(sweep_id)
        driver = self._read_json(d / "driver.json") or {}
        plan = self._read_json(d / "plan.json")
        planned = plan.get("units") if plan else None
        done = len(self.manifest(sweep_id))
        units = f"{done} of {len(planned)} units" if planned is not None else f"{done} units"
        has_cells = self.cells_path(sweep_id).is_file()

        def status(state: str, detail: str) -> SweepStatus:
            if driver.get("closed") in ("KILLED", "FAILED"):
                detail += f"; MLflow runs marked {driver['closed']}"
            if driver.get("completed_by"):
                detail += f"; completed by sweep {driver['completed_by']}"
            return SweepStatus(sweep_id, state, detail, planned, done, bool(driver.get("closed")),
                               driver.get("completed_by"))

        if "pid" not in driver:  # made before drivers were recorded, or being created this instant
            if not (d / "config.yaml").is_file():
                return status("running", "starting")
            return status("finished", units) if has_cells else status("dead", f"{units}; no driver record")
        who = f"driver pid {driver['pid']} on {driver.get('host')}, started {driver.get('started')}"
        if "ended_ms" in driver:
            if has_cells:
                return status("finished", units + ("" if driver.get("ok") else "; some units failed"))
            return status("stopped", f"{units}; an error stopped it before its cells")
        alive = driver_alive(driver)
        if alive:
            return status("running", f"{units}; {who}")
        if alive is None:
            return status("unknown", f"{units}; {who} (another host: cannot be checked from here)")
        return status("dead", f"{units}; {who}, gone before it finished")

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
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []
