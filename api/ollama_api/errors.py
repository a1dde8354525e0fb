"""Errors the native API answers with: ``{"error": "..."}`` and Ollama's status codes."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from ollama_core.errors import RequestError

log = logging.getLogger(__name__)


class ErrorResponse(msgspec.Struct):
    """The native error body."""

    error: str


def error_response(status: int, message: str) -> Response[Any]:
    """A JSON ``{"error": message}`` response."""
    return Response(ErrorResponse(message), status_code=status, media_type=MediaType.JSON)


def handle_request_error(_: Request[Any, Any, Any], exc: RequestError) -> Response[Any]:
    return error_response(exc.status, exc.message)


def handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Body decoding failures: Ollama's ``missing request body`` or the decoder's message."""
    if _empty(request):
        return error_response(400, "missing request body")
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if isinstance(item, dict) and item.get("message"):
            key = item.get("key")
            message = str(item["message"])
            if "Input data was truncated" in message or "unexpected end of" in message.lower():
                return error_response(400, "unexpected EOF")
            return error_response(400, f"{message} - at `{key}`" if key and key not in message else message)
    return error_response(400, exc.detail or "invalid request")


def _empty(request: Request[Any, Any, Any]) -> bool:
    body = request._connection_state.body  # noqa: SLF001 - the body Litestar already read for decoding
    return isinstance(body, bytes) and not body.strip()


def handle_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Routing errors as Ollama's plain text; other HTTP errors as ``{"error": ...}``."""
    if isinstance(exc, MethodNotAllowedException):
        return Response("405 method not allowed", status_code=405, media_type=MediaType.TEXT)
    if isinstance(exc, NotFoundException):
        return Response("404 page not found", status_code=404, media_type=MediaType.TEXT)
    return error_response(exc.status_code, exc.detail)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Last resort: log the traceback, answer a JSON error without it."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    RequestError: handle_request_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
