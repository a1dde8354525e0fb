"""An example third-party plugin: declares an architecture, a renderer and an API route."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ollama_core.context import ServerContext
from ollama_core.descriptors import ApiSurface, Architecture, RenderedPrompt, RendererSpec, RenderRequest
from ollama_core.hookspecs import hookimpl

OLLAMA_PLUGIN_API = 1


class ShoutRenderer:
    """Renders every message upper-cased, one per line."""

    def render(self, request: RenderRequest) -> RenderedPrompt:
        lines = [f"{m['role'].upper()}: {str(m.get('content', '')).upper()}" for m in request.messages]
        return RenderedPrompt(text="\n".join(lines) + "\nASSISTANT:", add_bos=True)


def _routes(context: ServerContext) -> Iterable[Any]:
    from litestar import get

    @get("/api/example/count", sync_to_thread=False)
    def count() -> dict[str, int]:
        return {"models": len(context.store.list_models())}

    return [count]


@hookimpl
def ollama_architectures() -> Sequence[Architecture]:
    return [Architecture(name="example", gguf_architectures=("example",), renderer="shout")]


@hookimpl
def ollama_renderers() -> Sequence[RendererSpec]:
    return [RendererSpec(name="shout", factory=ShoutRenderer, architectures=("example",))]


@hookimpl
def ollama_api_surfaces() -> Sequence[ApiSurface]:
    return [ApiSurface(name="example", factory=_routes, description="counts local models")]
