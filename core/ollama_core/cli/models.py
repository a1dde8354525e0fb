"""``ollama list``, ``show``, ``cp`` and ``rm``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ollama_core.cli.client import request
from ollama_core.cli.formatting import human_bytes, human_since, table


@click.command("list", help="List models")
def list_models() -> None:
    """Print NAME, ID, SIZE and MODIFIED for every local model."""
    models = request("GET", "/api/tags").json().get("models", [])
    rows: list[tuple[str, ...]] = [("NAME", "ID", "SIZE", "MODIFIED")]
    for m in models:
        modified = datetime.fromisoformat(m["modified_at"].replace("Z", "+00:00"))
        rows.append((m["name"], m["digest"][:12], human_bytes(m["size"]), human_since(modified)))
    click.echo(table(rows))


def _section(title: str, rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    body = "\n".join(f"    {k.ljust(width)}    {v}".rstrip() for k, v in rows)
    return f"  {title}\n{body}\n"


def _describe(info: dict[str, Any]) -> str:
    details = info.get("details") or {}
    model_info = info.get("model_info") or {}
    arch = model_info.get("general.architecture") or details.get("family", "")
    rows = [("architecture", str(arch)), ("parameters", str(details.get("parameter_size", "")))]
    ctx = model_info.get(f"{arch}.context_length") or details.get("context_length")
    emb = model_info.get(f"{arch}.embedding_length") or details.get("embedding_length")
    if ctx:
        rows.append(("context length", str(ctx)))
    if emb:
        rows.append(("embedding length", str(emb)))
    rows.append(("quantization", str(details.get("quantization_level", ""))))
    if info.get("requires"):
        rows.append(("requires", str(info["requires"])))
    parts = [_section("Model", rows)]
    if info.get("capabilities"):
        parts.append(_section("Capabilities", [(c, "") for c in info["capabilities"]]))
    if info.get("parameters"):
        params = []
        for line in info["parameters"].splitlines():
            key, _, value = line.partition(" ")
            params.append((key, value.strip()))
        parts.append(_section("Parameters", params))
    if info.get("system"):
        parts.append(_section("System", [(info["system"].strip().splitlines()[0][:80], "")]))
    if info.get("license"):
        first = [line for line in info["license"].strip().splitlines() if line.strip()][:2]
        parts.append(_section("License", [(line.strip(), "") for line in first]))
    return "\n".join(parts)


@click.command(help="Show information for a model")
@click.argument("model")
@click.option("--modelfile", "field", flag_value="modelfile", help="Show Modelfile of a model")
@click.option("--parameters", "field", flag_value="parameters", help="Show parameters of a model")
@click.option("--template", "field", flag_value="template", help="Show template of a model")
@click.option("--system", "field", flag_value="system", help="Show system message of a model")
@click.option("--license", "field", flag_value="license", help="Show license of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
def show(model: str, field: str | None, verbose: bool) -> None:
    """Print a summary, or one field with a flag."""
    info = request("POST", "/api/show", json={"model": model, "verbose": verbose}).json()
    if field:
        click.echo(info.get(field, ""))
        return
    click.echo(_describe(info))
    if verbose:
        metadata = info.get("model_info") or {}
        click.echo(_section("Metadata", [(k, str(v)) for k, v in sorted(metadata.items())]))


@click.command(help="Copy a model")
@click.argument("source")
@click.argument("destination")
def copy(source: str, destination: str) -> None:
    """Give ``source`` a second name."""
    request("POST", "/api/copy", json={"source": source, "destination": destination})
    click.echo(f"copied '{source}' to '{destination}'")


@click.command(help="Remove a model")
@click.argument("models", nargs=-1, required=True)
def remove(models: tuple[str, ...]) -> None:
    """Delete each named model."""
    for name in models:
        request("DELETE", "/api/delete", json={"model": name})
        click.echo(f"deleted '{name}'")
