"""Every error that ends a command, in one place: the modules raise them, the CLI maps them to exit statuses
(`orchestrator.cli.FAILURES`, one table).

Two families. `BadInput` (exit status 2): what was asked cannot run as given (a key, a value, a file, a
model that no node can hold); it is found before anything is written. `Stopped` (exit status 1): a run
that was fine to start stopped part-way (an engine, the grader, MLflow, a fit); what finished is kept.

Each error is one line: `what` (the key, file or line at fault), the message, and `allowed` (what
would be accepted), like vLLM's `VLLMValidationError` carrying its parameter and value. Callers that
have a whole sentence already pass it alone: `ConfigError("sweep.n=[0] is invalid: ...")`.
Each also keeps the builtin base it had (ValueError for bad values, RuntimeError for stopped runs), so
`except ValueError` around a parser or `except RuntimeError` around a fit catches what it caught before.
One exception: PlacementError (a model no node can hold), a SchedulerError (RuntimeError) before, is a
ConfigError (ValueError) now; nothing caught it as a RuntimeError.
"""

from __future__ import annotations


class TtcError(Exception):
    """An error that ends a ttc command with one line: `what: message; allowed: allowed`."""

    def __init__(self, message: str = "", *, what: str | None = None, allowed: str | None = None) -> None:
        self.message = message
        self.what = what
        """The key, file or line at fault (None: the message names it)."""
        self.allowed = allowed
        """What would be accepted instead (None: the message says it, or nothing would)."""
        line = f"{what}: {message}" if what else message
        super().__init__(f"{line}; allowed: {allowed}" if allowed else line)


class BadInput(TtcError):
    """What was asked cannot run as given; found before anything was written. Exit status 2."""


class Stopped(TtcError):
    """A run stopped part-way; what finished is kept. Exit status 1."""


# --- bad input (exit 2) ---------------------------------------------------------------------------


class ConfigError(BadInput, ValueError):
    """An invalid configuration: the message names the key and what is allowed."""


class DatasetError(BadInput, ValueError):
    """A dataset that cannot be used: the message names the file (and line) and what is wrong."""


class PlacementError(ConfigError):
    """No node of the cluster can hold a model's replica (its tensor_parallel_size, its KV cache): the config
    asks for more than the cluster has, which is known before any engine starts, so it is bad input."""


class ProbeError(BadInput, RuntimeError):
    """The endpoint cannot serve this model (unreachable, refused the key, does not serve it): one line.
    Bad input: it is probed before a sweep starts and names model.base_url, model.api_key_env or
    model.served_name; an engine that meets it while starting reports it as an EngineError."""


# --- stopped runs (exit 1) ------------------------------------------------------------------------


class SweepError(Stopped, RuntimeError):
    """The sweep stopped (an engine could not start, the cluster went away); finished units are kept."""


class SchedulerError(SweepError):
    """The scheduler cannot go on (an engine failed to start, the cluster went away): the sweep stops.
    A SweepError, so a sweep reports it as such without translating it."""


class EngineError(Stopped, RuntimeError):
    """The engine cannot serve this model or prompt; the message says why. Stopped: it is met while serving,
    after the checks passed; the scheduler retries or stops the sweep with a SchedulerError."""


class GraderError(Stopped, RuntimeError):
    """The math-verify child could not start; the message says why. Stopped: the machine, not the input, failed."""


class TrackingError(Stopped, RuntimeError):
    """MLflow could not be reached (or refused) while replaying the journal; the message is one line.
    Stopped: the results are complete in the store; `ttc sync` can be run again when MLflow is back."""


class FitError(Stopped, RuntimeError):
    """A scaling curve could not be fitted (no start converged, no bootstrap resample fitted) in the form
    `form` (its `what`). Stopped: the data, not the command, is the cause; the analysis reports it per curve."""

    def __init__(self, message: str = "", *, form: str | None = None, allowed: str | None = None) -> None:
        super().__init__(message, what=form, allowed=allowed)

    @property
    def form(self) -> str | None:
        """The curve form that failed (a key of analysis.fit.FORMS)."""
        return self.what

