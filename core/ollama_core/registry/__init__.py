"""Pulling models from and pushing them to OCI/Docker v2 registries, the way Ollama does."""

from ollama_core.registry.errors import RefusedError, RegistryError, TransientError, UpstreamError
from ollama_core.registry.policy import RegistryPolicy
from ollama_core.registry.pull import pull_model
from ollama_core.registry.push import push_model

__all__ = [
    "RefusedError",
    "RegistryError",
    "RegistryPolicy",
    "TransientError",
    "UpstreamError",
    "pull_model",
    "push_model",
]
