"""Request checks shared by generate and chat: capabilities, ``think``, ``format``, log-probabilities."""

from __future__ import annotations

import secrets
import string
from typing import Any

from ollama_core.errors import RequestError
from ollama_core.inference import Target

THINK_LEVELS = frozenset({"low", "medium", "high", "max"})
_ID_ALPHABET = string.ascii_lowercase + string.digits


def check_think(target: Target, think: bool | str | None) -> bool:
    """Whether thinking is on: on by default for thinking models; 400 for a model that cannot think."""
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise RequestError(400, f"invalid think value: {think!r} (expected true, false, low, medium, high or max)")
    capable = "thinking" in target.facts.capabilities
    wanted = think not in (False, "") if think is not None else capable
    if wanted and think is not None and not capable:
        raise RequestError(400, f'"{target.requested}" does not support thinking')
    return wanted and capable


def check_format(value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``"json"``, a JSON-schema object, or nothing."""
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise RequestError(400, f'invalid format: "{value}"; expected "json" or a valid JSON Schema object')


def check_top_logprobs(value: int) -> None:
    """Ollama's range for ``top_logprobs``."""
    if not 0 <= value <= 20:
        raise RequestError(400, "top_logprobs must be between 0 and 20")


def require(target: Target, capability: str, message: str) -> None:
    """400 with ``message`` unless the model has ``capability``."""
    if capability not in target.facts.capabilities:
        raise RequestError(400, message)


def tool_call_id() -> str:
    """``call_`` and 8 random lower-case letters or digits, as Ollama names tool calls."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
