"""Engines: classes that turn a unit into sample rows. Only this package imports vllm (and aiohttp, for
models behind a server or an API: openai.py).

`ENGINES` maps `model.engine` to its class and `VERSIONS` to how its version is read without starting it
(the planner puts the version in every unit's key, so a new engine version makes new units; the engine
writes the same version into every row). Constructing an engine loads its model; the classes themselves
import nothing heavy, so the maps are cheap to import.
"""

from collections.abc import Callable

from orchestrator.config import ModelConfig
from orchestrator.engines.openai import OpenAIEngine, server_version
from orchestrator.engines.sim import SIM_VERSION, SimEngine
from orchestrator.engines.vllm import VLLMEngine, vllm_version

ENGINES = {"vllm": VLLMEngine, "sim": SimEngine, "openai": OpenAIEngine}

VERSIONS: dict[str, Callable[[ModelConfig], str | None]] = {
    "vllm": lambda model: vllm_version(),  # the installed package's metadata
    "sim": lambda model: SIM_VERSION,  # the draws' and timing model's version
    "openai": server_version,  # an open server's GET /version ("server-0.32.0"); a chat API's "openai-chat"
}


def engine_version(model: ModelConfig) -> str | None:
    """The version of the engine that serves `model` (`VERSIONS`), read without loading the model: the installed
    vLLM's, the simulator's, or for engine=openai an open server's (None if it does not say; a chat API's
    dated snapshot is in every row instead). Never the API key or anything from it."""
    return VERSIONS[model.engine](model)
