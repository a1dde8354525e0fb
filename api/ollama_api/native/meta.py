"""Liveness and version: ``GET|HEAD /`` and ``GET|HEAD /api/version``."""

from __future__ import annotations

from litestar import MediaType, get, head
from litestar.response import Response

from ollama_api.native.schemas import VersionResponse
from ollama_core import __version__


@get("/", media_type=MediaType.TEXT, sync_to_thread=False)
def root() -> str:
    """Liveness probe used by clients before anything else."""
    return "Ollama is running"


@head("/", sync_to_thread=False)
def root_head() -> Response[None]:
    """The CLI's heartbeat."""
    return Response(None, status_code=200)


@get("/api/version", sync_to_thread=False)
def version() -> VersionResponse:
    """The server version."""
    return VersionResponse(version=__version__)


@head("/api/version", sync_to_thread=False)
def version_head() -> Response[None]:
    """Version probe without a body."""
    return Response(None, status_code=200)


ROUTES = [root, root_head, version, version_head]
