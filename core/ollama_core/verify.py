"""Checking a conversion: probe inputs through llama.cpp and through the architecture's reference pass.

A converter bug (a swapped tensor half, a wrong rope base, the wrong pooling) shows up as a
cosine similarity well below 1. Embedding models are compared on their pooled output, other
models on the last position's logits. When a probe differs, the intermediate states the
reference names by llama.cpp's tensor names (``l_out-3``...) are compared too, layer by layer,
so the report points at the first layer that goes wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

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
    """One probe's similarity between llama.cpp and the reference, and per checkpoint when it differs."""

    text: str
    tokens: int
    cosine: float
    layers: tuple[tuple[str, float], ...] = ()


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0 when either is zero)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm else 0.0


def row_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    """The lowest cosine over the rows both have (llama.cpp may keep only the last rows of a late layer)."""
    rows = min(len(got), len(expected))
    if rows == 0 or got.shape[-1] != expected.shape[-1]:
        return 0.0
    return min(cosine(g, e) for g, e in zip(got[-rows:], expected[-rows:]))


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
    embedding = f"{header.architecture}.pooling_type" in header.metadata
    results = anyio.run(_run_probes, gguf, spec.factory(checkpoint), embedding)
    for i, result in enumerate(results, 1):
        progress(Progress(f"probe {i} ({result.tokens} tokens): cosine {result.cosine:.6f}"))
        for name, value in result.layers:
            progress(Progress(f"  {name}: cosine {value:.6f}"))
    worst = min(results, key=lambda r: r.cosine)
    if worst.cosine < MIN_COSINE:
        first = next((name for name, value in worst.layers if value < MIN_COSINE), None)
        where = f"; first differing state: {first}" if first else ""
        raise RequestError(
            400,
            f"verification failed: llama.cpp and the reference differ (cosine {worst.cosine:.6f} on {worst.text!r}{where})",
        )
    return results


async def _run_probes(gguf: Path, reference: Any, embedding: bool) -> list[ProbeResult]:
    from ollama_core.runner import RunnerProcess
    from ollama_core.runner.protocol import Inspect, Load

    runner = await RunnerProcess.start(Load(model_path=str(gguf), num_ctx=2048, num_batch=2048, embedding=embedding))
    try:
        results = []
        for text in PROBES:
            tokens = await runner.tokenize(text)
            expected = reference.run(tokens)
            checkpoints: Mapping[str, Any] = expected.checkpoints
            seen = await runner.inspect(Inspect(tokens=tokens))
            similarity = cosine(np.frombuffer(seen.final, dtype=np.float32), expected.final)
            layers: tuple[tuple[str, float], ...] = ()
            if similarity < MIN_COSINE:
                seen = await runner.inspect(Inspect(tokens=tokens, tensors=list(checkpoints)))
                layers = tuple(
                    (name, row_cosine(np.frombuffer(seen.tensors[name], dtype=np.float32).reshape(-1, seen.width),
                                      np.asarray(state, dtype=np.float32).reshape(len(tokens), -1)))
                    for name, state in checkpoints.items()
                    if name in seen.tensors
                )
            results.append(ProbeResult(text, len(tokens), similarity, layers))
        return results
    finally:
        await runner.close()
