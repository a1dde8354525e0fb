"""Reading registry responses: uncompressed only, size-capped, time-capped, with mapped errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ollama_core.registry.errors import TransientError, UpstreamError

_IDENTITY = frozenset({"", "identity"})


@contextmanager
def network_errors(what: str) -> Iterator[None]:
    """Turn httpx failures into :class:`TransientError` naming ``what`` was being done."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(f"{what}: timed out: {exc}", status=504) from None
    except httpx.HTTPError as exc:
        raise TransientError(f"{what}: {exc}") from None


def check_identity(response: httpx.Response) -> None:
    """Refuse a compressed body: it could expand far beyond what was transferred."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY:
        raise UpstreamError(f"registry sent a compressed response (Content-Encoding: {encoding}); not accepted")


def declared_length(response: httpx.Response) -> int | None:
    """The ``Content-Length`` of ``response`` if it is a valid number."""
    value = response.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def iter_body(response: httpx.Response, what: str) -> Iterator[bytes]:
    """The raw body of ``response`` as it arrives, with network errors mapped."""
    check_identity(response)
    with network_errors(what):
        yield from response.iter_raw()


def read_limited(response: httpx.Response, limit: int, deadline: float, what: str) -> bytes:
    """The whole body, refused past ``limit`` bytes or after ``deadline`` seconds."""
    length = declared_length(response)
    if length is not None and length > limit:
        raise UpstreamError(f"{what}: response too large ({length} bytes, limit {limit})")
    stop_at = time.monotonic() + deadline
    data = bytearray()
    for chunk in iter_body(response, what):
        data += chunk
        if len(data) > limit:
            raise UpstreamError(f"{what}: response too large (limit {limit} bytes)")
        if time.monotonic() > stop_at:
            raise TransientError(f"{what}: response not received within {deadline:g} s", status=504)
    return bytes(data)


def summarize(body: bytes, limit: int = 512) -> str:
    """A printable, single-line excerpt of an error body."""
    text = body.decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text if len(text) <= limit else text[:limit] + "..."
