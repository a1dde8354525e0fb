"""``ollama serve``: run the HTTP server on ``OLLAMA_HOST`` (default ``127.0.0.1:11434``)."""

from __future__ import annotations

import logging

import click


@click.command(help="Start the server")
def serve() -> None:
    """Load plugins, build the app and serve it until interrupted."""
    import uvicorn

    from ollama_api.app import create_app
    from ollama_core.backends.discovery import discover
    from ollama_core.plugins import create_plugin_manager
    from ollama_core.settings import Settings

    settings = Settings.from_env()
    level = logging.DEBUG if settings.debug else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("ollama_core.serve")
    logging.getLogger("httpx").setLevel(logging.DEBUG if settings.debug else logging.WARNING)
    pm = create_plugin_manager(disabled=settings.disabled_plugins)
    for problem in pm.errors:
        log.warning("plugin %s not loaded (%s): %s", problem.plugin, problem.phase, problem.error)
    app = create_app(pm, settings)
    for line in discover(app.state.context.registries.values("backends")).describe():
        log.info("%s", line)
    log.info("models in %s", settings.models_dir)
    log.info("listening on %s:%d", settings.host.host or "0.0.0.0", settings.host.port)
    uvicorn.run(
        app,
        host=settings.host.host or "0.0.0.0",
        port=settings.host.port,
        log_level="debug" if settings.debug else "warning",
        access_log=bool(settings.debug),
        timeout_graceful_shutdown=5,
    )
