"""A plugin whose API surface factory raises when the app is built."""

from ollama_core.descriptors import ApiSurface
from ollama_core.hookspecs import hookimpl


def _routes(context):
    raise RuntimeError("surface factory exploded")


@hookimpl
def ollama_api_surfaces():
    return [ApiSurface(name="bad", factory=_routes)]
