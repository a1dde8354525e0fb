"""Runners: one subprocess per loaded model, serving generation, embeddings and tokenization.

Start one with ``await RunnerProcess.start(Load(model_path=...))``; the process runs
``python -m ollama_core.runner`` (see :mod:`ollama_core.runner.__main__`).
"""

from ollama_core.runner.client import (
    RunnerCrashedError,
    RunnerError,
    RunnerEvent,
    RunnerLoadError,
    RunnerProcess,
    RunnerRequestError,
)
from ollama_core.runner.protocol import (
    Done,
    Embed,
    Embeddings,
    Generate,
    Load,
    Logprob,
    Metrics,
    Options,
    Ready,
    Token,
    TokenLogprob,
)

__all__ = [
    "Done",
    "Embed",
    "Embeddings",
    "Generate",
    "Load",
    "Logprob",
    "Metrics",
    "Options",
    "Ready",
    "RunnerCrashedError",
    "RunnerError",
    "RunnerEvent",
    "RunnerLoadError",
    "RunnerProcess",
    "RunnerRequestError",
    "Token",
    "TokenLogprob",
]
