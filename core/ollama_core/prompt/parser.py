"""The default streaming output parser: splits generated text into content, thinking and tool calls.

Thinking is the text between an opening and a closing tag (``<think>``/``</think>`` by default)
at the very start of the output, or from the start when the prompt already opened it. Tool calls
are recognised, when the request has tools, in ``<tool_call>{...}</tool_call>`` blocks
(Qwen/Hermes/SmolLM2), after ``[TOOL_CALLS]`` or ``<|python_tag|>`` prefixes, and as a bare JSON
object or array at the start of the content. A call is ``{"name": ..., "arguments": {...}}``
(``parameters`` and JSON-string arguments are accepted). Text that could still become a tag is
held back until it cannot, so pieces may split anywhere.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ollama_core.descriptors import ParsedEvent

DEFAULT_THINKING_TAGS: Final[tuple[str, str]] = ("<think>", "</think>")
"""Opening and closing thinking tags."""

DEFAULT_TOOL_CALL_TAGS: Final[tuple[tuple[str, str], ...]] = (
    ("<tool_call>", "</tool_call>"),
    ("[TOOL_CALLS]", ""),
    ("<|python_tag|>", ""),
)
"""Tool-call markers: an opening tag and its closing tag, or ``""`` when one JSON value follows."""

_THINK_START, _THINK_LEAD, _THINKING, _CONTENT_LEAD, _CONTENT, _TOOL_TAG, _TOOL_JSON = range(7)
_JSON_OPENERS: Final = {"{": '"}', "[": "{]"}


def _overlap(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``tag``."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class _JSONScanner:
    """Finds the end of the JSON object or array opening at ``start``, reading each character once
    however the text arrives."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.pos = start
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.checked = False

    def scan(self, text: str) -> int | None:
        """The end index, ``None`` while incomplete, or ``-1`` when the text cannot be JSON."""
        for i in range(self.pos, len(text)):
            ch = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                continue
            if self.depth == 1 and not self.checked and not ch.isspace():
                self.checked = True
                if ch not in _JSON_OPENERS[text[self.start]]:
                    return -1
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return i + 1
        self.pos = len(text)
        return None


def _decode_values(text: str) -> list[Any] | None:
    """Every JSON value in ``text`` (one, or several separated by whitespace, commas or
    semicolons); Python literals are accepted too. ``None`` if anything else is there."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            try:
                return [ast.literal_eval(text)] if not values else None
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
        values.append(value)
        while pos < len(text) and (text[pos].isspace() or text[pos] in ",;"):
            pos += 1
    return values


class DefaultParser:
    """Parses one response; feed it text pieces, then call :meth:`finish`.

    ``tools`` are the request's tools (tool calls are only parsed when there are some);
    ``think`` turns on thinking extraction, ``thinking_open`` says the prompt already ended with
    the opening tag. Tool calls come out as ``{"function": {"index", "name", "arguments"}}``.
    """

    def __init__(
        self,
        tools: Sequence[Mapping[str, Any]] | None = None,
        think: bool = False,
        *,
        thinking_tags: tuple[str, str] = DEFAULT_THINKING_TAGS,
        thinking_open: bool = False,
        tool_call_tags: Sequence[tuple[str, str]] = DEFAULT_TOOL_CALL_TAGS,
    ) -> None:
        self._open, self._close = thinking_tags
        self._tools_enabled = bool(tools)
        self._tool_names = frozenset(
            str((tool.get("function") or {}).get("name") or "") for tool in tools or () if isinstance(tool, Mapping)
        )
        self._tags = tuple(tool_call_tags) if self._tools_enabled else ()
        self._state = (_THINK_LEAD if thinking_open else _THINK_START) if think else _CONTENT
        self._buffer = ""
        self._tag: tuple[str, str] = ("", "")
        self._search_from = 0
        self._scanner: _JSONScanner | None = None
        self._content_started = False
        self._calls = 0
        self._events: list[ParsedEvent] = []

    def feed(self, text: str) -> list[ParsedEvent]:
        """Parse the next piece of output; returns whatever is now unambiguous."""
        self._buffer += text
        while self._step():
            pass
        return self._take()

    def finish(self) -> list[ParsedEvent]:
        """The output has ended: release everything still held back."""
        while self._step():
            pass
        buffer, self._buffer = self._buffer, ""
        if self._state == _THINKING:
            self._emit("thinking", buffer)
        elif self._state == _TOOL_TAG:
            if not self._emit_calls(buffer, known_only=False):
                self._emit("content", self._tag[0] + buffer)
        elif self._state == _TOOL_JSON:
            if not self._emit_calls(buffer, known_only=not self._tag[0]):
                self._emit("content", self._tag[0] + buffer)
        elif self._state in (_THINK_START, _CONTENT):
            self._emit("content", buffer)
        return self._take()

    def _take(self) -> list[ParsedEvent]:
        events, self._events = self._events, []
        return events

    def _emit(self, kind: str, text: str) -> None:
        if not text:
            return
        if kind == "content" and not text.isspace():
            self._content_started = True
        if self._events and self._events[-1].kind == kind and kind != "tool_call":
            text = self._events[-1].text + text
            self._events.pop()
        self._events.append(ParsedEvent(kind=kind, text=text))

    def _step(self) -> bool:
        """Advance the state machine once; ``False`` when it needs more text."""
        state = self._state
        if state == _THINK_START:
            return self._think_start()
        if state in (_THINK_LEAD, _CONTENT_LEAD):
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return False
            self._state = _THINKING if state == _THINK_LEAD else _CONTENT
            return True
        if state == _THINKING:
            return self._thinking()
        if state == _CONTENT:
            return self._content()
        if state == _TOOL_TAG:
            return self._tool_tag()
        return self._tool_json()

    def _think_start(self) -> bool:
        stripped = self._buffer.lstrip()
        if stripped.startswith(self._open):
            self._buffer = stripped[len(self._open) :]
            self._state = _THINK_LEAD
            return True
        if self._open.startswith(stripped):
            return False
        self._state = _CONTENT
        return True

    def _thinking(self) -> bool:
        end = self._buffer.find(self._close)
        if end >= 0:
            self._emit("thinking", self._buffer[:end])
            self._buffer = self._buffer[end + len(self._close) :]
            self._state = _CONTENT_LEAD
            return True
        keep = _overlap(self._buffer, self._close)
        self._emit("thinking", self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _content(self) -> bool:
        buffer = self._buffer
        if not self._tools_enabled:
            self._emit("content", buffer)
            self._buffer = ""
            return False
        if not self._content_started and buffer.lstrip()[:1] in ("{", "["):
            self._tag = ("", "")
            self._state = _TOOL_JSON
            return True
        found = min(
            ((buffer.find(tag[0]), tag) for tag in self._tags if tag[0] in buffer),
            default=None,
            key=lambda item: item[0],
        )
        if found is not None:
            start, tag = found
            if self._content_started or not buffer[:start].isspace():
                self._emit("content", buffer[:start])
            self._buffer = buffer[start + len(tag[0]) :]
            self._tag = tag
            self._search_from = 0
            self._state = _TOOL_TAG if tag[1] else _TOOL_JSON
            return True
        keep = max((_overlap(buffer, tag[0]) for tag in self._tags), default=0)
        ready = buffer[: len(buffer) - keep]
        if not self._content_started and (not ready or ready.isspace()):
            return False
        self._emit("content", ready)
        self._buffer = buffer[len(buffer) - keep :]
        return False

    def _tool_tag(self) -> bool:
        end = self._buffer.find(self._tag[1], self._search_from)
        if end < 0:
            self._search_from = max(0, len(self._buffer) - len(self._tag[1]) + 1)
            return False
        body = self._buffer[:end]
        self._buffer = self._buffer[end + len(self._tag[1]) :]
        if self._emit_calls(body, known_only=False):
            self._state = _CONTENT_LEAD
        else:
            self._emit("content", self._tag[0] + body + self._tag[1])
            self._state = _CONTENT
        return True

    def _tool_json(self) -> bool:
        buffer = self._buffer
        start = len(buffer) - len(buffer.lstrip())
        if start == len(buffer):
            return False
        if buffer[start] in _JSON_OPENERS:
            self._scanner = self._scanner or _JSONScanner(start)
            end = self._scanner.scan(buffer)
            if end is None:
                return False
        else:
            end = -1
        self._scanner = None
        if end > 0 and self._emit_calls(buffer[start:end], known_only=not self._tag[0]):
            self._buffer = buffer[end:]
            self._state = _CONTENT_LEAD
            return True
        self._content_started = True
        self._emit("content", self._tag[0])
        self._state = _CONTENT
        return True

    def _emit_calls(self, text: str, *, known_only: bool) -> bool:
        """Emit the tool calls ``text`` holds; ``False`` (emitting nothing) unless all of it is calls."""
        values = _decode_values(text)
        if not values:
            return False
        calls: list[dict[str, Any]] = []
        for value in values:
            for item in value if isinstance(value, list) else [value]:
                call = self._call(item, known_only=known_only)
                if call is None:
                    return False
                calls.append(call)
        for call in calls:
            call["function"]["index"] = self._calls
            self._calls += 1
            self._events.append(ParsedEvent(kind="tool_call", tool_call=call))
        return bool(calls)

    def _call(self, item: Any, *, known_only: bool) -> dict[str, Any] | None:
        if not isinstance(item, dict):
            return None
        function = item.get("function")
        if isinstance(function, dict) and "name" in function:
            item = function
        name = item.get("name")
        arguments = item.get("arguments", item.get("parameters"))
        missing_arguments = "arguments" not in item and "parameters" not in item
        if known_only and (missing_arguments or name not in self._tool_names):
            return None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                return None
        if arguments is None:
            arguments = {}
        if not isinstance(name, str) or not name or not isinstance(arguments, dict):
            return None
        return {"function": {"index": 0, "name": name, "arguments": arguments}}
