"""Errors raised while talking to a registry; each is a :class:`RequestError` a client may see."""

from __future__ import annotations

from ollama_core.errors import RequestError


class RegistryError(RequestError):
    """Base class of every registry failure."""


class RefusedError(RegistryError):
    """The policy forbids the registry, address, redirect or token realm (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class UpstreamError(RegistryError):
    """The registry answered, but with something we do not accept (502 unless given)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(status, message)


class TransientError(RegistryError):
    """A network failure, timeout or stalled transfer that is worth retrying (502, or 504 for timeouts)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(status, message)
