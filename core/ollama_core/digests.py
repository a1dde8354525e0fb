"""Content digests: the only form accepted is SHA-256 as ``sha256:<64 hex>`` or ``sha256-<64 hex>``.

Ollama's own check (``manifest.BlobsPath``) also accepts upper-case hex, but every digest it
produces is lower-case (Go's ``%x``), so an upper-case digest can never name a blob whose content
hashes to it. We accept lower-case hex only, so that one digest has exactly one spelling and one
blob file name. Blob paths are built from the validated hex alone, never from the input string.
"""

from __future__ import annotations

import hashlib
import re

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-f]{64})")


class InvalidDigestError(ValueError):
    """A string that is not a ``sha256:<64 lower-case hex>`` digest."""

    def __init__(self, message: str = "invalid digest format") -> None:
        super().__init__(message)


def parse_digest(text: str) -> str:
    """The canonical ``sha256:<hex>`` form of ``text``; raises :class:`InvalidDigestError`."""
    return "sha256:" + digest_hex(text)


def digest_hex(text: str) -> str:
    """The 64 hex characters of a valid digest; raises :class:`InvalidDigestError`."""
    match = _DIGEST_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDigestError()
    return match.group(1)


def blob_filename(digest: str) -> str:
    """The blob file name for ``digest``: ``sha256-<hex>``."""
    return "sha256-" + digest_hex(digest)


def sha256_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
