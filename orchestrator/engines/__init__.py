"""Engines: classes that turn a unit into sample rows. Only this package imports vllm (and aiohttp, for
models behind a server or an API: openai.py).

`ENGINES` maps `model.engine` to its class. Constructing an engine loads its model; the
classes themselves import nothing heavy, so the map is cheap to import.
"""

from orchestrator.engines.openai import OpenAIEngine
from orchestrator.engines.sim import SimEngine
from orchestrator.engines.vllm import VLLMEngine

ENGINES = {"vllm": VLLMEngine, "sim": SimEngine, "openai": OpenAIEngine}
