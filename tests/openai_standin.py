"""A local stand-in for a closed reasoning API (OpenAI's chat completions), for tests only: never a default.

The o-series API cannot be reached from here, so the engine's chat path is tested against this small
HTTP server, which implements the real request and response schema: GET /v1/models; POST
/v1/chat/completions with `reasoning_effort` (low/medium/high), `max_completion_tokens`, `seed`; a
response with `choices[0].message.content`, `finish_reason` ("length" with empty content when the
reasoning used up max_completion_tokens, as the API does) and `usage` with
`completion_tokens_details.reasoning_tokens` and `prompt_tokens_details.cached_tokens`; OpenAI's
error schema for a bad key (401), an unknown model (404) and the parameters reasoning models refuse
(`max_tokens`, a `temperature` other than 1: 400). A script of failures (e.g. a 429 with Retry-After,
then a 500) is served before the next answers, or every request can fail.

Its answers are a toy: deterministic in (seed, effort or cap, problem), right more often and longer
with more effort, so that rows, seeds and retries can be checked exactly.
"""

from __future__ import annotations

import json
import math
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EFFORT = {"low": (0.3, 300), "medium": (0.6, 1200), "high": (0.9, 4000)}
"""reasoning_effort -> (chance of the right answer, mean reasoning tokens)."""


class StandIn:
    """The server, on 127.0.0.1 at a free port, in a thread: `with StandIn(...) as api: api.base_url`."""

    def __init__(self, answers: dict[str, str], key: str | None = "sk-standin-secret", models=("o3-mini",),
                 snapshot_suffix: str = "-2025-01-31") -> None:
        self.answers = answers
        """Problem text -> its reference answer (the stand-in finds the problem in the prompt)."""
        self.key, self.models, self.snapshot_suffix = key, tuple(models), snapshot_suffix
        self.script: list[tuple[int, dict[str, str]]] = []
        """(status, headers) served, in order, to the next chat requests before answering normally."""
        self.fail_always: int | None = None
        """A status every chat request gets (a service that is down)."""
        self.requests: list[dict] = []
        """Every chat request's body, in arrival order, with the status it got."""
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.script, self.fail_always, self.requests = [], None, []

    # --- the API -----------------------------------------------------------------------------------------

    def answer(self, body: dict) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) for one chat-completions request."""
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                          "invalid_request_error", "model_not_found")
        if "max_tokens" in body:
            return _error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                               "'max_completion_tokens' instead.", "invalid_request_error", "unsupported_parameter")
        if body.get("temperature", 1) != 1:
            return _error(400, "Unsupported value: 'temperature' does not support this value with this model. "
                               "Only the default (1) value is supported.", "invalid_request_error", "unsupported_value")
        effort = body.get("reasoning_effort", "medium")
        if effort not in EFFORT:
            return _error(400, f"Invalid value: '{effort}'. Supported values are: 'low', 'medium', and 'high'.",
                          "invalid_request_error", "invalid_value")
        messages = body.get("messages")
        if not messages or not isinstance(messages, list):
            return _error(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                          "missing_required_parameter")
        with self.lock:
            if self.fail_always is not None:
                return (self.fail_always, {},
                        _error(self.fail_always, "The server had an error.", "server_error", None)[2])
            if self.script:
                status, headers = self.script.pop(0)
                return status, headers, _error(status, "Rate limit reached." if status == 429 else
                                               "The server had an error while processing your request.",
                                               "requests" if status == 429 else "server_error", None)[2]
        prompt = "".join(str(m.get("content", "")) for m in messages)
        problem = max((p for p in self.answers if p in prompt), key=len, default=None)
        reference = self.answers.get(problem, "0")
        cap = body.get("max_completion_tokens")
        chance, mean = EFFORT[effort]
        rng = random.Random(f"{body.get('seed')}:{effort}:{cap}:{problem}")
        if "reasoning_effort" not in body and cap:  # a token limit: more room, more often right
            chance = min(0.95, 0.15 + 0.12 * math.log2(max(cap, 2)))
            mean = cap * 0.75  # sometimes more than the cap: then no answer
        reasoning = max(1, int(mean * (0.5 + rng.random())))
        right = rng.random() < chance
        content = f"The answer is \\boxed{{{reference if right else _wrong(reference)}}}."
        answer_tokens = 8
        finish = "stop"
        if cap is not None and reasoning + answer_tokens > cap:  # the reasoning ran out of room: no visible answer
            reasoning, answer_tokens, content, finish = cap, 0, "", "length"
        prompt_tokens = math.ceil(len(prompt) / 4)
        return 200, {}, {
            "id": f"chatcmpl-{rng.getrandbits(32):08x}", "object": "chat.completion", "created": 0,
            "model": body["model"] + self.snapshot_suffix,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": reasoning + answer_tokens,
                      "total_tokens": prompt_tokens + reasoning + answer_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "system_fingerprint": "fp_standin"}


def _wrong(reference: str) -> str:
    return str(int(reference) + 1) if reference.lstrip("-").isdigit() else reference + "1"


def _error(status: int, message: str, kind: str, code: str | None) -> tuple[int, dict, dict]:
    return status, {}, {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler(api: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if api.key is None or self.headers.get("Authorization") == f"Bearer {api.key}":
                return True
            self._send(401, _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")[2])
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                             "owned_by": "standin"} for m in api.models]})
            else:
                self._send(404, _error(404, "Not found", "invalid_request_error", None)[2])

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self._authorized():
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error(404, "Not found", "invalid_request_error", None)[2])
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, _error(400, "We could not parse the JSON body of your request.",
                                       "invalid_request_error", None)[2])
                return
            status, headers, payload = api.answer(body)
            with api.lock:
                api.requests.append({**body, "_status": status})
            self._send(status, payload, headers)

    return Handler
