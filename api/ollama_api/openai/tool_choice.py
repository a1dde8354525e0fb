"""``tool_choice``, enforced by constrained decoding.

``none`` withholds the tools from the model; ``auto`` (the default) leaves the choice to it. For
``required`` and a named function the output is constrained to calls to the allowed tools: in the
model's own tool-call syntax when its parser offers a grammar for it (``ParserSpec.tool_grammar``),
else by a JSON schema (passed to the runner as ``format``) to exactly one call object,
``{"name": <one of the allowed names>, "arguments": <that tool's parameters>}``, which the default
parser recognises at the start of a tools-enabled reply. The tools are still rendered into the
prompt, so the model sees their descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ollama_core.errors import RequestError

MODES = frozenset({"auto", "none", "required"})


@dataclass(frozen=True)
class ToolPlan:
    """What a request's ``tool_choice`` means for one generation: the tools to render, and for a
    forced call the tools it must call and the JSON-schema fallback constraint."""

    tools: list[dict[str, Any]] | None
    format: dict[str, Any] | None = None
    forced: list[dict[str, Any]] | None = None


def _name(tool: Mapping[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name") or "")


def call_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema of one call to ``tool``."""
    parameters = (tool.get("function") or {}).get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": _name(tool)}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


def plan_tools(tools: Sequence[Mapping[str, Any]] | None, mode: str | None, function: str | None = None) -> ToolPlan:
    """The tools to offer and the constraint for ``mode`` (``auto``, ``none``, ``required``, or a
    forced ``function`` name, given with ``mode`` ``None``)."""
    offered = [dict(t) for t in tools] if tools else None
    if function is not None:
        if not offered:
            raise RequestError(400, "tool_choice names a function but no tools were given")
        chosen = [t for t in offered if _name(t) == function]
        if not chosen:
            raise RequestError(400, f"tool_choice names function '{function}', which is not among the tools")
        return ToolPlan(offered, call_schema(chosen[0]), chosen[:1])
    if mode is None or mode == "auto":
        return ToolPlan(offered)
    if mode not in MODES:
        raise RequestError(400, f"invalid tool_choice: '{mode}' (expected 'none', 'auto' or 'required')")
    if mode == "none":
        return ToolPlan(None)
    if not offered:
        raise RequestError(400, "tool_choice 'required' needs at least one tool")
    schemas = [call_schema(t) for t in offered]
    return ToolPlan(offered, schemas[0] if len(schemas) == 1 else {"anyOf": schemas}, offered)
