"""``ollama pull`` and ``ollama push``: one progress bar per layer, with speed and time left."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ollama_core.cli.client import stream_lines


def show_progress(path: str, body: dict[str, Any]) -> None:
    """Stream a pull/push and render each layer's progress as its own bar; other lines as text."""
    console = Console(stderr=True)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    last = ""
    with bars:
        for line in stream_lines(path, body):
            status = str(line.get("status", ""))
            digest = str(line.get("digest", ""))
            if digest and line.get("total"):
                if digest not in tasks:
                    tasks[digest] = bars.add_task(status, total=int(line["total"]))
                bars.update(tasks[digest], completed=int(line.get("completed", 0)))
                if not console.is_terminal and status != last:
                    click.echo(status)
            elif status and status != last:
                if console.is_terminal:
                    bars.console.print(status)
                else:
                    click.echo(status)
            last = status


@click.command(help="Pull a model from a registry")
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure (plain HTTP) registry")
def pull(model: str, insecure: bool) -> None:
    """Download ``model`` and every layer it needs."""
    show_progress("/api/pull", {"model": model, "insecure": insecure})


@click.command(help="Push a model to a registry")
@click.argument("model")
@click.option("--insecure", is_flag=True, help="Use an insecure (plain HTTP) registry")
def push(model: str, insecure: bool) -> None:
    """Upload ``model``'s layers and manifest."""
    show_progress("/api/push", {"model": model, "insecure": insecure})
