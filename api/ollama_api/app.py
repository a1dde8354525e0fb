"""``create_app(plugin_manager, settings)``: the Litestar app, composed from API-surface plugins."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from ollama_api.errors import EXCEPTION_HANDLERS
from ollama_api.middleware import cors_config, guard_middleware
from ollama_core import __version__, metrics
from ollama_core.context import ServerContext
from ollama_core.inference import Inference
from ollama_core.model_facts import ModelInspector
from ollama_core.plugins import PluginManager, Registries, build_registries
from ollama_core.settings import Settings
from ollama_core.store import Store

log = logging.getLogger(__name__)


def build_context(plugin_manager: PluginManager, settings: Settings) -> ServerContext:
    """The shared services of one server: registries, store, model facts."""
    registries: Registries = build_registries(plugin_manager)
    store = Store(settings.models_dir)
    inspector = ModelInspector(store, registries)
    return ServerContext(
        settings=settings,
        plugin_manager=plugin_manager,
        registries=registries,
        store=store,
        inspector=inspector,
        inference=Inference(settings, store, inspector, registries),
    )


@asynccontextmanager
async def _lifespan(context: ServerContext) -> AsyncIterator[None]:
    """Prune the store at start (unless ``OLLAMA_NOPRUNE``), reap runners while serving, stop them at exit."""
    if not context.settings.noprune:
        removed = await anyio.to_thread.run_sync(context.store.prune)
        if removed:
            log.info("pruned %d unused files from the store", removed)
    async with anyio.create_task_group() as tg:
        tg.start_soon(context.inference.scheduler.reap_forever)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await context.inference.shutdown()
            tg.cancel_scope.cancel()


def create_app(plugin_manager: PluginManager, settings: Settings) -> Litestar:
    """Build the app: every API surface any plugin offers, mounted side by side.

    A surface whose factory raises is reported against its plugin and skipped; the others
    are still served.
    """
    context = build_context(plugin_manager, settings)
    handlers: list[Any] = []
    for name, entry in context.registries.api_surfaces.items():
        try:
            handlers.extend(entry.value.factory(context))
        except Exception as exc:  # noqa: BLE001 - one broken surface must not stop the server
            plugin_manager.record_problem(entry.plugin, f"api surface {name}", exc, entry.distribution)

    def provide_context() -> ServerContext:
        return context

    metrics.install(context.inference.scheduler)
    prometheus = PrometheusConfig(app_name="ollama", prefix="ollama", group_path=True, exclude=["/metrics"])
    app = Litestar(
        route_handlers=[*handlers, PrometheusController],
        dependencies={"ctx": Provide(provide_context, use_cache=True, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[guard_middleware(settings), prometheus.middleware],
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_request_size,
        openapi_config=OpenAPIConfig(title="ollama-core", version=__version__, path="/openapi"),
        debug=False,
        lifespan=[lambda _app: _lifespan(context)],
    )
    app.state.context = context
    return app
