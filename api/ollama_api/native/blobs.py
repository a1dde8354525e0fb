"""Content-addressed uploads: ``HEAD /api/blobs/{digest}`` and ``POST /api/blobs/{digest}``."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, head, post
from litestar.response import Response

from ollama_core.context import ServerContext
from ollama_core.digests import InvalidDigestError, parse_digest
from ollama_core.errors import RequestError
from ollama_core.store import BlobTooLargeError, DigestMismatchError

_FLUSH = 1 << 20


def _digest(raw: str) -> str:
    try:
        return parse_digest(raw)
    except InvalidDigestError:
        raise RequestError(400, "invalid digest format") from None


@head("/api/blobs/{digest:str}", sync_to_thread=False)
def blob_exists(digest: str, ctx: ServerContext) -> Response[None]:
    """200 when the blob is in the store, 404 when it is not."""
    return Response(None, status_code=200 if ctx.store.has_blob(_digest(digest)) else 404)


@post("/api/blobs/{digest:str}", request_max_body_size=None, status_code=201)
async def upload_blob(digest: str, request: Request[Any, Any, Any], ctx: ServerContext) -> Response[bytes]:
    """Stream the body into the store, hashing as it goes; 201 when stored, 200 if already present.

    The body is capped at ``OLLAMA_MAX_BLOB_SIZE``; a digest mismatch or an oversized body leaves
    nothing behind.
    """
    expected = _digest(digest)
    if ctx.store.has_blob(expected):
        return Response(b"", status_code=200)
    limit = ctx.settings.max_blob_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"blob too large: limit is {limit} bytes")
    try:
        with ctx.store.blob_writer(expected, max_size=limit) as writer:
            pending: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                pending.append(chunk)
                size += len(chunk)
                if size >= _FLUSH:
                    await anyio.to_thread.run_sync(writer.write, b"".join(pending))
                    pending, size = [], 0
            if pending:
                await anyio.to_thread.run_sync(writer.write, b"".join(pending))
            info = await anyio.to_thread.run_sync(writer.commit)
    except DigestMismatchError as exc:
        raise RequestError(400, str(exc)) from None
    except BlobTooLargeError:
        raise RequestError(413, f"blob too large: limit is {limit} bytes") from None
    return Response(b"", status_code=201 if info.created else 200)


ROUTES = [blob_exists, upload_blob]
