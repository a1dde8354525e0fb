"""OpenAI-shaped errors for ``/v1`` routes: ``{"error": {"message", "type", "param", "code"}}``.

The status codes are the native ones; ``type`` follows from the status (400
``invalid_request_error``, 404 ``not_found_error``, anything else ``api_error``). The handlers are
installed on the ``/v1`` router only, so the native routes keep their own error shape.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from ollama_api.errors import ErrorResponse as NativeErrorResponse
from ollama_api.errors import handle_validation
from ollama_api.openai.schemas import Error, ErrorResponse
from ollama_core.errors import RequestError

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def error_body(status: int, message: str) -> ErrorResponse:
    """The error object for ``status``."""
    return ErrorResponse(Error(message=message, type=_TYPES.get(status, "api_error")))


def error_response(status: int, message: str) -> Response[Any]:
    """A JSON error response in OpenAI's shape."""
    return Response(error_body(status, message), status_code=status, media_type="application/json")


def _request_error(_: Request[Any, Any, Any], exc: RequestError) -> Response[Any]:
    return error_response(exc.status, exc.message)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    native = handle_validation(request, exc)
    content = native.content
    message = content.error if isinstance(content, NativeErrorResponse) else str(exc.detail or "invalid request")
    return error_response(native.status_code, message)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_response(exc.status_code, exc.detail)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {type(exc).__name__}")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    RequestError: _request_error,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unexpected,
}
