"""The audio surface as a built-in plugin of the ``ollama_api_surfaces`` hook.

The surface is always registered (``ollama plugins`` lists it) but mounts its routes only when an
installed plugin offers audio input, i.e. when some registered :class:`~ollama_core.descriptors.Architecture`
declares ``audio`` in its ``capabilities`` or ``projector_capabilities``
(:meth:`~ollama_core.plugins.Registries.offers`). Otherwise ``/v1/audio/transcriptions`` does not
exist: it answers 404 and is absent from the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ollama_core.context import ServerContext
from ollama_core.descriptors import ApiSurface
from ollama_core.hookspecs import hookimpl


def _routes(ctx: ServerContext) -> Iterable[Any]:
    if not ctx.registries.offers("audio"):
        return []
    from litestar import Router

    from ollama_api.audio import transcriptions

    return [Router(path="/v1/audio", route_handlers=transcriptions.ROUTES,
                   exception_handlers=transcriptions.EXCEPTION_HANDLERS)]


@hookimpl
def ollama_api_surfaces() -> Sequence[ApiSurface]:
    return [
        ApiSurface(
            name="audio",
            factory=_routes,
            description="OpenAI-compatible /v1/audio/transcriptions, when an installed plugin offers audio input",
        )
    ]
