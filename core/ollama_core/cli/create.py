"""``ollama create MODEL -f Modelfile``: upload local files as blobs, then call ``/api/create``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ollama_core.cli.client import ServerError, client, stream_lines

CHUNK = 1 << 20


def _progress() -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=console,
        disable=not console.is_terminal,
    )


def _hash(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with _progress() as bar, open(path, "rb") as f:
        task = bar.add_task(f"hashing {path.name}", total=size)
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.advance(task, len(chunk))
    return "sha256:" + digest.hexdigest()


def _upload(path: Path, digest: str) -> None:
    with client() as c:
        exists = c.head(f"/api/blobs/{digest}").status_code == 200
    if exists:
        return
    size = path.stat().st_size

    with _progress() as bar:
        task = bar.add_task(f"copying file {digest[:19]}", total=size)

        def body() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    bar.advance(task, len(chunk))
                    yield chunk

        with client() as c:
            response = c.post(f"/api/blobs/{digest}", content=body(), headers={"Content-Length": str(size)})
        if response.status_code >= 400:
            raise ServerError(response.json().get("error", response.text))


def _file_map(paths: list[Path]) -> dict[str, str]:
    if not paths:
        return {}
    root = Path(os.path.commonpath([p.parent for p in paths]))
    files: dict[str, str] = {}
    for path in paths:
        digest = _hash(path)
        _upload(path, digest)
        files[path.relative_to(root).as_posix()] = digest
    return files


@click.command(help="Create a model from a Modelfile")
@click.argument("model")
@click.option("-f", "--file", "modelfile", default="Modelfile", show_default=True, help="Name of the Modelfile")
@click.option("-q", "--quantize", default="", help="Quantize model to this level (e.g. q4_K_M)")
@click.option("--verify", is_flag=True, help="Compare a converted checkpoint with its reference implementation")
def create(model: str, modelfile: str, quantize: str, verify: bool) -> None:
    """Parse the Modelfile, upload what it names, and stream the server's status lines."""
    from ollama_core.modelfile import ModelfileError, parse_modelfile

    path = Path(modelfile).expanduser()
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"reading Modelfile: {exc.strerror or exc}") from None
    try:
        parts = parse_modelfile(text).to_create_request(path.resolve().parent)
    except ModelfileError as exc:
        raise click.ClickException(str(exc)) from None
    body: dict[str, Any] = {"model": model}
    if parts.from_:
        body["from"] = parts.from_
    if parts.files:
        body["files"] = _file_map(parts.files)
    if parts.adapters:
        body["adapters"] = _file_map(parts.adapters)
    for key in ("template", "system", "requires", "renderer", "parser"):
        value = getattr(parts, key)
        if value is not None:
            body[key] = value
    if parts.license:
        body["license"] = parts.license
    if parts.parameters:
        body["parameters"] = parts.parameters
    if parts.messages:
        body["messages"] = parts.messages
    if quantize:
        body["quantize"] = quantize
    if verify:
        body["verify"] = True
    status = ""
    for line in stream_lines("/api/create", body):
        if line.get("status") and line["status"] != status:
            status = line["status"]
            click.echo(status)
