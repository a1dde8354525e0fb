"""``GET /v1/models`` and ``GET /v1/models/{model}``: local models, with context length and capabilities."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import get
from litestar.response import Response
from msgspec import UNSET

from ollama_api.openai.schemas import ModelList, ModelObject
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.model_facts import ModelFacts
from ollama_core.store import Model


def model_object(model_id: str, model: Model, facts: ModelFacts) -> ModelObject:
    """A model as ``/v1`` lists it; ``owned_by`` is the name's namespace."""
    return ModelObject(
        id=model_id,
        created=int(model.modified_at.timestamp()),
        owned_by=model.name.namespace,
        context_length=facts.details.context_length or UNSET,
        capabilities=list(facts.capabilities) or UNSET,
    )


def _list(ctx: ServerContext) -> ModelList:
    return ModelList(
        data=[model_object(stored.name.display(), model, facts) for stored, model, facts in ctx.inspector.listing()]
    )


@get("/models")
async def list_models(ctx: ServerContext) -> Response[Any]:
    """Every local model, newest first."""
    return json_response(await anyio.to_thread.run_sync(_list, ctx))


@get("/models/{model:path}")
async def retrieve_model(model: str, ctx: ServerContext) -> Response[Any]:
    """One model by name (names may contain ``/``); 404 when it is not here."""
    name = model.lstrip("/")
    target = await anyio.to_thread.run_sync(ctx.inference.resolve, name, f"model '{name}' not found")
    return json_response(model_object(name, target.model, target.facts))


ROUTES = [list_models, retrieve_model]
