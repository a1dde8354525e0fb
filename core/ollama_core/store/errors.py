"""Errors raised by the model store."""

from __future__ import annotations

from ollama_core.names import ModelName


class StoreError(Exception):
    """Base class of every model-store error."""


class ModelNotFoundError(StoreError, LookupError):
    """No manifest exists for the name."""

    def __init__(self, name: ModelName | str) -> None:
        shown = name.display() if isinstance(name, ModelName) else name
        super().__init__(f"model '{shown}' not found")
        self.name = name


class InvalidManifestError(StoreError, ValueError):
    """A manifest that is too large, is not valid JSON of the right shape, or names an invalid digest."""


class InvalidLayerError(StoreError, ValueError):
    """A config, parameters or messages blob whose content does not decode as expected."""


class BlobNotFoundError(StoreError, FileNotFoundError):
    """A blob a manifest refers to is not in the store."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} not found")
        self.digest = digest


class BlobTooLargeError(StoreError, ValueError):
    """A blob written or read is larger than the limit it was given."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob too large: limit is {limit} bytes")
        self.limit = limit


class DigestMismatchError(StoreError, ValueError):
    """The content written does not hash to the digest it was announced with."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f'digest mismatch, expected "{expected}", got "{actual}"')
        self.expected = expected
        self.actual = actual
