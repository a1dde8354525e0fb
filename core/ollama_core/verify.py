"""Checking a conversion: probe inputs through llama.cpp and through the architecture's reference pass.

A converter bug (a swapped tensor half, a wrong rope base, the wrong pooling) shows up as a
cosine similarity well below 1. Embedding models are compared on their pooled output; for other
architectures the check reports that it cannot run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ollama_core.errors import RequestError
from ollama_core.gguf import read_gguf
from ollama_core.plugins import Registries
from ollama_core.progress import Progress, ProgressSink

PROBES: tuple[str, ...] = (
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Grüße aus Köln, 東京 and naïve café.",
    " ".join(f"sentence {i} about rivers, mountains and the sea." for i in range(24)),
)
MIN_COSINE = 0.999


@dataclass(frozen=True)
class ProbeResult:
    """One probe's similarity between llama.cpp and the reference."""

    text: str
    tokens: int
    cosine: float


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    dot = sum(float(x) * float(y) for x, y in zip(a, b))
    norm = math.sqrt(sum(float(x) ** 2 for x in a) * sum(float(y) ** 2 for y in b))
    return dot / norm if norm else 0.0


def verify_conversion(
    registries: Registries, hf_architectures: Sequence[str], checkpoint: Path, gguf: Path, progress: ProgressSink
) -> list[ProbeResult]:
    """Compare the converted ``gguf`` with the reference pass over ``checkpoint``; raise if they differ."""
    progress(Progress("verifying conversion"))
    spec = next(
        (e.value for e in registries.reference_models.values() if set(e.value.hf_architectures) & set(hf_architectures)),
        None,
    )
    if spec is None:
        progress(Progress("verification skipped: no installed plugin offers a reference pass for this architecture"))
        return []
    header = read_gguf(gguf)
    if f"{header.architecture}.pooling_type" not in header.metadata:
        progress(Progress("verification skipped: only embedding models can be compared so far"))
        return []
    results = anyio.run(_run_probes, gguf, spec.factory(checkpoint))
    for i, result in enumerate(results, 1):
        progress(Progress(f"probe {i} ({result.tokens} tokens): cosine {result.cosine:.6f}"))
    worst = min(results, key=lambda r: r.cosine)
    if worst.cosine < MIN_COSINE:
        raise RequestError(
            400,
            f"verification failed: llama.cpp and the reference differ (cosine {worst.cosine:.6f} on {worst.text!r})",
        )
    return results


async def _run_probes(gguf: Path, reference: Any) -> list[ProbeResult]:
    from ollama_core.runner import RunnerProcess
    from ollama_core.runner.protocol import Embed, Load

    runner = await RunnerProcess.start(Load(model_path=str(gguf), num_ctx=2048, num_batch=2048, embedding=True))
    try:
        results = []
        for text in PROBES:
            tokens = await runner.tokenize(text)
            embedded = await runner.embed(Embed(inputs=[tokens]))
            expected = reference.run(tokens).final
            results.append(ProbeResult(text, len(tokens), cosine(embedded.embeddings[0], list(expected))))
        return results
    finally:
        await runner.close()
