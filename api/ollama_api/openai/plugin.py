"""The OpenAI-compatible surface as a built-in plugin of the ``ollama_api_surfaces`` hook."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ollama_core.context import ServerContext
from ollama_core.descriptors import ApiSurface
from ollama_core.hookspecs import hookimpl


def _routes(_: ServerContext) -> Iterable[Any]:
    from litestar import Router

    from ollama_api.openai import chat, completions, embeddings, models, responses
    from ollama_api.openai.errors import EXCEPTION_HANDLERS

    handlers = [*chat.ROUTES, *completions.ROUTES, *embeddings.ROUTES, *models.ROUTES, *responses.ROUTES]
    return [Router(path="/v1", route_handlers=handlers, exception_handlers=EXCEPTION_HANDLERS)]


@hookimpl
def ollama_api_surfaces() -> Sequence[ApiSurface]:
    return [ApiSurface(name="openai", factory=_routes, description="OpenAI-compatible /v1/* endpoints")]
