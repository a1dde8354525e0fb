"""``POST /api/tokenize`` and ``POST /api/detokenize``: the model's own tokenizer over HTTP."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import post

from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.inference import parse_keep_alive


class TokenizeRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    content: str = ""
    options: dict[str, Any] | None = None
    keep_alive: str | float | None = None


class TokenizeResponse(msgspec.Struct):
    model: str
    tokens: list[int]


class DetokenizeRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    tokens: list[int] = []
    options: dict[str, Any] | None = None
    keep_alive: str | float | None = None


class DetokenizeResponse(msgspec.Struct):
    model: str
    content: str


@post("/api/tokenize", status_code=200)
async def tokenize(data: TokenizeRequest, ctx: ServerContext) -> TokenizeResponse:
    """Token ids of ``content`` (BOS added and special tokens parsed, as for a prompt)."""
    if not data.model:
        raise RequestError(400, "model is required")
    target = ctx.inference.resolve(data.model, f"model '{data.model}' not found")
    parse_keep_alive(data.keep_alive)
    tokens = await ctx.inference.tokenize(target, data.content, ctx.inference.options(target, data.options))
    return TokenizeResponse(model=data.model, tokens=tokens)


@post("/api/detokenize", status_code=200)
async def detokenize(data: DetokenizeRequest, ctx: ServerContext) -> DetokenizeResponse:
    """The text of ``tokens``."""
    if not data.model:
        raise RequestError(400, "model is required")
    target = ctx.inference.resolve(data.model, f"model '{data.model}' not found")
    parse_keep_alive(data.keep_alive)
    text = await ctx.inference.detokenize(target, data.tokens, ctx.inference.options(target, data.options))
    return DetokenizeResponse(model=data.model, content=text)


ROUTES = [tokenize, detokenize]
