"""``ollama run``, ``ollama ps`` and ``ollama stop``."""

from __future__ import annotations

import base64
import json
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from ollama_core.cli.client import ServerError, request, stream_lines
from ollama_core.cli.formatting import human_bytes, table
from ollama_core.media import media_kind
from ollama_core.settings import parse_duration

HELP = """Available Commands:
  /set parameter ...     Set a parameter (e.g. /set parameter temperature 0.2)
  /set verbose           Show timings after each answer (/set quiet to stop)
  /set think, /set nothink
  /clear                 Clear the conversation
  /bye                   Exit
  /?, /help              Help for a command

Use \"\"\" to begin a multi-line message."""


# Paths as Ollama's CLI finds them: starting with "/", "./" or a backslash (after an optional drive
# letter), possibly with escaped or plain spaces, ending in an image or audio extension.
_MEDIA_PATH = re.compile(r"(?:[a-zA-Z]:)?(?:\./|/|\\)[\S\\ ]+?\.(?i:png|jpg|jpeg|webp|gif|wav)\b")
_UNESCAPE = re.compile(r"\\([ ()\[\]{}$&;'\\*?~])")


def extract_media(prompt: str) -> tuple[str, list[str]]:
    """Take the paths of existing image and audio files out of ``prompt``.

    Returns the remaining text and the files' contents, base64-encoded, for a message's
    ``images``. Each attached file is announced on stderr as Ollama does; paths that name no
    file stay in the text.
    """
    attached: list[str] = []
    for found in _MEDIA_PATH.findall(prompt):
        name = _UNESCAPE.sub(r"\1", found).replace("%20", " ")
        path = Path(name)
        if not path.is_file():
            continue
        data = path.read_bytes()
        attached.append(base64.b64encode(data).decode("ascii"))
        click.echo(f"Added {media_kind(data)} '{name}'", err=True)
        for text in (f"'{name}'", f"'{found}'", found):
            prompt = prompt.replace(text, "")
    return prompt.strip(), attached


def _metrics(final: dict[str, Any]) -> str:
    def seconds(key: str) -> float:
        return float(final.get(key, 0)) / 1e9

    lines = [f"total duration:       {seconds('total_duration'):.6f}s",
             f"load duration:        {seconds('load_duration'):.6f}s"]
    prompt_count, prompt_s = final.get("prompt_eval_count", 0), seconds("prompt_eval_duration")
    eval_count, eval_s = final.get("eval_count", 0), seconds("eval_duration")
    lines.append(f"prompt eval count:    {prompt_count} token(s)")
    if prompt_s:
        lines += [f"prompt eval duration: {prompt_s:.6f}s", f"prompt eval rate:     {prompt_count / prompt_s:.2f} tokens/s"]
    lines.append(f"eval count:           {eval_count} token(s)")
    if eval_s:
        lines += [f"eval duration:        {eval_s:.6f}s", f"eval rate:            {eval_count / eval_s:.2f} tokens/s"]
    return "\n".join(lines)


class Session:
    """One conversation with a model; with ``multimodal``, file paths in a prompt attach the files."""

    def __init__(self, model: str, *, options: dict[str, Any], think: bool | str | None, hide_thinking: bool,
                 keep_alive: str | None, fmt: str | None, verbose: bool, multimodal: bool = False) -> None:
        self.model = model
        self.multimodal = multimodal
        self.options = options
        self.think = think
        self.hide_thinking = hide_thinking
        self.keep_alive = keep_alive
        self.format = fmt
        self.verbose = verbose
        self.messages: list[dict[str, Any]] = []

    def ask(self, prompt: str) -> None:
        """Send one user message and stream the answer to stdout."""
        message: dict[str, Any] = {"role": "user", "content": prompt}
        if self.multimodal:
            message["content"], images = extract_media(prompt)
            if images:
                message["images"] = images
        self.messages.append(message)
        body: dict[str, Any] = {"model": self.model, "messages": self.messages, "options": self.options}
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.format:
            body["format"] = self.format
        content, thinking_open = [], False
        final: dict[str, Any] = {}
        for line in stream_lines("/api/chat", body):
            message = line.get("message") or {}
            if message.get("thinking") and not self.hide_thinking:
                if not thinking_open:
                    click.echo("Thinking...")
                    thinking_open = True
                click.echo(message["thinking"], nl=False)
            if message.get("content"):
                if thinking_open:
                    click.echo("\n...done thinking.\n")
                    thinking_open = False
                content.append(message["content"])
                click.echo(message["content"], nl=False)
            if line.get("done"):
                final = line
        click.echo("\n" if content and not "".join(content).endswith("\n") else "")
        self.messages.append({"role": "assistant", "content": "".join(content)})
        if self.verbose and final:
            click.echo(_metrics(final), err=True)

    def command(self, line: str) -> bool:
        """Handle a ``/`` command; returns False when the session should end."""
        words = line.split()
        if words[0] in ("/bye", "/exit"):
            return False
        if words[0] in ("/?", "/help"):
            click.echo(HELP)
        elif words[0] == "/clear":
            self.messages.clear()
            click.echo("Cleared session context")
        elif words[:2] == ["/set", "parameter"] and len(words) >= 4:
            from ollama_core.options import parse_parameter_value

            try:
                value = parse_parameter_value(words[2], " ".join(words[3:]))
            except ValueError as exc:
                click.echo(f"Couldn't set parameter: {exc}")
            else:
                self.options[words[2]] = value
                click.echo(f"Set parameter '{words[2]}' to '{' '.join(words[3:])}'")
        elif words[:2] == ["/set", "verbose"]:
            self.verbose = True
            click.echo("Set 'verbose' mode.")
        elif words[:2] == ["/set", "quiet"]:
            self.verbose = False
            click.echo("Set 'quiet' mode.")
        elif words[:2] in (["/set", "think"], ["/set", "nothink"]):
            self.think = words[1] == "think"
            click.echo(f"Set '{words[1]}' mode.")
        else:
            click.echo(f"Unknown command '{words[0]}'. Type /? for help")
        return True


def _read_message() -> str | None:
    """One message from the terminal: a line, or a \"\"\"-quoted block of lines. None at end of input."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.startswith('"""'):
        return line
    lines = [line[3:]]
    while not lines[-1].endswith('"""'):
        try:
            lines.append(input("... "))
        except EOFError:
            break
    lines[-1] = lines[-1].removesuffix('"""')
    return "\n".join(lines).strip("\n")


def _think_value(value: str | None) -> bool | str | None:
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.lower(), value)


@click.command(help="Run a model")
@click.argument("model")
@click.argument("prompt", nargs=-1)
@click.option("--verbose", is_flag=True, help="Show timings for response")
@click.option("--keepalive", default=None, help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--format", "fmt", default=None, help="Response format (e.g. json)")
@click.option("--think", "think", default=None, is_flag=False, flag_value="true",
              help="Enable thinking: true, false, low, medium or high")
@click.option("--hidethinking", is_flag=True, help="Hide thinking output")
@click.option("--dimensions", type=int, default=None, help="Truncate embeddings to this many dimensions")
def run(model: str, prompt: tuple[str, ...], verbose: bool, keepalive: str | None, fmt: str | None,
        think: str | None, hidethinking: bool, dimensions: int | None) -> None:
    """One-shot with a prompt (or piped stdin), else an interactive chat."""
    if keepalive is not None:
        try:
            parse_duration(keepalive)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--keepalive") from None
    try:
        info = request("POST", "/api/show", json={"model": model}).json()
    except ServerError as exc:
        if "not found" not in exc.message:
            raise
        from ollama_core.cli.transfer import show_progress

        show_progress("/api/pull", {"model": model})
        info = request("POST", "/api/show", json={"model": model}).json()
    capabilities = info.get("capabilities") or []
    text = " ".join(prompt)
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        text = f"{piped}\n{text}".strip() if text else piped.strip()
    if "embedding" in capabilities and "completion" not in capabilities:
        body: dict[str, Any] = {"model": model, "input": text}
        if dimensions:
            body["dimensions"] = dimensions
        result = request("POST", "/api/embed", json=body).json()
        click.echo(json.dumps(result["embeddings"][0] if result["embeddings"] else []))
        return
    session = Session(model, options={}, think=_think_value(think), hide_thinking=hidethinking,
                      keep_alive=keepalive, fmt=fmt, verbose=verbose,
                      multimodal=bool({"vision", "audio"} & set(capabilities)))
    if text:
        session.ask(text)
        return
    load: dict[str, Any] = {"model": model}
    if keepalive is not None:
        load["keep_alive"] = keepalive
    request("POST", "/api/generate", json=load)
    while (line := _read_message()) is not None:
        if not line.strip():
            continue
        if line.startswith("/"):
            if not session.command(line):
                break
            continue
        try:
            session.ask(line)
        except ServerError as exc:
            click.echo(f"Error: {exc.message}", err=True)


def _until(expires_at: str) -> str:
    moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    if seconds > 20 * 365 * 86400:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    if seconds < 60:
        return f"{int(seconds)} seconds from now"
    if seconds < 120:
        return "About a minute from now"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes from now"
    return f"{int(seconds // 3600)} hours from now"


def processor(size: int, size_vram: int) -> str:
    """``100% GPU``, ``100% CPU`` or ``48%/52% CPU/GPU``, as Ollama prints the split."""
    if size <= 0 or size_vram <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(size_vram * 100 / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


@click.command(help="List running models")
def ps() -> None:
    """NAME, ID, SIZE, PROCESSOR, CONTEXT and UNTIL of every loaded model."""
    models = request("GET", "/api/ps").json().get("models", [])
    rows: list[tuple[str, ...]] = [("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")]
    for m in models:
        rows.append((m["name"], m["digest"][:12], human_bytes(m["size"]), processor(m["size"], m.get("size_vram", 0)),
                     str(m.get("context_length", "")), _until(m["expires_at"])))
    click.echo(table(rows))


@click.command(help="Stop a running model")
@click.argument("model")
def stop(model: str) -> None:
    """Unload ``model`` now (an empty generate with ``keep_alive`` 0)."""
    request("POST", "/api/generate", json={"model": model, "keep_alive": 0})
