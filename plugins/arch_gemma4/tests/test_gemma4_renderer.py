"""The renderer against the HF Gemma 4 chat templates rendered as transformers renders them."""

from __future__ import annotations

import base64
import copy
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from ollama_core.descriptors import RenderRequest

from ollama_arch_gemma4.chat_templates import LARGE, SMALL, bundled_template
from ollama_arch_gemma4.renderer import Gemma4Renderer

REFERENCE_DIR = Path("/work/shared/reference")
Q = '<|"|>'
WAV_B64 = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode()

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "description": "Unit", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "description": "Forecast days", "nullable": True},
            },
        },
    },
}
PLANNER = {
    "type": "function",
    "function": {
        "name": "plan",
        "description": "Schedule jobs.",
        "parameters": {
            "type": "object",
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "description": "Jobs",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "description": "Name"},
                            "config": {
                                "type": "object",
                                "description": "Config",
                                "required": ["enabled"],
                                "properties": {"enabled": {"type": "boolean", "description": "On"}},
                            },
                            "tags": {"type": "array", "description": "Tags", "items": {"type": "string"}},
                        },
                    },
                },
                "options": {
                    "type": "object",
                    "description": "Options",
                    "properties": {"verbose": {"type": "boolean", "description": "Verbose"}},
                },
            },
        },
    },
}
TOOLS = [WEATHER, PLANNER]

NESTED_ARGS = {
    "jobs": [
        {"name": 'say "hi"\nthen\tleave', "config": {"enabled": True}, "tags": ["a", "b\\c"]},
        {"name": "second", "config": {"enabled": False, "level": 2.5}, "tags": []},
    ],
    "options": {"verbose": None},
}


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# Conversations in the form the HF template reads (ids, ``name``, ``reasoning``).
CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "user": [{"role": "user", "content": "Hello there"}],
    "system": [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": "Name a prime."}],
    "developer": [{"role": "developer", "content": "Rules."}, {"role": "user", "content": "Hi"}],
    "multi_turn": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Two?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Three?"},
    ],
    "tool_round_trip": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_call("c1", "get_weather", {"city": "Paris", "unit": "celsius"})],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18 degrees, sunny"},
        {"role": "assistant", "content": "It is 18 degrees and sunny."},
        {"role": "user", "content": "Thanks!"},
    ],
    "tool_result_last": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("c1", "get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 degrees"},
    ],
    "parallel_calls": [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [_call("a", "get_weather", {"city": "Paris"}), _call("b", "plan", NESTED_ARGS)],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": 'planned\nwith "quotes" and \\ backslash'},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "And tomorrow?"},
    ],
    "call_without_result": [
        {"role": "user", "content": "Plan it"},
        {"role": "assistant", "content": "", "tool_calls": [_call("p", "plan", NESTED_ARGS)]},
    ],
    "history_with_thinking": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "reasoning": "Simple sum.", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "reasoning": "Also simple.", "content": "<|channel>thought\nhidden<channel|>6"},
    ],
    "thinking_with_tools": [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "reasoning": "Need the tool.",
            "content": "",
            "tool_calls": [_call("w", "get_weather", {"city": "Oslo"})],
        },
        {"role": "tool", "tool_call_id": "w", "content": "cold"},
        {"role": "assistant", "reasoning": "Answer now.", "content": "It is cold."},
    ],
    "consecutive_assistant": [
        {"role": "user", "content": "Go"},
        {"role": "assistant", "content": "Part one."},
        {"role": "assistant", "content": "Part two."},
    ],
    "images": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    ],
    "audio_and_image": [
        {"role": "user", "content": [{"type": "audio"}, {"type": "image"}, {"type": "text", "text": "Say what?"}]},
        {"role": "assistant", "content": "A bird."},
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "And this?"}]},
    ],
    "unicode_and_markup": [
        {"role": "user", "content": "Ünïcödé ✓ and literal <b>tags</b> with {braces}"},
    ],
}


def _hf_environment() -> ImmutableSandboxedEnvironment:
    """What ``transformers`` builds in ``_compile_jinja_template``."""

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@cache
def _hf_template(variant: str) -> jinja2.Template:
    return _hf_environment().from_string(bundled_template(variant))


def _hf_render(variant: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, thinking: bool) -> str:
    return _hf_template(variant).render(
        messages=messages,
        tools=tools,
        add_generation_prompt=True,
        enable_thinking=thinking,
        bos_token="<bos>",
        eos_token="<eos>",
    )


def _ollama_form(messages: list[dict[str, Any]], *, keep_names: bool) -> list[dict[str, Any]]:
    """The same chat as an Ollama client sends it: ``thinking``, ``tool_name`` (or nothing), no ids."""
    calls: dict[str, str] = {}
    converted: list[dict[str, Any]] = []
    for message in copy.deepcopy(messages):
        if "reasoning" in message:
            message["thinking"] = message.pop("reasoning")
        for call in message.get("tool_calls", []):
            calls[call.pop("id")] = call["function"]["name"]
            call.pop("type")
        if message["role"] == "tool":
            name = calls[message.pop("tool_call_id")]
            if keep_names:
                message["tool_name"] = name
        if isinstance(message.get("content"), list):
            message["images"] = [WAV_B64 if part["type"] == "audio" else "<image bytes>"
                                 for part in message["content"] if part["type"] in ("audio", "image")]
            message["content"] = "".join(part.get("text", "") for part in message["content"])
        converted.append(message)
    return converted


def _render(variant: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, think: Any) -> str:
    request = RenderRequest(
        messages=messages, tools=tools, think=think, chat_template=bundled_template(variant), bos_token="<bos>"
    )
    prompt = Gemma4Renderer().render(request)
    assert prompt.add_bos and not prompt.text.startswith("<bos>")
    return "<bos>" + prompt.text


def test_media_placeholders_in_item_order() -> None:
    messages = _ollama_form(CONVERSATIONS["audio_and_image"], keep_names=True)
    prompt = Gemma4Renderer().render(RenderRequest(messages=messages, think=False, chat_template=bundled_template(SMALL)))
    assert prompt.media == ("<|audio|>", "<|image|>", "<|audio|>")
    assert "<|turn>user\n<|audio|><|image|>Say what?<turn|>" in prompt.text
    assert "<|turn>user\n<|audio|>And this?<turn|>" in prompt.text


@pytest.mark.parametrize("variant", [SMALL, LARGE])
@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("with_tools", [False, True])
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_matches_hf_template(name: str, variant: str, thinking: bool, with_tools: bool) -> None:
    messages = CONVERSATIONS[name]
    tools = TOOLS if with_tools else None
    expected = _hf_render(variant, messages, tools, thinking)
    assert _render(variant, copy.deepcopy(messages), tools, thinking) == expected
    assert _render(variant, _ollama_form(messages, keep_names=True), tools, thinking) == expected
    assert _render(variant, _ollama_form(messages, keep_names=False), tools, thinking) == expected


def test_bundled_templates_are_the_published_ones() -> None:
    if not REFERENCE_DIR.is_dir():
        pytest.skip("reference templates not available")
    assert bundled_template(LARGE) == (REFERENCE_DIR / "gemma4_chat_template.jinja").read_text(encoding="utf-8")
    assert bundled_template(SMALL) == (REFERENCE_DIR / "gemma4_e2b_chat_template.jinja").read_text(encoding="utf-8")


def test_known_renderings() -> None:
    system_user = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Name a prime."}]
    head = "<bos><|turn>system\nAnswer briefly.<turn|>\n<|turn>user\nName a prime.<turn|>\n<|turn>model\n"
    assert _render(LARGE, system_user, None, False) == head + "<|channel>thought\n<channel|>"
    assert _render(SMALL, system_user, None, False) == head

    lookup = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find a word.",
            "parameters": {
                "type": "object",
                "required": ["word"],
                "properties": {"word": {"type": "string", "description": "The word."}},
            },
        },
    }
    chat = [
        {"role": "user", "content": "Define cat."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "lookup", "arguments": {"word": "cat"}}}],
        },
        {"role": "tool", "content": "a small feline", "tool_name": "lookup"},
        {"role": "assistant", "content": "A cat is a small feline."},
        {"role": "user", "content": "Thanks"},
    ]
    expected = (
        "<bos><|turn>system\n<|tool>declaration:lookup{description:QFind a word.Q,parameters:{properties:{word:"
        "{description:QThe word.Q,type:QSTRINGQ}},required:[QwordQ],type:QOBJECTQ}}<tool|><turn|>\n"
        "<|turn>user\nDefine cat.<turn|>\n"
        "<|turn>model\n<|tool_call>call:lookup{word:QcatQ}<tool_call|>"
        "<|tool_response>response:lookup{value:Qa small felineQ}<tool_response|>A cat is a small feline.<turn|>\n"
        "<|turn>user\nThanks<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    ).replace("Q", Q)
    assert _render(LARGE, chat, [lookup], None) == expected
    assert _render(LARGE, chat[:3], [lookup], True).endswith(
        f"{Q}a small feline{Q}}}<tool_response|><|channel>thought\n"
    )

    thinking = _render(SMALL, [{"role": "user", "content": "What is 17*3?"}], None, "high")
    assert thinking == "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nWhat is 17*3?<turn|>\n<|turn>model\n"


def test_tool_arguments_as_json_string() -> None:
    chat = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        },
    ]
    assert f"call:get_weather{{city:{Q}Paris{Q}}}<tool_call|><|tool_response>" in _render(LARGE, chat, TOOLS, False)
    chat[1]["tool_calls"][0]["function"]["arguments"] = "not json"
    with pytest.raises(ValueError, match="not a JSON object"):
        _render(LARGE, chat, TOOLS, False)


def test_template_choice() -> None:
    renderer = Gemma4Renderer()
    chat = [{"role": "user", "content": "Hi"}]
    small = renderer.render(RenderRequest(messages=chat, metadata={"gemma4.embedding_length_per_layer_input": 256}))
    large = renderer.render(RenderRequest(messages=chat, metadata={"gemma4.embedding_length_per_layer_input": 0}))
    unknown = renderer.render(RenderRequest(messages=chat))
    assert small.text.endswith("<|turn>model\n")
    assert large.text.endswith("<|channel>thought\n<channel|>") and unknown.text == large.text
    custom = renderer.render(RenderRequest(messages=chat, chat_template="{{ bos_token }}[{{ messages[0].content }}]"))
    assert custom.text == "[Hi]" and custom.add_bos
