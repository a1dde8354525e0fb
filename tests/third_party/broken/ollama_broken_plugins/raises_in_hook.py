"""A plugin whose registration hook raises."""

from ollama_core.hookspecs import hookimpl


@hookimpl
def ollama_renderers():
    raise ValueError("renderer registry exploded")
