"""``ollama transcribe MODEL FILE...``: each file's transcript, from ``POST /v1/audio/transcriptions``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx

from ollama_core.cli.client import ServerError, check, client

ENDPOINT = "/v1/audio/transcriptions"
FORMATS = ("text", "json", "srt", "vtt", "verbose_json")


def _check(response: httpx.Response) -> None:
    """Like :func:`check`, but a missing route says why it is missing."""
    if response.status_code == 404 and not response.headers.get("content-type", "").startswith("application/json"):
        raise ServerError("this server does not transcribe audio: none of its plugins offers audio input")
    check(response)


def _stream_text(http: httpx.Client, fields: dict[str, str], path: Path) -> None:
    """Print the transcript as the server streams it."""
    with path.open("rb") as audio, http.stream(
        "POST", ENDPOINT, data={**fields, "stream": "true"}, files={"file": (path.name, audio)}
    ) as response:
        _check(response)
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event: dict[str, Any] = json.loads(line.removeprefix("data: "))
            if "error" in event:
                raise ServerError(str(event["error"].get("message", event["error"])))
            if event.get("type") == "transcript.text.delta":
                click.echo(event["delta"], nl=False)
    click.echo()


def _whole(http: httpx.Client, fields: dict[str, str], path: Path) -> None:
    """Print the response body in the requested format."""
    with path.open("rb") as audio:
        response = http.post(ENDPOINT, data=fields, files={"file": (path.name, audio)})
    _check(response)
    click.echo(response.text.rstrip("\n"))


@click.command(help="Transcribe audio files with an audio-capable model")
@click.argument("model")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", default=None, help="Language of the audio (e.g. en)")
@click.option("--prompt", default=None, help="Text that guides the transcription (context, spellings)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format")
def transcribe(model: str, files: tuple[Path, ...], language: str | None, prompt: str | None, fmt: str) -> None:
    """Print each file's transcript, under a ``==> FILE <==`` header when there are several."""
    fields = {"model": model, "response_format": fmt}
    if language:
        fields["language"] = language
    if prompt:
        fields["prompt"] = prompt
    try:
        with client() as http:
            for index, path in enumerate(files):
                if len(files) > 1:
                    if index:
                        click.echo()
                    click.echo(f"==> {path} <==")
                if fmt == "text":
                    _stream_text(http, fields, path)
                else:
                    _whole(http, fields, path)
    except httpx.ConnectError:
        raise ServerError("could not connect to ollama server, run 'ollama serve' to start it") from None
