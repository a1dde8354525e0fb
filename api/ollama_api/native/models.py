"""Local model management: ``GET /api/tags``, ``POST /api/show``, ``POST /api/copy``, ``DELETE /api/delete``."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from litestar import delete, get, head, post
from litestar.response import Response

from ollama_api.native.schemas import (
    CopyRequest,
    DeleteRequest,
    ListModel,
    ListResponse,
    Message,
    ModelDetails,
    ShowRequest,
    ShowResponse,
    TensorEntry,
)
from ollama_api.wire import format_time
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.gguf import GGUFError, model_info, tensor_list
from ollama_core.model_facts import ModelFacts
from ollama_core.modelfile import format_modelfile, format_parameters
from ollama_core.names import InvalidNameError, ModelName
from ollama_core.store import Model, ModelNotFoundError, load_model


def parse_name(raw: str) -> ModelName:
    """A model name from a request, or 400 ``invalid model name``."""
    try:
        return ModelName.parse(raw)
    except InvalidNameError:
        raise RequestError(400, "invalid model name") from None


def find_model(ctx: ServerContext, raw: str, not_found: str) -> Model:
    """Load a stored model by the name a client sent; ``not_found`` is the 404 message."""
    try:
        return load_model(ctx.store, parse_name(raw))
    except ModelNotFoundError:
        raise RequestError(404, not_found) from None


def details_of(facts: ModelFacts) -> ModelDetails:
    d = facts.details
    return ModelDetails(
        parent_model=d.parent_model,
        format=d.format,
        family=d.family,
        families=d.families,
        parameter_size=d.parameter_size,
        quantization_level=d.quantization_level,
        context_length=d.context_length,
        embedding_length=d.embedding_length,
    )


def _list_models(ctx: ServerContext) -> ListResponse:
    models = []
    for stored, _, facts in ctx.inspector.listing():
        display = stored.name.display()
        models.append(
            ListModel(
                name=display,
                model=display,
                modified_at=format_time(stored.modified_at),
                size=stored.size,
                digest=stored.digest,
                details=details_of(facts),
                capabilities=facts.capabilities or None,
            )
        )
    return ListResponse(models=models)


@get("/api/tags")
async def list_models(ctx: ServerContext) -> ListResponse:
    """Every local model, newest first."""
    return await anyio.to_thread.run_sync(_list_models, ctx)


@head("/api/tags", sync_to_thread=False)
def list_models_head() -> Response[None]:
    """Probe for the model list."""
    return Response(None, status_code=200)


def _show(ctx: ServerContext, req: ShowRequest) -> ShowResponse:
    raw = req.model or req.name
    if not raw:
        raise RequestError(400, "model is required")
    model = find_model(ctx, raw, f"model '{raw}' not found")
    try:
        facts = ctx.inspector.facts(model)
    except GGUFError as exc:
        raise RequestError(500, str(exc)) from None
    parameters = dict(model.parameters)
    if req.options:
        parameters.update(req.options)
    system = req.system or model.system or ""
    template = model.template or _chat_template(facts)
    info: dict[str, Any] = model_info(facts.gguf, verbose=req.verbose) if facts.gguf else {}
    projector_info = model_info(facts.projector, verbose=req.verbose) if facts.projector else None
    tensors = (
        [msgspec.convert(t, TensorEntry) for t in tensor_list(facts.gguf)] if req.verbose and facts.gguf else None
    )
    return ShowResponse(
        modelfile=format_modelfile(
            name=model.name.display(),
            model_path=str(model.model_path or ""),
            adapters=[str(p) for p in model.adapter_paths],
            draft=str(model.draft_path or ""),
            projectors=[str(p) for p in model.projector_paths],
            template=template or None,
            system=system,
            renderer=model.config.renderer or "",
            parser=model.config.parser or "",
            parameters=parameters,
            license=model.license,
            messages=model.messages,
        ),
        parameters=format_parameters(parameters),
        template=template,
        system=system,
        license="\n".join(model.license),
        renderer=model.config.renderer or "",
        parser=model.config.parser or "",
        messages=[Message(role=m.get("role", ""), content=m.get("content", "")) for m in model.messages] or None,
        details=details_of(facts),
        model_info=info,
        projector_info=projector_info,
        tensors=tensors,
        capabilities=facts.capabilities or None,
        modified_at=format_time(model.modified_at),
        requires=model.config.requires or "",
    )


def _chat_template(facts: ModelFacts) -> str:
    if facts.gguf is None:
        return ""
    value = facts.gguf.metadata.get("tokenizer.chat_template")
    return value if isinstance(value, str) else ""


@post("/api/show", status_code=200)
async def show(data: ShowRequest, ctx: ServerContext) -> ShowResponse:
    """Everything about one model: Modelfile, parameters, template, details, GGUF metadata."""
    return await anyio.to_thread.run_sync(_show, ctx, data)


@post("/api/copy", status_code=200)
async def copy(data: CopyRequest, ctx: ServerContext) -> Response[bytes]:
    """Give a model a second name (only the manifest is copied)."""
    try:
        source = ModelName.parse(data.source)
    except InvalidNameError:
        raise RequestError(400, f'source "{data.source}" is invalid') from None
    try:
        destination = ModelName.parse(data.destination)
    except InvalidNameError:
        raise RequestError(400, f'destination "{data.destination}" is invalid') from None
    try:
        await anyio.to_thread.run_sync(ctx.store.copy, source, destination)
    except ModelNotFoundError:
        raise RequestError(404, f'model "{data.source}" not found') from None
    return Response(b"", status_code=200)


@delete("/api/delete", status_code=200)
async def remove(data: DeleteRequest, ctx: ServerContext) -> Response[bytes]:
    """Delete a model's manifest and every blob no other model uses."""
    raw = data.model or data.name
    name = parse_name(raw) if raw else None
    if name is None:
        raise RequestError(400, "model is required")
    try:
        await anyio.to_thread.run_sync(ctx.store.delete, name)
    except ModelNotFoundError:
        raise RequestError(404, f"model '{raw}' not found") from None
    return Response(b"", status_code=200)


ROUTES = [list_models, list_models_head, show, copy, remove]
