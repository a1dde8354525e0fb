"""Prometheus metrics: tokens in and out per model, queue depth and loaded models.

HTTP request counts and latencies come from Litestar's Prometheus middleware (see the app); this
module adds what only the inference layer knows.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ollama_core.scheduler import Scheduler

PROMPT_TOKENS = Counter("ollama_prompt_tokens", "Prompt tokens evaluated", ["model"])
GENERATED_TOKENS = Counter("ollama_generated_tokens", "Tokens generated", ["model"])
EMBEDDED_TOKENS = Counter("ollama_embedded_tokens", "Tokens embedded", ["model"])


def record_generation(model: str, prompt_tokens: int, generated_tokens: int) -> None:
    """Count one finished generation."""
    PROMPT_TOKENS.labels(model).inc(prompt_tokens)
    GENERATED_TOKENS.labels(model).inc(generated_tokens)


def record_embedding(model: str, tokens: int) -> None:
    """Count one embedding request."""
    EMBEDDED_TOKENS.labels(model).inc(tokens)


class SchedulerCollector(Collector):
    """Gauges read from the scheduler at scrape time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("ollama_queue_depth", "Requests waiting for a model or a slot",
                                value=self.scheduler.pending)
        loaded = GaugeMetricFamily("ollama_loaded_models", "Models loaded in memory", labels=["model"])
        for model in self.scheduler.loaded():
            loaded.add_metric([str(model.request.label)], 1)
        yield loaded


def install(scheduler: Scheduler) -> None:
    """Expose the scheduler's gauges in the process-wide registry (once per process)."""
    try:
        REGISTRY.register(SchedulerCollector(scheduler))
    except ValueError:
        return
