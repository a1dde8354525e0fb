"""A plugin with a misspelled hook name."""

from ollama_core.hookspecs import hookimpl


@hookimpl
def ollama_renderer():
    return []
