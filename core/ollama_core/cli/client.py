"""A small HTTP client for the CLI: base URL from ``OLLAMA_HOST``, Ollama's and OpenAI's error bodies, NDJSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import click
import httpx

from ollama_core.settings import parse_host


class ServerError(click.ClickException):
    """An error answer from the server, shown as ``Error: <message>``."""


def base_url() -> str:
    """Where the server is, from ``OLLAMA_HOST``."""
    return parse_host(os.environ.get("OLLAMA_HOST")).url


def client(timeout: float | None = None) -> httpx.Client:
    """An HTTP client for the server (no proxy for a local server)."""
    headers = {"User-Agent": "ollama-core-cli"}
    if key := os.environ.get("OLLAMA_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=base_url(), timeout=httpx.Timeout(timeout, connect=5.0), headers=headers, trust_env=False)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"{response.status_code} {response.reason_phrase}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str):
        return error
    return response.text.strip()


def check(response: httpx.Response) -> httpx.Response:
    """Raise :class:`ServerError` with the server's message for any non-2xx answer."""
    if response.status_code >= 400:
        response.read()
        raise ServerError(_message(response))
    return response


def request(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; connection failures become a clear CLI error."""
    try:
        with client() as c:
            return check(c.request(method, path, **kwargs))
    except httpx.ConnectError:
        raise ServerError("could not connect to ollama server, run 'ollama serve' to start it") from None


def stream_lines(path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """POST ``body`` and yield each NDJSON object; an ``error`` line raises :class:`ServerError`."""
    try:
        with client() as c, c.stream("POST", path, json=body) as response:
            check(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if isinstance(item, dict) and "error" in item:
                    raise ServerError(str(item["error"]))
                yield item
    except httpx.ConnectError:
        raise ServerError("could not connect to ollama server, run 'ollama serve' to start it") from None
