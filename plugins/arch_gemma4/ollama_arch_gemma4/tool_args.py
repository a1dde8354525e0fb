"""Gemma 4 tool-call syntax: ``call:NAME{key:value,...}`` -> name and arguments.

Values are written as the chat template writes them: strings between ``<|"|>`` delimiters with
nothing escaped inside (quotes, backslashes, newlines and control characters are literal), bare
object keys, ``true``/``false``/``null``, numbers, nested objects and arrays. Plain JSON strings
(``"..."`` with JSON escapes) are accepted too. When the strict reading fails, a few repairs for
common model slips are tried: single-quoted values, an unterminated ``<|"|>`` string, a missing
final ``}``, and (only where the tool's schema says the argument is a string) a raw unquoted value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

STRING_DELIMITER = '<|"|>'
CALL_PREFIX = "call:"

_QUOTED = re.compile(r"<\|\"\|>(.*?)<\|\"\|>", re.DOTALL)
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_KEY = re.compile(r"[\w$@.\-]+")


class ToolCallSyntaxError(ValueError):
    """The text is not a Gemma 4 tool call, even after repairs."""


class ArgumentsScanner:
    """Finds, incrementally, where a call's argument object ends, skipping over strings.

    Feed it the growing buffer; it resumes where it stopped and never splits a ``<|"|>``
    delimiter that is still arriving.
    """

    def __init__(self, start: int) -> None:
        self._pos = start
        self._depth = 0
        self._in_string = False
        self._in_json_string = False
        self._escaped = False
        self.end = -1

    def scan(self, text: str) -> int:
        """Advance over ``text``; return the index just past the closing ``}``, or -1 if not there yet."""
        i = self._pos
        size = len(text)
        while i < size and self.end < 0:
            if text.startswith(STRING_DELIMITER, i):
                if not self._in_json_string:
                    self._in_string = not self._in_string
                i += len(STRING_DELIMITER)
                continue
            if text[i] == "<" and STRING_DELIMITER.startswith(text[i:]):
                break
            char = text[i]
            i += 1
            if self._in_string:
                continue
            if self._in_json_string:
                if char == '"' and not self._escaped:
                    self._in_json_string = False
                self._escaped = char == "\\" and not self._escaped
                continue
            if char == '"':
                self._in_json_string = True
                self._escaped = False
            elif char in "{[":
                self._depth += 1
            elif char in "}]" and self._depth > 0:
                self._depth -= 1
                if self._depth == 0 and char == "}":
                    self.end = i
        self._pos = i
        return self.end


def parse_call(text: str, tools: Sequence[Mapping[str, Any]] | None = None) -> tuple[str, dict[str, Any]]:
    """Parse ``call:NAME{...}``; text after the argument object's closing brace is ignored."""
    if not text.startswith(CALL_PREFIX):
        raise ToolCallSyntaxError(f"expected {CALL_PREFIX!r}")
    brace = text.find("{")
    if brace < 0:
        raise ToolCallSyntaxError("expected '{' after the tool name")
    name = text[len(CALL_PREFIX) : brace].strip()
    if not name:
        raise ToolCallSyntaxError("empty tool name")
    end = ArgumentsScanner(brace).scan(text)
    arguments = text[brace:end] if end >= 0 else text[brace:]
    return name, parse_arguments(arguments, _properties(tools, name))


def parse_arguments(text: str, properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Arguments object text (``{...}``) -> dict, trying repairs when the strict reading fails.

    ``properties`` is the tool's JSON-schema ``properties``; it only gates the raw-string repair.
    """
    for candidate in _candidates(text, properties or {}):
        try:
            value = json.loads(to_json(candidate), strict=False)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ToolCallSyntaxError(f"cannot read tool arguments {text!r}")


def to_json(text: str) -> str:
    """Rewrite Gemma 4 value syntax as JSON: ``<|"|>`` strings become JSON strings, bare keys are quoted."""
    strings: list[str] = []

    def stash(match: re.Match[str]) -> str:
        strings.append(match[1])
        return f"\x00{len(strings) - 1}\x00"

    stashed = _quote_keys(_QUOTED.sub(stash, text))
    return _PLACEHOLDER.sub(lambda m: json.dumps(strings[int(m[1])], ensure_ascii=False), stashed)


def _quote_keys(text: str) -> str:
    out: list[str] = []
    i = 0
    size = len(text)
    while i < size:
        char = text[i]
        if char == '"':
            end = _json_string_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        out.append(char)
        i += 1
        if char not in "{,":
            continue
        space_end = i
        while space_end < size and text[space_end].isspace():
            space_end += 1
        key = _KEY.match(text, space_end)
        if key is None:
            continue
        colon = key.end()
        while colon < size and text[colon].isspace():
            colon += 1
        if colon < size and text[colon] == ":":
            out.append(text[i:space_end] + json.dumps(key[0]) + text[key.end() : colon + 1])
            i = colon + 1
    return "".join(out)


def _json_string_end(text: str, start: int) -> int:
    escaped = False
    for i in range(start + 1, len(text)):
        char = text[i]
        if char == '"' and not escaped:
            return i + 1
        escaped = char == "\\" and not escaped
    return len(text)


def _candidates(text: str, properties: Mapping[str, Any]) -> Iterator[str]:
    yield text
    fixed = _close_string(_single_quotes(text))
    if fixed != text:
        yield _close_object(fixed)
    raw = _wrap_raw_string(text, properties)
    if raw is not None:
        yield _close_object(_close_string(_single_quotes(raw)))


def _single_quotes(text: str) -> str:
    """``key:'value'`` -> ``key:<|"|>value<|"|>`` outside strings."""
    out: list[str] = []
    i = 0
    size = len(text)
    while i < size:
        if text.startswith(STRING_DELIMITER, i):
            close = text.find(STRING_DELIMITER, i + len(STRING_DELIMITER))
            end = size if close < 0 else close + len(STRING_DELIMITER)
            out.append(text[i:end])
            i = end
            continue
        char = text[i]
        if char == '"':
            end = _json_string_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        out.append(char)
        i += 1
        if char != ":":
            continue
        start = i
        while start < size and text[start].isspace():
            start += 1
        if start >= size or text[start] != "'":
            continue
        close = start + 1
        while close < size and (text[close] != "'" or text[close - 1] == "\\"):
            close += 1
        if close >= size:
            continue
        out.append(text[i:start] + STRING_DELIMITER + text[start + 1 : close] + STRING_DELIMITER)
        i = close + 1
        if text.startswith(STRING_DELIMITER, i):
            i += len(STRING_DELIMITER)
    return "".join(out)


def _close_string(text: str) -> str:
    """Close an unterminated ``<|"|>`` string, before a final ``}``/``]`` when there is one."""
    if text.count(STRING_DELIMITER) % 2 == 0:
        return text
    end = len(text.rstrip())
    if end and text[end - 1] in "}]":
        end -= 1
    return text[:end] + STRING_DELIMITER + text[end:]


def _close_object(text: str) -> str:
    stripped = text.rstrip()
    if not text.lstrip().startswith("{") or stripped.endswith("}"):
        return text
    return stripped + "}" + text[len(stripped) :]


def _wrap_raw_string(text: str, properties: Mapping[str, Any]) -> str | None:
    """Quote the first raw (unquoted, unstructured) value of a string-typed argument, up to the next
    declared argument or the end of the object."""
    for key in (k for k, schema in properties.items() if _accepts_string(schema)):
        found = re.search(r"[{,]\s*" + re.escape(key) + r"\s*:\s*", text)
        if found is None:
            continue
        start = found.end()
        if start >= len(text) or text.startswith(STRING_DELIMITER, start) or text[start] in "'\"{[":
            continue
        end = len(text.rstrip())
        if end and text[end - 1] == "}":
            end -= 1
        other_keys = "|".join(re.escape(k) for k in properties if k != key)
        if other_keys:
            following = re.compile(r",\s*(?:" + other_keys + r")\s*:").search(text, start, end)
            if following is not None:
                end = following.start()
        return text[:start] + STRING_DELIMITER + text[start:end] + STRING_DELIMITER + text[end:]
    return None


def _properties(tools: Sequence[Mapping[str, Any]] | None, name: str) -> Mapping[str, Any]:
    """The JSON-schema ``properties`` of the tool called ``name``, or an empty mapping."""
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or function.get("name") != name:
            continue
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        return properties if isinstance(properties, Mapping) else {}
    return {}


def _accepts_string(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if any(isinstance(k, str) and k.lower() == "string" for k in kinds):
        return True
    return any(_accepts_string(option) for option in schema.get("anyOf") or [])
