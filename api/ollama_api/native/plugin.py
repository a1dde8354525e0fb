"""The native surface as a built-in plugin of the ``ollama_api_surfaces`` hook."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ollama_core.context import ServerContext
from ollama_core.descriptors import ApiSurface
from ollama_core.hookspecs import hookimpl


def _routes(_: ServerContext) -> Iterable[Any]:
    from ollama_api.native import blobs, chat, create, embed, generate, meta, models, ps, registry, tokens

    return [
        *meta.ROUTES, *models.ROUTES, *blobs.ROUTES, *create.ROUTES,
        *generate.ROUTES, *chat.ROUTES, *embed.ROUTES, *ps.ROUTES, *registry.ROUTES, *tokens.ROUTES,
    ]


@hookimpl
def ollama_api_surfaces() -> Sequence[ApiSurface]:
    return [ApiSurface(name="native", factory=_routes, description="Ollama's native /api/* endpoints")]
