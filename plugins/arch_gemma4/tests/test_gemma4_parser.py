"""The streaming parser: every case whole, split in two at every byte, byte by byte, and in random pieces."""

from __future__ import annotations

import codecs
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from ollama_core.descriptors import ParsedEvent

from ollama_arch_gemma4.parser import Gemma4Parser
from ollama_arch_gemma4.tool_args import ToolCallSyntaxError, parse_arguments, parse_call

Q = '<|"|>'
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            },
        },
    }
]


@dataclass(frozen=True)
class Case:
    """Model output and what the parser must make of it."""

    text: str
    content: str = ""
    thinking: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    think: bool = False
    tools: list[dict[str, Any]] | None = None
    prompt: str = ""


def call(name: str, args: str) -> str:
    return f"<|tool_call>call:{name}{args}<tool_call|>"


CASES: dict[str, Case] = {
    "simple_content": Case("This is a simple response.", content="This is a simple response."),
    "thinking_then_content": Case(
        "<|channel>thought\nLet me think about this...<channel|>The answer is 42.",
        content="The answer is 42.",
        thinking="Let me think about this...",
        think=True,
    ),
    "multiple_thinking_blocks": Case(
        "<|channel>first thought<channel|><|channel>second thought<channel|>Final answer.",
        content="Final answer.",
        thinking="first thoughtsecond thought",
        think=True,
    ),
    "thinking_only": Case("<|channel>just thinking<channel|>", thinking="just thinking", think=True),
    "whitespace_around_tags": Case(
        "<|channel>thought\n  step one\nstep two \n\n<channel|>\n\n  Answer: yes \n",
        content="Answer: yes \n",
        thinking="  step one\nstep two",
        think=True,
    ),
    "thinking_disabled_discards_channel": Case(
        "<|channel>this is not thinking<channel|>actual content", content="actual content"
    ),
    "empty_thought_block_and_stray_close": Case(
        "<|channel>thought\n<channel|>Hi there.<channel|>", content="Hi there."
    ),
    "tool_call_simple": Case(
        call("get_weather", f"{{location:{Q}Paris{Q}}}"), calls=[("get_weather", {"location": "Paris"})]
    ),
    "tool_call_scalars": Case(
        call("set", f"{{count:42,ratio:-2.5e-3,enabled:true,off:false,value:null,label:{Q}1{Q}}}"),
        calls=[("set", {"count": 42, "ratio": -2.5e-3, "enabled": True, "off": False, "value": None, "label": "1"})],
    ),
    "tool_call_nested": Case(
        call(
            "process",
            f"{{config:{{enabled:true,name:{Q}test{Q},inner:{{deep:[1,[2,3],{{x:null}}]}}}},"
            f'items:[{Q}a{Q},{Q}b "quoted"{Q}]}}',
        ),
        calls=[
            (
                "process",
                {
                    "config": {"enabled": True, "name": "test", "inner": {"deep": [1, [2, 3], {"x": None}]}},
                    "items": ["a", 'b "quoted"'],
                },
            )
        ],
    ),
    "multiline_string_arg": Case(call("bash", f"{{command:{Q}date\n{Q}}}"), calls=[("bash", {"command": "date\n"})]),
    "escaped_quotes_stay_literal": Case(
        call("search", f'{{query:{Q}say \\"hello\\" and "bye"{Q}}}'),
        calls=[("search", {"query": 'say \\"hello\\" and "bye"'})],
    ),
    "windows_path": Case(
        call("open_file", f"{{path:{Q}C:\\users\\bob\\file.txt{Q}}}"),
        calls=[("open_file", {"path": "C:\\users\\bob\\file.txt"})],
    ),
    "quoted_url_and_unicode": Case(
        call("exec", f'{{command:{Q}fetch "https://ollama.com/library/gemma4" --name Grüße 👋{Q}}}'),
        calls=[("exec", {"command": 'fetch "https://ollama.com/library/gemma4" --name Grüße 👋'})],
    ),
    "control_characters": Case(
        call("write", f"{{data:{Q}a\x01b\x1b[0m\r\n\tz\\u2603{Q}}}"),
        calls=[("write", {"data": "a\x01b\x1b[0m\r\n\tz\\u2603"})],
    ),
    "markers_inside_strings": Case(
        call("code", f'{{src:{Q}x = "<tool_call|>" + \'<|channel>\' + "}}{{]" # <|tool_call>{Q},n:1}}'),
        calls=[("code", {"src": 'x = "<tool_call|>" + \'<|channel>\' + "}{]" # <|tool_call>', "n": 1})],
    ),
    "mixed_json_and_gemma_strings": Case(
        call("search", f'{{query:"raw \\"quoted\\"\\n",note:{Q}gemma "quoted"{Q}}}'),
        calls=[("search", {"query": 'raw "quoted"\n', "note": 'gemma "quoted"'})],
    ),
    "array_of_objects_with_markdown": Case(
        call(
            "edit",
            f'{{edits:[\n  {{newText:{Q}# Title\n\nUse "nvfp4" only.\n{Q},\n   oldText:{Q}# Title\n{Q}}},\n'
            f"  {{newText:{Q}## 14.\n{Q},oldText:{Q}## 14. old\\n{Q}}}\n]}}",
        ),
        calls=[
            (
                "edit",
                {
                    "edits": [
                        {"newText": '# Title\n\nUse "nvfp4" only.\n', "oldText": "# Title\n"},
                        {"newText": "## 14.\n", "oldText": "## 14. old\\n"},
                    ]
                },
            )
        ],
    ),
    "json_quoted_keys": Case(
        call("get_weather", '{"city": "Oslo", "days": 2}'), calls=[("get_weather", {"city": "Oslo", "days": 2})]
    ),
    "parallel_calls": Case(
        call("get_weather", f"{{city:{Q}Paris{Q}}}") + call("get_weather", f"{{city:{Q}London{Q}}}"),
        calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "London"})],
    ),
    "thinking_then_tool_call": Case(
        "<|channel>thought\nI need the weather<channel|>" + call("get_weather", f"{{city:{Q}Paris{Q}}}"),
        thinking="I need the weather",
        calls=[("get_weather", {"city": "Paris"})],
        think=True,
    ),
    "content_then_tool_call": Case(
        "Let me check that for you. \n" + call("get_weather", f"{{city:{Q}Paris{Q}}}"),
        content="Let me check that for you.",
        calls=[("get_weather", {"city": "Paris"})],
    ),
    "noise_after_call": Case(
        call("f", "{a:1}") + "<tool_call|>\n<|tool_response>",
        calls=[("f", {"a": 1})],
    ),
    "content_after_call": Case(call("f", "{a:1}") + "\n\nDone.", content="Done.", calls=[("f", {"a": 1})]),
    "missing_close_then_next_call": Case(
        "<|tool_call>call:a{x:1}<|tool_call>call:b{y:2}<tool_call|>", calls=[("a", {"x": 1}), ("b", {"y": 2})]
    ),
    "flush_without_close_tag": Case(
        f'<|tool_call>call:search{{query:{Q}say "hello"{Q}}}', calls=[("search", {"query": 'say "hello"'})]
    ),
    "flush_unterminated_string": Case(
        f"<|tool_call>call:note{{text:{Q}line one\nline two", calls=[("note", {"text": "line one\nline two"})]
    ),
    "single_quoted_value": Case(
        "<|tool_call>call:get_weather{city:'Paris'}<tool_call|>", calls=[("get_weather", {"city": "Paris"})]
    ),
    "raw_string_value_with_schema": Case(
        "<|tool_call>call:get_weather{city:New York,days:3}<tool_call|>",
        calls=[("get_weather", {"city": "New York", "days": 3})],
        tools=WEATHER_TOOLS,
    ),
    "continuation_after_tool_result": Case(
        "The user asked for files.<channel|>go.mod and go.sum",
        content="go.mod and go.sum",
        thinking="The user asked for files.",
        think=True,
        prompt='<|tool_response>response:ls{value:<|"|>go.mod<|"|>}<tool_response|><|channel>thought\n',
    ),
    "look_alike_markers": Case(
        'Use <|chan, <channel, <tool_call|>, {a:1}, <|"|> and a < b or <|tool',
        content='Use <|chan, <channel, <tool_call|>, {a:1}, <|"|> and a < b or <|tool',
    ),
    "tool_call_marker_without_call": Case(
        "See <|tool_call>hello world and <|tool_call>call:no pe{}",
        content="See <|tool_call>hello world and <|tool_call>call:no pe{}",
    ),
    "unreadable_call_passes_through": Case(
        "Try <|tool_call>call:f{a:<<>>}<tool_call|>", content="Try <|tool_call>call:f{a:<<>>}"
    ),
    "unicode_content": Case("Grüße 👋 — 東京\n", content="Grüße 👋 — 東京\n"),
}


def _collect(events: Iterable[ParsedEvent]) -> tuple[str, str, list[tuple[int, str, dict[str, Any]]]]:
    content, thinking, calls = "", "", []
    for event in events:
        if event.kind == "content":
            content += event.text
        elif event.kind == "thinking":
            thinking += event.text
        else:
            assert event.kind == "tool_call" and event.tool_call is not None
            function = event.tool_call["function"]
            calls.append((function["index"], function["name"], function["arguments"]))
    return content, thinking, calls


def _run(case: Case, pieces: Iterable[bytes]) -> tuple[str, str, list[tuple[int, str, dict[str, Any]]]]:
    parser = Gemma4Parser(case.tools, case.think, prompt=case.prompt)
    decoder = codecs.getincrementaldecoder("utf-8")()
    events: list[ParsedEvent] = []
    for piece in pieces:
        events += parser.feed(decoder.decode(piece))
    events += parser.feed(decoder.decode(b"", final=True))
    events += parser.finish()
    return _collect(events)


def _expected(case: Case) -> tuple[str, str, list[tuple[int, str, dict[str, Any]]]]:
    return case.content, case.thinking, [(i, name, args) for i, (name, args) in enumerate(case.calls)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_whole(name: str) -> None:
    case = CASES[name]
    assert _run(case, [case.text.encode()]) == _expected(case)


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_at_every_byte(name: str) -> None:
    case = CASES[name]
    data = case.text.encode()
    expected = _expected(case)
    for cut in range(1, len(data)):
        assert _run(case, [data[:cut], data[cut:]]) == expected, f"split at byte {cut}"
    assert _run(case, [data[i : i + 1] for i in range(len(data))]) == expected, "byte by byte"


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_pieces(name: str) -> None:
    case = CASES[name]
    data = case.text.encode()
    rng = random.Random(name)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), k=min(4, len(data) - 1)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert _run(case, pieces) == _expected(case), cuts


def test_streaming_emits_early() -> None:
    parser = Gemma4Parser(None, True)
    assert parser.feed("<|channel>thought\nStep") == [ParsedEvent(kind="thinking", text="Step")]
    assert parser.feed(" two <chan") == [ParsedEvent(kind="thinking", text=" two")]
    assert parser.feed("nel|>Hello") == [ParsedEvent(kind="content", text="Hello")]
    assert parser.feed(" world <|tool") == [ParsedEvent(kind="content", text=" world")]
    assert parser.feed("_call>call:f{a:1}") == []
    events = parser.feed("<tool_call|>")
    assert [e.kind for e in events] == ["tool_call"]
    assert parser.finish() == []


def test_think_levels_enable_thinking() -> None:
    text = "<|channel>thought\nhmm<channel|>ok"
    assert _collect(Gemma4Parser(None, "high").feed(text))[1] == "hmm"
    assert _collect(Gemma4Parser(None, None).feed(text))[1] == ""


def test_parse_call_and_arguments() -> None:
    assert parse_call(f"call:f {{a:{Q}x{Q}}} trailing") == ("f", {"a": "x"})
    assert parse_arguments("{ a : 1 , b:[ 1 ,2 ] }") == {"a": 1, "b": [1, 2]}
    with pytest.raises(ToolCallSyntaxError):
        parse_call("call:{a:1}")
    with pytest.raises(ToolCallSyntaxError):
        parse_arguments("{a:<<>>}")
