"""``POST /api/create``: build a model from uploaded blobs and/or an existing model."""

from __future__ import annotations

from typing import Any

from litestar import post
from litestar.response import Response

from ollama_api.native.models import parse_name
from ollama_api.native.schemas import CreateRequest
from ollama_api.wire import progress_response
from ollama_core.context import ServerContext
from ollama_core.create import CreateSpec, check_file_map, create_model
from ollama_core.errors import RequestError
from ollama_core.progress import ProgressSink


@post("/api/create", status_code=200)
async def create(data: CreateRequest, ctx: ServerContext) -> Response[Any]:
    """Create or replace a model, streaming status lines as Ollama does."""
    raw = data.model or data.name
    if not raw:
        raise RequestError(400, "invalid model name")
    name = parse_name(raw)
    if not data.from_ and not data.files:
        raise RequestError(400, "neither 'from' or 'files' was specified")
    check_file_map(data.files or {})
    check_file_map(data.adapters or {})
    license_texts = [data.license] if isinstance(data.license, str) else data.license
    spec = CreateSpec(
        name=name,
        from_model=data.from_,
        files=data.files or {},
        adapters=data.adapters or {},
        template=data.template,
        system=data.system,
        license=license_texts,
        parameters=data.parameters,
        messages=[{"role": m.role, "content": m.content} for m in data.messages] if data.messages is not None else None,
        quantize=data.quantize or data.quantization,
        renderer=data.renderer,
        parser=data.parser,
        requires=data.requires,
        verify=data.verify,
    )

    def work(progress: ProgressSink) -> None:
        create_model(ctx.store, ctx.registries, spec, progress)

    return await progress_response(work, stream=data.stream)


ROUTES = [create]
