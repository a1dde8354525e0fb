"""Jinja chat templates rendered as transformers renders them: the SmolLM2 GGUF's own template, the
Gemma 4 template, and the environment's extras (tojson, raise_exception, loop controls, sandbox).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import gguf
import pytest
from ollama_core.prompt.chat_template import ChatTemplateError, ChatTemplateRenderer, compile_chat_template

GEMMA4_TEMPLATE = Path("/work/shared/reference/gemma4_chat_template.jinja")
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path) -> ChatTemplateRenderer:
    reader = gguf.GGUFReader(smollm2_gguf)
    template = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    return ChatTemplateRenderer(template, bos, eos)


@pytest.fixture(scope="module")
def gemma4() -> ChatTemplateRenderer:
    if not GEMMA4_TEMPLATE.is_file():
        pytest.skip("the Gemma 4 reference template is not available")
    return ChatTemplateRenderer(GEMMA4_TEMPLATE.read_text(), "<bos>", "<eos>")


def test_smollm2_adds_its_default_system_prompt(smollm2: ChatTemplateRenderer) -> None:
    rendered = smollm2.render([{"role": "user", "content": "Hi"}])
    assert rendered == SMOL_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_smollm2_conversation(smollm2: ChatTemplateRenderer) -> None:
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert smollm2.render(messages) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert smollm2.render(messages[:3], add_generation_prompt=False) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
    )


def test_smollm2_bos(smollm2: ChatTemplateRenderer) -> None:
    assert smollm2.bos_token == "<|im_start|>" and smollm2.eos_token == "<|im_end|>"
    assert smollm2.starts_with_bos(smollm2.render([{"role": "user", "content": "Hi"}]))


def test_gemma4_plain_chat(gemma4: ChatTemplateRenderer) -> None:
    rendered = gemma4.render([{"role": "user", "content": "Hi"}])
    assert rendered == "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    assert gemma4.starts_with_bos(rendered)
    assert (
        gemma4.render(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], add_generation_prompt=False
        )
        == "<bos><|turn>user\nHi<turn|>\n<|turn>model\nYo<turn|>\n"
    )


def test_gemma4_thinking_switch(gemma4: ChatTemplateRenderer) -> None:
    rendered = gemma4.render([{"role": "user", "content": "Hi"}], enable_thinking=True)
    assert rendered == "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n"


def test_gemma4_strips_earlier_thinking(gemma4: ChatTemplateRenderer) -> None:
    messages = [
        {"role": "system", "content": "  Be brief. "},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<|channel>thought\nsecret<channel|>Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    assert gemma4.render(messages) == (
        "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\nHello!<turn|>\n"
        "<|turn>user\nBye<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    )


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}
WEATHER_DECLARATION = (
    '<|tool>declaration:get_weather{description:<|"|>Get the weather<|"|>,parameters:{properties:{'
    'city:{description:<|"|>City name<|"|>,type:<|"|>STRING<|"|>},'
    'unit:{enum:[<|"|>c<|"|>,<|"|>f<|"|>],type:<|"|>STRING<|"|>}},'
    'required:[<|"|>city<|"|>],type:<|"|>OBJECT<|"|>}}<tool|>'
)
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_1", "function": {"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "22"},
]
TOOL_CALL_TEXT = (
    '<|turn>model\n<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,unit:<|"|>c<|"|>}<tool_call|>'
    '<|tool_response>response:get_weather{value:<|"|>22<|"|>}<tool_response|>'
)


def test_gemma4_tools_and_tool_results(gemma4: ChatTemplateRenderer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *TOOL_TURNS]
    assert gemma4.render(messages, tools=[WEATHER_TOOL]) == (
        "<bos><|turn>system\nBe brief." + WEATHER_DECLARATION + "<turn|>\n"
        "<|turn>user\nWeather in Paris?<turn|>\n" + TOOL_CALL_TEXT
    )


def test_gemma4_answer_after_tool_result_continues_the_turn(gemma4: ChatTemplateRenderer) -> None:
    messages = [*TOOL_TURNS, {"role": "assistant", "content": "It is 22."}]
    assert gemma4.render(messages, tools=[WEATHER_TOOL], enable_thinking=True) == (
        "<bos><|turn>system\n<|think|>\n" + WEATHER_DECLARATION + "<turn|>\n"
        "<|turn>user\nWeather in Paris?<turn|>\n" + TOOL_CALL_TEXT + "It is 22.<turn|>\n<|turn>model\n"
    )


def test_gemma4_rejects_string_arguments(gemma4: ChatTemplateRenderer) -> None:
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "x"}'}}]}
    with pytest.raises(ChatTemplateError, match="must be a JSON object"):
        gemma4.render([{"role": "user", "content": "x"}, call])


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ messages[0].content | tojson }}", '"héllo <b> & \\"q\\""'),
        ("{{ {'b': 1, 'a': [1, 2]} | tojson }}", '{"b": 1, "a": [1, 2]}'),
        ("{{ {'b': 1, 'a': 2} | tojson(sort_keys=True) }}", '{"a": 2, "b": 1}'),
        ("{{ {'a': [1]} | tojson(indent=2) }}", '{\n  "a": [\n    1\n  ]\n}'),
        ("{{ 'é' | tojson(ensure_ascii=True) }}", '"\\u00e9"'),
        ("{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}", "user"),
        ("{% for i in range(4) %}{% if i is odd %}{% continue %}{% endif %}{{ i }}{% endfor %}", "02"),
        ("{% generation %}assistant text{% endgeneration %}", "assistant text"),
        (
            "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}",
            "<s>|</s>|True|None|None",
        ),
        ("{{ undefined_variable }}[{{ messages[0].missing }}]", "[]"),
        ("{% if enable_thinking is defined %}{{ enable_thinking }}{% endif %}", ""),
        ("  {% if true %}\n    x\n  {% endif %}\n", "    x\n"),
        ("line\n", "line"),
    ],
)
def test_environment(template: str, expected: str) -> None:
    renderer = ChatTemplateRenderer(template, "<s>", "</s>")
    assert (
        renderer.render([{"role": "user", "content": 'héllo <b> & "q"'}, {"role": "assistant", "content": "x"}])
        == expected
    )


def test_extra_variables_and_tools() -> None:
    renderer = ChatTemplateRenderer("{{ enable_thinking }} {{ tools | length }} {{ tools[0].function.name }}")
    assert renderer.render([], tools=[WEATHER_TOOL], enable_thinking=False) == "False 1 get_weather"


def test_strftime_now() -> None:
    rendered = ChatTemplateRenderer("{{ strftime_now('%Y') }}").render([])
    assert rendered in {str(datetime.date.today().year), str(datetime.date.today().year + 1)}


def test_raise_exception() -> None:
    renderer = ChatTemplateRenderer(
        "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    )
    assert renderer.render([{"role": "user", "content": ""}]) == "ok"
    with pytest.raises(ChatTemplateError, match="chat template error: first must be user"):
        renderer.render([{"role": "system", "content": ""}])


def test_sandbox_is_immutable() -> None:
    with pytest.raises(ChatTemplateError):
        ChatTemplateRenderer("{{ messages.append({'role': 'x'}) }}").render([])
    with pytest.raises(ChatTemplateError):
        ChatTemplateRenderer("{{ ''.__class__.__mro__ }}").render([])


def test_messages_are_not_modified() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    ChatTemplateRenderer("{% set m = messages[0] %}{{ m | tojson }}").render(messages)
    assert messages == [{"role": "user", "content": "Hi"}]


def test_syntax_errors() -> None:
    with pytest.raises(ChatTemplateError, match=r"chat template error \(line 2\)"):
        ChatTemplateRenderer("ok\n{% if %}")
    with pytest.raises(ChatTemplateError):
        ChatTemplateRenderer("{% for x in y %}")


def test_compiled_once() -> None:
    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert compile_chat_template(template) is compile_chat_template(template)
    assert ChatTemplateRenderer(template)._compiled is ChatTemplateRenderer(template)._compiled


def test_bos_detection() -> None:
    renderer = ChatTemplateRenderer("{{ bos_token }}{{ messages[0].content }}", "<s>")
    assert renderer.starts_with_bos(renderer.render([{"role": "user", "content": "x"}]))
    assert not ChatTemplateRenderer("{{ messages[0].content }}", "<s>").starts_with_bos("x")
    assert not ChatTemplateRenderer("x", "").starts_with_bos("x")
    assert json.loads(ChatTemplateRenderer("{{ messages | tojson }}").render([{"role": "user", "content": "é"}])) == [
        {"role": "user", "content": "é"}
    ]
