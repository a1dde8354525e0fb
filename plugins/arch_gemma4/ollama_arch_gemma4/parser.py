"""Streaming parser for Gemma 4 output: content, thinking (``<|channel>``) and tool calls (``<|tool_call>``).

Works on detokenized text in pieces of any size. Whatever could still become a marker (a
trailing ``<|chan``, a half-arrived ``<|"|>`` inside a call) or whitespace that a following
marker would trim is held back until the next piece decides it, so the result never depends on
where the stream was cut. Rules:

- thinking is the text between ``<|channel>`` and ``<channel|>`` minus the channel name line
  ``thought\\n``; trailing whitespace is trimmed; it is dropped when thinking was not requested;
- content is everything else; whitespace before an opening marker and after a closing one is
  trimmed, and a stray ``<channel|>`` is removed;
- a tool call is ``<|tool_call>call:NAME{ARGS}<tool_call|>``; calls are numbered from 0 per
  response; extra ``<tool_call|>`` / ``<|tool_response>`` markers right after a call are ignored;
  a call cut off by the end of generation is still parsed (with repairs) at :meth:`finish`;
- text that only looks like a marker stays content: ``<|tool_call>`` not followed by
  ``call:NAME{``, or a call that cannot be read, is passed through verbatim.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from ollama_core.descriptors import ParsedEvent

from ollama_arch_gemma4.think import thinking_requested
from ollama_arch_gemma4.tool_args import CALL_PREFIX, ArgumentsScanner, ToolCallSyntaxError, parse_call

logger = logging.getLogger(__name__)

CHANNEL_OPEN = "<|channel>"
CHANNEL_CLOSE = "<channel|>"
TOOL_CALL_OPEN = "<|tool_call>"
TOOL_CALL_CLOSE = "<tool_call|>"
TOOL_RESPONSE_OPEN = "<|tool_response>"
CHANNEL_NAME = "thought\n"

_CONTENT_MARKERS = (CHANNEL_OPEN, TOOL_CALL_OPEN, CHANNEL_CLOSE)
_MISSING_CLOSE_FOLLOWERS = (TOOL_CALL_OPEN, TOOL_RESPONSE_OPEN)
"""Markers that end a call whose ``<tool_call|>`` the model left out."""
_AFTER_CALL_NOISE = (TOOL_CALL_CLOSE, TOOL_RESPONSE_OPEN)
_MISSING_CLOSE_LOOKAHEAD = 200
_NAME_STOP = frozenset("<>{}[],\"'`")


class _State(Enum):
    CONTENT = "content"
    THINKING = "thinking"
    TOOL_CALL = "tool_call"
    AFTER_TOOL_CALL = "after_tool_call"


class Gemma4Parser:
    """Parses one response. ``tools`` are the request's tools (their schemas gate one argument
    repair); ``think`` is the request's thinking choice. ``prompt`` is the rendered prompt, when
    known: a prompt ending inside an open thought block (after a tool result with thinking on)
    makes the output start in thinking."""

    def __init__(
        self, tools: Sequence[Mapping[str, Any]] | None, think: bool | str | None, *, prompt: str = ""
    ) -> None:
        self._tools = list(tools or [])
        self._thinking = thinking_requested(think)
        self._buffer = ""
        self._state = _State.CONTENT
        self._strip_leading = False
        self._expect_channel_name = False
        self._scanner: ArgumentsScanner | None = None
        self._space_before_call = ""
        self._index = 0
        self._events: list[ParsedEvent] = []
        if self._thinking and prompt.endswith(CHANNEL_OPEN + CHANNEL_NAME):
            self._state = _State.THINKING

    def feed(self, text: str) -> list[ParsedEvent]:
        """Add a piece of generated text; return what it decided."""
        self._buffer += text
        self._run(final=False)
        return self._take()

    def finish(self) -> list[ParsedEvent]:
        """End of generation: flush held text and any tool call cut off before ``<tool_call|>``."""
        self._run(final=True)
        return self._take()

    def _run(self, *, final: bool) -> None:
        step = {
            _State.CONTENT: self._content,
            _State.THINKING: self._thinking_block,
            _State.TOOL_CALL: self._tool_call,
            _State.AFTER_TOOL_CALL: self._after_tool_call,
        }
        while step[self._state](final):
            pass

    def _content(self, final: bool) -> bool:
        if self._strip_leading:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return False
            self._strip_leading = False
        found = [(self._buffer.find(m), m) for m in _CONTENT_MARKERS]
        hits = [(i, m) for i, m in found if i >= 0]
        if hits:
            index, marker = min(hits)
            before = self._buffer[:index]
            self._emit("content", before.rstrip())
            self._buffer = self._buffer[index + len(marker) :]
            if marker == CHANNEL_OPEN:
                self._state = _State.THINKING
                self._expect_channel_name = True
            elif marker == TOOL_CALL_OPEN:
                self._state = _State.TOOL_CALL
                self._scanner = None
                self._space_before_call = before[len(before.rstrip()) :]
            else:
                self._strip_leading = True
            return True
        if final:
            self._emit("content", self._buffer)
            self._buffer = ""
            return False
        keep = _held_back(self._buffer, _CONTENT_MARKERS)
        self._emit("content", self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _thinking_block(self, final: bool) -> bool:
        if self._expect_channel_name:
            if self._buffer.startswith(CHANNEL_NAME):
                self._buffer = self._buffer[len(CHANNEL_NAME) :]
            elif CHANNEL_NAME.startswith(self._buffer) and not final:
                return False
            self._expect_channel_name = False
        index = self._buffer.find(CHANNEL_CLOSE)
        if index >= 0:
            self._emit("thinking", self._buffer[:index].rstrip())
            self._buffer = self._buffer[index + len(CHANNEL_CLOSE) :]
            self._state = _State.CONTENT
            self._strip_leading = True
            return True
        if final:
            self._emit("thinking", self._buffer.rstrip())
            self._buffer = ""
            return False
        keep = _held_back(self._buffer, (CHANNEL_CLOSE,))
        self._emit("thinking", self._buffer[: len(self._buffer) - keep])
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return False

    def _tool_call(self, final: bool) -> bool:
        buffer = self._buffer
        start = len(buffer) - len(buffer.lstrip())
        head = buffer[start : start + len(CALL_PREFIX)]
        if not CALL_PREFIX.startswith(head):
            return self._not_a_call()
        brace = buffer.find("{", start)
        name_part = buffer[start + len(CALL_PREFIX) : brace if brace >= 0 else len(buffer)]
        if head == CALL_PREFIX and not _plausible_name(name_part, complete=brace >= 0):
            return self._not_a_call()
        if brace < 0:
            if final:
                return self._not_a_call()
            return False
        if self._scanner is None:
            self._scanner = ArgumentsScanner(brace)
        end = self._scanner.scan(buffer)
        if end < 0:
            if final:
                self._finish_call(buffer[start:], "")
            return False
        after = buffer[end:]
        rest = after.lstrip()
        lookahead = _MISSING_CLOSE_LOOKAHEAD + len(TOOL_CALL_CLOSE)
        close = after[:lookahead].find(TOOL_CALL_CLOSE)
        if rest.startswith(_MISSING_CLOSE_FOLLOWERS):
            self._finish_call(buffer[start:end], rest)
        elif close >= 0:
            self._finish_call(buffer[start:end], after[close + len(TOOL_CALL_CLOSE) :])
        elif final or len(after) >= lookahead:
            self._finish_call(buffer[start:end], after)
        else:
            return False
        return True

    def _finish_call(self, call_text: str, remainder: str) -> None:
        try:
            name, arguments = parse_call(call_text, self._tools)
        except ToolCallSyntaxError as exc:
            logger.warning("unreadable Gemma 4 tool call passed through as content: %s", exc)
            self._emit("content", self._space_before_call + TOOL_CALL_OPEN + call_text)
        else:
            self._events.append(
                ParsedEvent(
                    kind="tool_call",
                    tool_call={"function": {"index": self._index, "name": name, "arguments": arguments}},
                )
            )
            self._index += 1
        self._buffer = remainder
        self._scanner = None
        self._state = _State.AFTER_TOOL_CALL

    def _not_a_call(self) -> bool:
        self._emit("content", self._space_before_call + TOOL_CALL_OPEN)
        self._scanner = None
        self._state = _State.CONTENT
        return True

    def _after_tool_call(self, final: bool) -> bool:
        buffer = self._buffer.lstrip()
        while buffer.startswith(_AFTER_CALL_NOISE):
            marker = TOOL_CALL_CLOSE if buffer.startswith(TOOL_CALL_CLOSE) else TOOL_RESPONSE_OPEN
            buffer = buffer[len(marker) :].lstrip()
        self._buffer = buffer
        if not final and (not buffer or any(m.startswith(buffer) for m in _AFTER_CALL_NOISE)):
            return False
        self._state = _State.CONTENT
        return bool(buffer)

    def _emit(self, kind: str, text: str) -> None:
        if not text or (kind == "thinking" and not self._thinking):
            return
        if self._events and self._events[-1].kind == kind:
            text = self._events.pop().text + text
        self._events.append(ParsedEvent(kind=kind, text=text))

    def _take(self) -> list[ParsedEvent]:
        events, self._events = self._events, []
        return events


def _held_back(text: str, markers: Sequence[str]) -> int:
    """How many trailing characters to hold: a possible marker start and the whitespace before it,
    or trailing whitespace (a following marker would trim it)."""
    partial = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                partial = max(partial, size)
                break
    body = text[: len(text) - partial]
    return partial + len(body) - len(body.rstrip())


def _plausible_name(name: str, *, complete: bool) -> bool:
    """Whether ``name`` (text between ``call:`` and ``{``, or what has arrived of it) can be a tool name."""
    stripped = name.strip()
    if complete and not stripped:
        return False
    return not any(c in _NAME_STOP or c.isspace() for c in stripped)
