"""Hook implementations of the ``backend_cuda`` plugin; imports nothing heavy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollama_core.descriptors import BackendSpec
from ollama_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from ollama_backend_cuda.backend import CudaBackend

OLLAMA_PLUGIN_API = 1

NAME = "cuda"
PRIORITY = 100


def _backend() -> CudaBackend:
    from ollama_backend_cuda.backend import CudaBackend

    return CudaBackend()


@hookimpl
def ollama_backends() -> Sequence[BackendSpec]:
    return [BackendSpec(name=NAME, factory=_backend, priority=PRIORITY)]
