"""``POST /api/embed`` (normalised, batched) and the legacy ``POST /api/embeddings`` (not normalised)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from litestar import post
from litestar.response import Response

from ollama_api.native.inference_schemas import EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, EmbedResponse
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.inference import parse_keep_alive


def normalize(vector: Sequence[float], dimensions: int | None = None) -> list[float]:
    """L2-normalise, after cutting to ``dimensions`` when that is shorter; NaN/Inf is an error."""
    values = list(vector)
    if dimensions is not None and 0 < dimensions < len(values):
        values = values[:dimensions]
    if not all(math.isfinite(v) for v in values):
        raise RequestError(500, "embedding contains NaN or Inf values")
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] if norm > 0 else values


def _inputs(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not all(isinstance(item, str) for item in value):
        raise RequestError(400, "invalid input type")
    return list(value)


@post("/api/embed", status_code=200)
async def embed(data: EmbedRequest, ctx: ServerContext) -> Response[Any]:
    """Embeddings of one or many inputs, L2-normalised, in input order."""
    inference = ctx.inference
    target = inference.resolve(data.model, f'model "{data.model}" not found, try pulling it first')
    if data.dimensions is not None and data.dimensions < 0:
        raise RequestError(400, "dimensions must be a positive number")
    inputs = _inputs(data.input)
    keep_alive = parse_keep_alive(data.keep_alive)
    options = inference.options(target, data.options)
    result = await inference.embed(target, inputs, truncate=data.truncate, options=options, keep_alive=keep_alive)
    vectors = [normalize(v, data.dimensions) for v in result.vectors]
    if not inputs:
        return json_response(EmbedResponse(model=data.model, embeddings=[]))
    return json_response(
        EmbedResponse(
            model=data.model,
            embeddings=vectors,
            total_duration=result.total_duration,
            load_duration=result.load_duration,
            prompt_eval_count=result.prompt_eval_count,
        )
    )


@post("/api/embeddings", status_code=200)
async def embeddings(data: EmbeddingsRequest, ctx: ServerContext) -> Response[Any]:
    """The legacy single embedding, not normalised."""
    inference = ctx.inference
    target = inference.resolve(data.model, f'model "{data.model}" not found, try pulling it first')
    keep_alive = parse_keep_alive(data.keep_alive)
    options = inference.options(target, data.options)
    inputs = [data.prompt] if data.prompt else []
    result = await inference.embed(target, inputs, truncate=True, options=options, keep_alive=keep_alive)
    vector = result.vectors[0] if result.vectors else []
    if not all(math.isfinite(v) for v in vector):
        raise RequestError(500, "embedding contains NaN or Inf values")
    return json_response(EmbeddingsResponse(embedding=list(vector)))


ROUTES = [embed, embeddings]
