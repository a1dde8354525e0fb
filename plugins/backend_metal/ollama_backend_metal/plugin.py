"""Hook implementations of the ``backend_metal`` plugin; imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollama_core.descriptors import BackendSpec
from ollama_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ollama_backend_metal.backend import MetalBackend

OLLAMA_PLUGIN_API = 1

NAME = "metal"
PRIORITY = 90


def _backend() -> MetalBackend:
    from ollama_backend_metal.backend import MetalBackend

    return MetalBackend()


@hookimpl
def ollama_backends() -> Sequence[BackendSpec]:
    return [BackendSpec(name=NAME, factory=_backend, priority=PRIORITY)]
