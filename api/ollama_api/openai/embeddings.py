"""``POST /v1/embeddings``: L2-normalised embeddings as floats or base64 little-endian float32."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

from litestar import post
from litestar.response import Response

from ollama_api.native.embed import normalize
from ollama_api.openai.mapping import is_token_list
from ollama_api.openai.schemas import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.inference import parse_keep_alive

ENCODINGS = ("float", "base64")


def embedding_inputs(value: str | list[Any] | None) -> list[str | list[int]]:
    """The inputs of a request: a string, strings, a token list or token lists (``""`` is one input)."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise RequestError(400, "invalid input")
    if all(isinstance(item, str) for item in value):
        return list(value)
    if is_token_list(value):
        return [list(value)]
    if all(is_token_list(item) for item in value):
        return [list(item) for item in value]
    raise RequestError(400, "invalid input type")


def encode_base64(vector: Sequence[float]) -> str:
    """Base64 of the vector as little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


@post("/embeddings", status_code=200)
async def embeddings(data: EmbeddingRequest, ctx: ServerContext) -> Response[Any]:
    """Embeddings of every input, in input order; ``dimensions`` cuts and renormalises."""
    encoding = (data.encoding_format or "float").lower()
    if encoding not in ENCODINGS:
        raise RequestError(
            400, f"Invalid value for 'encoding_format' = {data.encoding_format}. Supported values: ['float', 'base64']."
        )
    if data.dimensions is not None and data.dimensions < 0:
        raise RequestError(400, "dimensions must be a positive number")
    inputs = embedding_inputs(data.input)
    inference = ctx.inference
    target = inference.resolve(data.model, f'model "{data.model}" not found, try pulling it first')
    keep_alive = parse_keep_alive(data.keep_alive)
    requested = dict(data.options or {})
    if data.num_ctx is not None:
        requested["num_ctx"] = data.num_ctx
    options = inference.options(target, requested)
    result = await inference.embed(target, inputs, truncate=data.truncate, options=options, keep_alive=keep_alive)
    vectors = [normalize(v, data.dimensions) for v in result.vectors]
    return json_response(
        EmbeddingList(
            data=[
                Embedding(embedding=encode_base64(v) if encoding == "base64" else v, index=i)
                for i, v in enumerate(vectors)
            ],
            model=data.model,
            usage=EmbeddingUsage(prompt_tokens=result.prompt_eval_count, total_tokens=result.prompt_eval_count),
        )
    )


ROUTES = [embeddings]
