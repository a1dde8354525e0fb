"""The default output parser: thinking, tool calls and content, whatever the piece boundaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ollama_core.descriptors import ParsedEvent
from ollama_core.prompt.parser import DefaultParser

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]

Event = tuple[str, Any]


def call(index: int, name: str, arguments: Mapping[str, Any]) -> Event:
    return ("tool_call", {"function": {"index": index, "name": name, "arguments": dict(arguments)}})


def normalise(events: Sequence[ParsedEvent]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        if event.kind == "tool_call":
            out.append(("tool_call", event.tool_call))
        elif out and out[-1][0] == event.kind:
            out[-1] = (event.kind, out[-1][1] + event.text)
        else:
            out.append((event.kind, event.text))
    return out


def parse(pieces: Sequence[str], **options: Any) -> list[Event]:
    parser = DefaultParser(**options)
    events: list[ParsedEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.finish()
    assert all(e.text or e.kind == "tool_call" for e in events), "no empty events"
    return normalise(events)


CASES: list[tuple[str, str, dict[str, Any], list[Event]]] = [
    ("plain", "Hello, world!", {}, [("content", "Hello, world!")]),
    ("plain-with-tools", "The answer is 4.", {"tools": TOOLS}, [("content", "The answer is 4.")]),
    (
        "thinking",
        "<think>\nLet me see.\n</think>\n\nIt is 4.",
        {"think": True},
        [("thinking", "Let me see.\n"), ("content", "It is 4.")],
    ),
    ("thinking-leading-space", "  <think>a</think>b", {"think": True}, [("thinking", "a"), ("content", "b")]),
    ("thinking-empty", "<think></think>answer", {"think": True}, [("content", "answer")]),
    (
        "thinking-skipped",
        "No thoughts <think>here</think>",
        {"think": True},
        [("content", "No thoughts <think>here</think>")],
    ),
    ("thinking-off", "<think>x</think>y", {}, [("content", "<think>x</think>y")]),
    (
        "thinking-open",
        "planning...</think>\ndone",
        {"think": True, "thinking_open": True},
        [("thinking", "planning..."), ("content", "done")],
    ),
    ("thinking-unclosed", "<think>still going", {"think": True}, [("thinking", "still going")]),
    (
        "thinking-custom-tags",
        "<|channel>thought\nhm<channel|>ok",
        {"think": True, "thinking_tags": ("<|channel>thought", "<channel|>")},
        [("thinking", "hm"), ("content", "ok")],
    ),
    ("thinking-partial-tag-released", "<thinking about it", {"think": True}, [("content", "<thinking about it")]),
    (
        "think-close-lookalike",
        "<think>a </thin b</think>c",
        {"think": True},
        [("thinking", "a </thin b"), ("content", "c")],
    ),
    (
        "qwen-tool-call",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "Paris", "unit": "c"})],
    ),
    (
        "qwen-two-calls",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "A"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "A"}), call(1, "get_time", {})],
    ),
    (
        "content-then-call",
        'Let me check. <tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>',
        {"tools": TOOLS},
        [("content", "Let me check. "), call(0, "get_time", {"tz": "UTC"})],
    ),
    (
        "call-then-content",
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n\nDone.',
        {"tools": TOOLS},
        [call(0, "get_time", {}), ("content", "Done.")],
    ),
    (
        "smollm2-list",
        '<tool_call>[{"name": "get_weather", "arguments": {"city": "A"}}, '
        '{"name": "get_time", "arguments": {"tz": "CET"}}]</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "A"}), call(1, "get_time", {"tz": "CET"})],
    ),
    (
        "string-arguments",
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"B\\"}"}</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "B"})],
    ),
    (
        "parameters-key",
        '<tool_call>{"name": "get_time", "parameters": {"tz": "PST"}}</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_time", {"tz": "PST"})],
    ),
    (
        "python-literal",
        "<tool_call>{'name': 'get_time', 'arguments': {'tz': 'PST'}}</tool_call>",
        {"tools": TOOLS},
        [call(0, "get_time", {"tz": "PST"})],
    ),
    (
        "unclosed-tag-at-end",
        '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}',
        {"tools": TOOLS},
        [call(0, "get_time", {"tz": "UTC"})],
    ),
    (
        "bad-json-in-tag",
        "<tool_call>not json</tool_call> ok",
        {"tools": TOOLS},
        [("content", "<tool_call>not json</tool_call> ok")],
    ),
    (
        "tag-without-tools",
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
        {},
        [("content", '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')],
    ),
    (
        "bare-json",
        '\n{"name": "get_weather", "arguments": {"city": "Rome"}}',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "Rome"})],
    ),
    (
        "bare-json-array",
        '[{"name": "get_weather", "arguments": {"city": "A"}}, {"name": "get_time", "parameters": {}}]',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "A"}), call(1, "get_time", {})],
    ),
    ("bare-json-not-a-call", '{"name": "Bob", "age": 3}', {"tools": TOOLS}, [("content", '{"name": "Bob", "age": 3}')]),
    (
        "bare-json-unknown-tool",
        '{"name": "launch", "arguments": {}}',
        {"tools": TOOLS},
        [("content", '{"name": "launch", "arguments": {}}')],
    ),
    ("bare-brace-text", "{ this is not json } at all", {"tools": TOOLS}, [("content", "{ this is not json } at all")]),
    (
        "json-later-is-content",
        'Result: {"name": "get_time", "arguments": {}}',
        {"tools": TOOLS},
        [("content", 'Result: {"name": "get_time", "arguments": {}}')],
    ),
    (
        "bare-json-without-tools",
        '{"name": "get_time", "arguments": {}}',
        {},
        [("content", '{"name": "get_time", "arguments": {}}')],
    ),
    (
        "mistral-prefix",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
        {"tools": TOOLS},
        [call(0, "get_weather", {"city": "Oslo"})],
    ),
    (
        "python-tag",
        '<|python_tag|>{"name": "get_time", "parameters": {"tz": "UTC"}}',
        {"tools": TOOLS},
        [call(0, "get_time", {"tz": "UTC"})],
    ),
    (
        "tag-lookalikes",
        "a <tool b <tool_cal c [TOOL d <|py",
        {"tools": TOOLS},
        [("content", "a <tool b <tool_cal c [TOOL d <|py")],
    ),
    (
        "json-with-braces-in-strings",
        '<tool_call>{"name": "get_weather", "arguments": {"q": "}{]\\"["}}</tool_call>',
        {"tools": TOOLS},
        [call(0, "get_weather", {"q": '}{]"['})],
    ),
    (
        "thinking-then-call",
        '<think>need weather</think>\n<tool_call>{"name": "get_weather", "arguments": {"city": "X"}}</tool_call>',
        {"tools": TOOLS, "think": True},
        [("thinking", "need weather"), call(0, "get_weather", {"city": "X"})],
    ),
    ("unicode", "<think>é🙂</think>ünïcode 🚀", {"think": True}, [("thinking", "é🙂"), ("content", "ünïcode 🚀")]),
    ("whitespace-only", "  \n", {"tools": TOOLS}, [("content", "  \n")]),
]


@pytest.mark.parametrize(("text", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_whole_text(text: str, options: dict[str, Any], expected: list[Event]) -> None:
    assert parse([text], **options) == expected


@pytest.mark.parametrize(("text", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_character_at_a_time(text: str, options: dict[str, Any], expected: list[Event]) -> None:
    assert parse(list(text), **options) == expected


@pytest.mark.parametrize(("text", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_split_at_every_position(text: str, options: dict[str, Any], expected: list[Event]) -> None:
    for cut in range(len(text) + 1):
        assert parse([text[:cut], text[cut:]], **options) == expected, f"split at {cut}"


@given(
    case=st.sampled_from(CASES),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_random_splits(case: tuple[str, str, dict[str, Any], list[Event]], cuts: list[int]) -> None:
    _, text, options, expected = case
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert parse(pieces, **options) == expected


def test_content_streams_without_waiting() -> None:
    parser = DefaultParser(tools=TOOLS, think=True)
    assert parser.feed("<think>") == []
    assert normalise(parser.feed("abc")) == [("thinking", "abc")]
    assert normalise(parser.feed("de</th")) == [("thinking", "de")]
    assert normalise(parser.feed("ink>Hello <to")) == [("content", "Hello ")]
    assert normalise(parser.feed("day")) == [("content", "<today")]
    assert parser.finish() == []


def test_tool_call_indices_continue_across_blocks() -> None:
    parser = DefaultParser(tools=TOOLS)
    first = parser.feed('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    second = parser.feed('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    assert [e.tool_call["function"]["index"] for e in first + second if e.tool_call] == [0, 1]


def test_argument_order_is_preserved() -> None:
    (event,) = DefaultParser(tools=TOOLS).feed(
        '<tool_call>{"name": "get_time", "arguments": {"z": 1, "a": 2}}</tool_call>'
    )
    assert event.tool_call is not None
    assert list(event.tool_call["function"]["arguments"]) == ["z", "a"]
