"""``GET /api/ps``: the models loaded in memory."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from litestar import get

from ollama_api.native.inference_schemas import PsResponse, RunningModel
from ollama_api.native.models import details_of
from ollama_api.wire import format_time
from ollama_core.context import ServerContext

FOREVER_SPAN = timedelta(days=365 * 292)


@get("/api/ps", sync_to_thread=False)
def running(ctx: ServerContext) -> PsResponse:
    """Every loaded runner, longest remaining life first, with the memory its load plan gives it."""
    models = []
    current = datetime.now(timezone.utc).astimezone()
    for loaded in ctx.inference.scheduler.loaded():
        target, options, _ = loaded.request.payload
        remaining = loaded.expires_in
        expires = current + (FOREVER_SPAN if math.isinf(remaining) else timedelta(seconds=remaining))
        plan = ctx.inference.plan_of(loaded)
        size = plan.size if plan is not None else target.model.size
        display = target.display
        models.append(
            RunningModel(
                name=display,
                model=display,
                size=size,
                digest=target.model.digest,
                details=details_of(target.facts),
                expires_at=format_time(expires),
                size_vram=plan.size_vram if plan is not None else 0,
                context_length=int(options.get("num_ctx") or 0),
            )
        )
    return PsResponse(models=models)


ROUTES = [running]
