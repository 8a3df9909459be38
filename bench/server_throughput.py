"""Tokens/s through vLLM's OpenAI server (model.engine=openai) against the in-process engine, on the default grid.

    .venv/bin/python bench/server_throughput.py            # the default sweep's work, once each (~3 min on 2 cores)
    .venv/bin/python bench/server_throughput.py --limit 64 # fewer problems

Each side runs in its own process, one after the other (never both on the CPU at once):
- in-process: orchestrator.engines.vllm.VLLMEngine on the toy reasoner (compose([]): 256 problems,
  budgets 0/15/30/50, N up to 16), every unit through `run_unit` from a thread pool holding as many
  units in flight as the dispatcher gives a replica (KV-cache tokens / the largest unit's tokens + 1, at
  most 32), as the threaded engine actor does;
- server: `python -m vllm.entrypoints.openai.api_server` started with the in-process engine's settings
  (orchestrator/engines/openai.py vllm_serve_command), then OpenAIEngine (`model=openai-server`) on the
  same units the same way (its capacity: model.max_concurrency x model.max_model_len).
Generation time runs from the first unit sent to the last unit's rows (engine or server start excluded;
the server's start is printed apart). Tokens are the tokens generated (thinking passes + answers),
counted per request on each side. The rows of both sides are compared (but for latency_s,
cached_tokens and the engine's names), and the CPU seconds each process spent generating are printed
(the client, vLLM's engine core, the server's API process). Last lines: `inprocess_tokens_per_s=`,
`server_tokens_per_s=`, `server_ratio=` and `rows_equal=`. Never run in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

NOT_COMPARED = ["unit_key", "model", "engine", "engine_version", "latency_s", "cached_tokens"]
IN_FLIGHT_CAP = 32  # orchestrator/dispatch.py IN_FLIGHT_CAP


def counting(cls):
    """The engine class, counting requests and the tokens each generates (on its loop thread: no lock needed)."""

    class Counting(cls):
        generated = 0
        requests = 0

        async def _request(self, prompt, params):
            out = await super()._request(prompt, params)
            self.generated += len(out.outputs[0].token_ids)
            self.requests += 1
            return out

    return Counting


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process so far (/proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            out[pid] = 0.0
    return out


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (vLLM's engine core, the graders...)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_units(engine, units) -> tuple[float, list, int]:
    in_flight = max(1, min(IN_FLIGHT_CAP, math.ceil(engine.capacity() / max(u.max_decode_tokens for u in units)) + 1))
    units = sorted(units, key=lambda u: -u.max_decode_tokens)
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        batches = list(pool.map(engine.run_unit, units))
    return time.perf_counter() - started, batches, in_flight


def side(which: str, limit: int | None, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestrator.compose import compose
    from orchestrator.datasets import load_problems
    from orchestrator.engines.openai import OpenAIEngine, vllm_serve_command
    from orchestrator.engines.vllm import VLLMEngine
    from orchestrator.plan import plan_units

    grid = [f"dataset.limit={limit}"] if limit else []
    server = None
    result: dict = {}
    if which == "inprocess":
        cfg = compose(grid)
        engine = counting(VLLMEngine)(cfg.model)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = compose(["model=openai-server", f"model.base_url=http://127.0.0.1:{port}/v1", *grid])
        log = open(out.with_suffix(".server.log"), "wb")
        started = time.perf_counter()
        server = subprocess.Popen(vllm_serve_command(cfg.model, port, python=sys.executable), cwd=PROJECT,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env=dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1"))
        import urllib.request

        while True:
            if server.poll() is not None:
                sys.exit(f"the server exited; see {log.name}")
            try:
                with urllib.request.urlopen(cfg.model.base_url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        result["server_start_s"] = time.perf_counter() - started
        engine = counting(OpenAIEngine)(cfg.model)
    try:
        units = plan_units(cfg, load_problems(cfg.dataset))
        # CPU seconds spent while generating: this process (the client, or AsyncLLM's front end), its children
        # (vLLM's engine core in-process; the graders), and the server's processes (its API process, its core).
        server_tree = [server.pid, *descendants(server.pid)] if server is not None else []
        watched = {"this process": [os.getpid()],
                   "its children": [p for p in descendants(os.getpid()) if p not in server_tree]}
        if server is not None:
            watched["server API process"] = [server.pid]
            watched["server children (engine core)"] = descendants(server.pid)
        before = {k: cpu_seconds(v) for k, v in watched.items()}
        seconds, batches, in_flight = run_units(engine, units)
        after = {k: cpu_seconds(v) for k, v in watched.items()}
        result["cpu_s"] = {k: round(sum(after[k].values()) - sum(before[k].values()), 1) for k in watched}
        result["requests"] = engine.requests
        table = pa.Table.from_batches(batches)
        pq.write_table(table.drop_columns(NOT_COMPARED).sort_by([("problem_id", "ascending"),
                                                                ("sample_idx", "ascending"),
                                                                ("budget", "ascending")]), out)
        result |= {"gen_s": seconds, "tokens": engine.generated, "rows": table.num_rows, "units": len(units),
                   "in_flight": in_flight, "capacity": engine.capacity()}
    finally:
        engine.close()
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(which: str, limit: int | None, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--side", which, "--out", str(out)] + (["--limit", str(limit)] if limit else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the {which} side failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="problems of toy_arith (default: all 256)")
    parser.add_argument("--side", choices=["inprocess", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side(args.side, args.limit, Path(args.out))
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        inproc = spawn("inprocess", args.limit, Path(tmp) / "inprocess.parquet")
        served = spawn("server", args.limit, Path(tmp) / "server.parquet")
        a, b = pq.read_table(Path(tmp) / "inprocess.parquet"), pq.read_table(Path(tmp) / "server.parquet")
        equal = a.equals(b)
        differing = 0 if equal else sum(x != y for x, y in zip(a.to_pylist(), b.to_pylist()))
    tps_in, tps_srv = inproc["tokens"] / inproc["gen_s"], served["tokens"] / served["gen_s"]
    for name, r, tps in (("in-process", inproc, tps_in), ("server", served, tps_srv)):
        print(f"{name}: {r['units']} units ({r['in_flight']} in flight, capacity {r['capacity']:,} tokens), "
              f"{r['rows']:,} rows, {r['tokens']:,} generated tokens in {r['gen_s']:.1f} s = {tps:,.0f} tokens/s"
              + (f"; server start {r['server_start_s']:.1f} s" if "server_start_s" in r else ""))
        print(f"  {r['requests']:,} requests ({r['tokens'] / r['requests']:.1f} tokens each); CPU seconds while "
              f"generating: " + ", ".join(f"{k} {v}" for k, v in r["cpu_s"].items())
              + f" ({sum(r['cpu_s'].values()) * 1000 / r['requests']:.1f} ms of CPU per request in all)")
    print(f"rows: {'identical' if equal else f'{differing} of {a.num_rows} differ'} "
          f"(compared without {', '.join(NOT_COMPARED)})")
    print(f"inprocess_tokens_per_s={tps_in:.0f}")
    print(f"server_tokens_per_s={tps_srv:.0f}")
    print(f"server_ratio={tps_srv / tps_in:.3f}")
    print(f"rows_equal={equal}")


if __name__ == "__main__":
    main()
