"""ttc's engine against a bare vLLM AsyncLLM script doing the same work: generation tokens/s, start, memory.

    .venv/bin/python bench/engine_efficiency.py                   # both workloads, once (~3 minutes on 2 cores)
    .venv/bin/python bench/engine_efficiency.py --runs 3          # medians of three
    .venv/bin/python bench/engine_efficiency.py --workloads tail --old-engine /tmp/old_vllm.py
    .venv/bin/python bench/engine_efficiency.py --workloads tail --problems 128 --in-flight 8   # every unit at once

Each side runs in its own process (so whole-process figures include `import vllm` and the
engine's start, and peak memory is that side's alone):
- ttc: orchestrator.engines.vllm.VLLMEngine; every unit of the sweep is run through `run_unit`
  from a thread pool holding as many units in flight as the dispatcher gives one replica
  (orchestrator/dispatch.py units_in_flight: KV-cache tokens over the largest unit's tokens, + 1), longest first,
  as the threaded engine actor would: grading, vote classes and Arrow rows included.
- bare: the same requests straight into vLLM's AsyncLLM (with ttc's engine settings, vLLM's offline
  defaults included: usage context LLM_CLASS), all submitted at once, each sample's
  answer requests (the distinct continuations of its cap ladder, budget.cap_ladder) chained the
  moment its thinking returns; no grading, no rows. Same model, prompts, seeds and settings.
Generation time is from the first request to the last result (engine start excluded); tokens
are the generated tokens (thinking + answers, counted by the bare side; the ttc side must
produce the same answer tokens, which is checked and printed).

Workloads:
- default: the default sweep's work (toy reasoner, toy_arith, default grid: compose([])).
- tail: the tests' tiny random Llama (tests/tiny_model.py, its position limit raised to 2048),
  budgets up to 512 thinking tokens, and a heavy-tailed thinking length: each sample's thinking
  requests carry a logit bias on the end-of-thinking token drawn from its seed (a lognormal
  per-sample hazard, median length ~64) and a -100 bias on end of sequence, so lengths are a
  lognormal mixture of geometrics, capped at 512. Both sides apply the same biases (the ttc
  side through a bench-only subclass that adds them to its thinking requests' SamplingParams).
Peak memory: the side's own process (ru_maxrss) and vLLM's engine-core and worker processes
(VmHWM from /proc, read before shutdown).

The last lines are `default_efficiency=<ttc tokens/s over bare>` and `tail_efficiency=<...>`
(medians over runs). Never run in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

TAIL_BUDGETS = "[64,128,256,512]"
TAIL_MEDIAN_TOKENS = 64.0
TAIL_SIGMA = 1.0


# --- the workloads ------------------------------------------------------------------------------

def _tail_model(root: Path) -> Path:
    from tests.tiny_model import build_tiny_model

    path = build_tiny_model(root / "tiny-llama")
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 2048  # rotary: any length works; the tiny model says 512
    (path / "config.json").write_text(json.dumps(config))
    return path


def _tail_dataset(root: Path, problems: int) -> Path:
    path = root / "tail.jsonl"
    rows = [{"id": f"p{i}", "problem": f"{i}*{i + 3}-{i % 7}", "answer": str(i * (i + 3) - i % 7)}
            for i in range(problems)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def workload(name: str, root: Path, problems: int):
    """(config, units) of a workload."""
    from orchestrator.compose import compose
    from orchestrator.datasets import load_problems
    from orchestrator.plan import plan_units

    if name == "default":
        cfg = compose([])
    else:
        overrides = [f"model.path={_tail_model(root)}", "model.name=tiny-tail", "model.max_model_len=1024",
                     "model.answer_max_tokens=8", "model.kv_cache_gib=0.25", "model.temperature=1.0",
                     "model.top_p=1.0", "model.enforce_eager=true", "model.dtype=float32",
                     f"dataset.path={_tail_dataset(root, problems)}", "dataset.name=tail",
                     f"sweep.budgets={TAIL_BUDGETS}", "sweep.n=[1,4,16]", "sweep.problems_per_unit=16",
                     "store.root=" + str(root / "store")]
        cfg = compose(overrides)
    return cfg, plan_units(cfg, load_problems(cfg.dataset))


def tail_bias(seed: int, think_end_id: int, eos_id: int | None) -> dict[int, float]:
    """A sample's thinking-request logit bias: a hazard of closing thinking drawn from its seed (lognormal
    length scale), no end of sequence. Near-uniform logits over the tiny model's ~100 tokens give
    P(close) ~ e^b / (V - 1 + e^b) per step."""
    from orchestrator.engines.sim import _normal

    length = TAIL_MEDIAN_TOKENS * math.exp(TAIL_SIGMA * _normal(seed, "tail-length"))
    hazard = min(0.5, 1.0 / max(length, 1.0))
    bias = {think_end_id: math.log(hazard * 100 / (1 - hazard))}
    if eos_id is not None and eos_id != think_end_id:
        bias[eos_id] = -100.0
    return bias


# --- the sides ----------------------------------------------------------------------------------

def _engine_class(tail: bool, old: str | None):
    if old:
        spec = importlib.util.spec_from_file_location("old_vllm_engine", old)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        base = module.VLLMEngine
    else:
        from orchestrator.engines.vllm import VLLMEngine as base
    if not tail:
        return base

    class TailEngine(base):
        """Adds the tail workload's logit biases to every thinking request (bench only)."""

        def _params(self, m, seed, max_tokens, stop_at_think_end):
            params = super()._params(m, seed, max_tokens, stop_at_think_end)
            if stop_at_think_end:
                params.logit_bias = tail_bias(seed, self.think_end_id, self.eos_id)
            return params

    return TailEngine


def run_ttc(name: str, root: Path, problems: int, old: str | None, in_flight: int | None = None) -> dict:
    cfg, units = workload(name, root, problems)
    engine = _engine_class(name == "tail", old)(cfg.model)
    started = time.perf_counter()
    if in_flight:
        pass  # --in-flight: a fixed number of units at once, not the dispatcher's
    elif hasattr(engine, "capacity"):
        from orchestrator.dispatch import units_in_flight

        in_flight = units_in_flight(engine.capacity(), max(u.max_decode_tokens for u in units))
    else:
        in_flight = 1  # the synchronous engine runs one unit at a time
    units = sorted(units, key=lambda u: -len(u.problems) * u.n_samples)
    with ThreadPoolExecutor(in_flight) as pool:
        batches = list(pool.map(engine.run_unit, units))
    seconds = time.perf_counter() - started
    memory = _engine_memory()
    import pyarrow as pa

    rows = pa.Table.from_batches(batches).to_pandas()
    capacity = engine.capacity() if hasattr(engine, "capacity") else None
    llm = engine.llm
    max_num_seqs = (llm.vllm_config if hasattr(llm, "vllm_config") else llm.llm_engine.vllm_config) \
        .scheduler_config.max_num_seqs
    answer_tokens = int(rows.drop_duplicates(["problem_id", "sample_idx", "answer_text", "answer_tokens",
                                             "think_tokens", "forced"]).answer_tokens.sum())
    engine.close()
    return {"gen_s": seconds, "in_flight": in_flight, "units": len(units), "rows": len(rows),
            "capacity": capacity, "max_num_seqs": max_num_seqs, "answer_tokens_rows": answer_tokens, **memory}


def run_bare(name: str, root: Path, problems: int) -> dict:
    """The same requests straight into AsyncLLM: all at once, answers chained as each thinking returns."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.sampling_params import RequestOutputKind
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    from orchestrator.budget import cap_ladder, split_thinking, think_max_tokens
    from orchestrator.prompts import prompt_ids
    from orchestrator.units import derive_seed

    cfg, units = workload(name, root, problems)
    m = cfg.model

    async def main() -> dict:
        llm = AsyncLLM.from_engine_args(usage_context=UsageContext.LLM_CLASS, engine_args=AsyncEngineArgs(
            model=m.engine_path(), dtype=m.dtype, max_model_len=m.max_model_len, enforce_eager=m.enforce_eager,
            kv_cache_memory_bytes=int(m.kv_cache_gib * 2**30), enable_prefix_caching=True, seed=0,
            # ttc's settings: whole-prompt prefill on the CPU (seeded requests need it there).
            enable_chunked_prefill=not current_platform.is_cpu(),
            max_num_batched_tokens=max(m.max_model_len, 8192) if current_platform.is_cpu() else None))
        tok = llm.get_tokenizer()
        end = tok.encode(m.think_end, add_special_tokens=False)[0]
        suffix = tuple(tok.encode(m.forcing_suffix, add_special_tokens=False))
        ids = iter(range(10**9))
        counts = {"think": 0, "answer": 0, "lengths": []}

        async def request(prompt, params):
            params.output_kind = RequestOutputKind.FINAL_ONLY
            async for out in llm.generate({"prompt_token_ids": prompt}, params, request_id=str(next(ids))):
                final = out
            return final

        def params(seed, max_tokens, stop, bias=None):
            return SamplingParams(temperature=m.temperature, top_p=m.top_p, top_k=m.top_k, seed=seed,
                                  max_tokens=max_tokens, skip_special_tokens=True,
                                  stop_token_ids=[end] if stop else None, logit_bias=bias)

        async def sample(unit, prompt, problem, si):
            seed = derive_seed(unit.seed, problem.id, si)
            bias = tail_bias(seed, end, tok.eos_token_id) if name == "tail" else None
            out = await request(prompt, params(seed, think_max_tokens(unit.budgets[-1]), True, bias))
            counts["think"] += len(out.outputs[0].token_ids)
            thinking = split_thinking(out.outputs[0].token_ids, end, tok.eos_token_id)
            counts["lengths"].append(len(thinking.token_ids))
            tags = {}
            for rung in cap_ladder(thinking, unit.budgets, suffix, end):
                if rung.continuation is not None and rung.continuation not in tags:
                    tags[rung.continuation] = rung.budget if rung.forced else "natural"
            outs = await asyncio.gather(*(request(prompt + list(c), params(derive_seed(seed, "answer", t),
                                                                           m.answer_max_tokens, False))
                                          for c, t in tags.items()))
            counts["answer"] += sum(len(o.outputs[0].token_ids) for o in outs)

        started = time.perf_counter()
        jobs = []
        for unit in units:
            for p in unit.problems:
                prompt = prompt_ids(tok, m, p.problem)
                jobs += [sample(unit, prompt, p, si) for si in range(unit.n_samples)]
        await asyncio.gather(*jobs)
        seconds = time.perf_counter() - started
        memory = _engine_memory()
        llm.shutdown()
        lengths = sorted(counts.pop("lengths"))
        pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
        return {"gen_s": seconds, "tokens": counts["think"] + counts["answer"], "answer_tokens": counts["answer"],
                "samples": len(lengths), "len_median": pick(0.5), "len_p99": pick(0.99), "len_max": lengths[-1],
                **memory}

    return asyncio.run(main())


def _engine_memory() -> dict:
    """Peak RSS (MB) of this process and of vLLM's child processes (engine core, workers), now."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    self_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    children, children_cpu = {}, {}
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
                children[child.name()] = max(children.get(child.name(), 0), hwm / 1024)
                times = child.cpu_times()
                children_cpu[child.name()] = round(times.user + times.system, 1)
            except (OSError, StopIteration, psutil.Error):
                pass
    except ImportError:
        pass
    return {"rss_self_mb": round(self_mb), "rss_children_mb": {k: round(v) for k, v in children.items()},
            "cpu_self_s": round(cpu_s, 1), "cpu_children_s": children_cpu}


# --- the driver ---------------------------------------------------------------------------------

def side(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.side == "bare":
            result = run_bare(args.workload, Path(tmp), args.problems)
        else:
            result = run_ttc(args.workload, Path(tmp), args.problems, args.old_engine if args.side == "old" else None,
                             args.in_flight)
    result["process_s"] = time.perf_counter() - start
    print("RESULT " + json.dumps(result), flush=True)


def spawn(workload_: str, which: str, problems: int, old: str | None, in_flight: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--side", which, "--workload", workload_, "--problems", str(problems)]
    if in_flight:
        cmd += ["--in-flight", str(in_flight)]
    if old:
        cmd += ["--old-engine", old]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT)
    whole = time.perf_counter() - start
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the {which} side of '{workload_}' failed:\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    result["whole_s"] = whole  # interpreter start, imports, engine start, generation, shutdown
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workloads", default="default,tail")
    parser.add_argument("--problems", type=int, default=256, help="tail workload: problems (16 samples each)")
    parser.add_argument("--old-engine", help="a file holding the previous VLLMEngine (git show HEAD~:...), "
                                             "measured on the same workloads as a 'before' figure")
    parser.add_argument("--in-flight", type=int, help="ttc: units in flight (default: the dispatcher's rule)")
    parser.add_argument("--side", choices=["ttc", "bare", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return side(args)

    finals = {}
    for name in args.workloads.split(","):
        ratios, whole_ratios, old_ratios = [], [], []
        for run in range(args.runs):
            bare = spawn(name, "bare", args.problems, None)
            ttc = spawn(name, "ttc", args.problems, None, args.in_flight)
            tps_bare, tps_ttc = bare["tokens"] / bare["gen_s"], bare["tokens"] / ttc["gen_s"]
            ratios.append(tps_ttc / tps_bare)
            whole_ratios.append(bare["whole_s"] / ttc["whole_s"])
            print(f"[{name} run {run + 1}] bare: {bare['tokens']:,} tokens ({bare['answer_tokens']:,} answer) "
                  f"in {bare['gen_s']:.1f} s = {tps_bare:,.0f} tok/s; whole process {bare['whole_s']:.1f} s; "
                  f"peak RSS {bare['rss_self_mb']} MB, children {bare['rss_children_mb']}")
            print(f"[{name} run {run + 1}] ttc:  {ttc['units']} units, {ttc['in_flight']} in flight "
                  f"(KV cache {ttc['capacity']:,} tokens, max_num_seqs {ttc['max_num_seqs']}), "
                  f"{ttc['rows']:,} rows, answer tokens {ttc['answer_tokens_rows']:,} "
                  f"(bare {bare['answer_tokens']:,}); "
                  f"{ttc['gen_s']:.1f} s = {tps_ttc:,.0f} tok/s; whole process {ttc['whole_s']:.1f} s; "
                  f"peak RSS {ttc['rss_self_mb']} MB, children {ttc['rss_children_mb']}")
            if name == "tail":
                print(f"[{name} run {run + 1}] thinking lengths over {bare['samples']:,} samples: median "
                      f"{bare['len_median']}, p99 {bare['len_p99']}, max {bare['len_max']} (cap {TAIL_BUDGETS})")
            if args.old_engine:
                old = spawn(name, "old", args.problems, args.old_engine)
                old_ratios.append(bare["gen_s"] / old["gen_s"])
                print(f"[{name} run {run + 1}] old engine: {old['units']} units one at a time, {old['gen_s']:.1f} s = "
                      f"{bare['tokens'] / old['gen_s']:,.0f} tok/s ({old_ratios[-1]:.2f} of bare); whole process "
                      f"{old['whole_s']:.1f} s; peak RSS {old['rss_self_mb']} MB, children {old['rss_children_mb']}")
        print(f"{name}: generation efficiency per run {[round(r, 3) for r in ratios]}; whole process "
              f"(start included) {statistics.median(whole_ratios):.3f} of bare"
              + (f"; old engine {statistics.median(old_ratios):.3f} of bare" if old_ratios else ""))
        finals[name] = statistics.median(ratios)
    for name, value in finals.items():
        print(f"{name}_efficiency={value:.3f}")


if __name__ == "__main__":
    main()
