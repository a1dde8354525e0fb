"""``POST /api/pull`` and ``POST /api/push``: transfer models from and to registries."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import post
from litestar.response import Response

from ollama_api.native.models import parse_name
from ollama_api.wire import progress_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.progress import ProgressSink
from ollama_core.registry import RegistryPolicy, pull_model, push_model


class TransferRequest(msgspec.Struct, omit_defaults=True):
    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: bool = True
    username: str = ""
    password: str = ""


def _name(data: TransferRequest) -> Any:
    raw = data.model or data.name
    if not raw:
        raise RequestError(400, "model is required")
    name = parse_name(raw)
    if raw.startswith("http://") and not data.insecure:
        raise RequestError(400, "insecure protocol http: use --insecure (insecure: true) for plain-HTTP registries")
    return name


@post("/api/pull", status_code=200)
async def pull(data: TransferRequest, ctx: ServerContext) -> Response[Any]:
    """Pull a model: manifest, then every missing blob (resumable, verified), then the manifest is written."""
    name = _name(data)
    policy = RegistryPolicy.from_env()

    def work(progress: ProgressSink) -> None:
        pull_model(ctx.store, name, insecure=data.insecure, progress=progress, policy=policy,
                   prune=not ctx.settings.noprune)

    return await progress_response(work, stream=data.stream)


@post("/api/push", status_code=200)
async def push(data: TransferRequest, ctx: ServerContext) -> Response[Any]:
    """Push a local model's blobs and manifest to its registry."""
    name = _name(data)
    policy = RegistryPolicy.from_env()

    def work(progress: ProgressSink) -> None:
        push_model(ctx.store, name, insecure=data.insecure, progress=progress, policy=policy)

    return await progress_response(work, stream=data.stream)


ROUTES = [pull, push]
