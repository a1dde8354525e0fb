"""``ollama plugins``: installed plugins, their versions and hooks, and any load errors."""

from __future__ import annotations

import json

import click


@click.command(help="List installed plugins, their hooks and load errors")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table")
def plugins(as_json: bool) -> None:
    """Load plugins exactly as the server does and describe them."""
    from ollama_core.plugins import build_registries, create_plugin_manager
    from ollama_core.settings import Settings

    pm = create_plugin_manager(disabled=Settings.from_env().disabled_plugins)
    build_registries(pm)
    infos = pm.infos()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": i.name,
                            "distribution": i.distribution,
                            "version": i.version,
                            "builtin": i.builtin,
                            "hooks": list(i.hooks),
                        }
                        for i in infos
                    ],
                    "errors": [
                        {"plugin": e.plugin, "distribution": e.distribution, "phase": e.phase, "error": e.error}
                        for e in pm.errors
                    ],
                },
                indent=2,
            )
        )
        return
    rows = [("NAME", "VERSION", "HOOKS")]
    for info in infos:
        version = "built-in" if info.builtin else f"{info.distribution or '?'} {info.version or ''}".strip()
        rows.append((info.name, version, ", ".join(info.hooks)))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, version, hooks in rows:
        click.echo(f"{name:<{widths[0]}}    {version:<{widths[1]}}    {hooks}".rstrip())
    if pm.errors:
        click.echo("\nErrors:")
        for e in pm.errors:
            click.echo(f"{e.plugin} ({e.distribution or 'unknown distribution'}), {e.phase}: {e.error}")
