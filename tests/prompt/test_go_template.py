"""Go templates: Ollama's own templates rendered exactly as Ollama renders them, and the engine's
text/template semantics."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from ollama_core.prompt.go_template import (
    GoTemplate,
    TemplateError,
    parse_template,
    render_go_template,
    template_variables,
)

# Templates from Ollama's template library (template/*.gotmpl) and its tool-calling test data.

LLAMA3_INSTRUCT = r"""{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""

CHATML = r"""{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""

MISTRAL_INSTRUCT = r"""[INST] {{ range $index, $_ := .Messages }}
{{- if eq .Role "system" }}{{ .Content }}

{{ else if eq .Role "user" }}{{ .Content }}[/INST]
{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}
{{- end }}"""

ALPACA = r"""{{- $system := "" }}
{{- range .Messages }}
{{- if eq .Role "system" }}
{{- if not $system }}{{ $system = .Content }}
{{- else }}{{ $system = printf "%s\n\n%s" $system .Content }}
{{- end }}
{{- else if eq .Role "user" }}
{{- if $system }}{{ $system }}

{{ $system = "" }}
{{- end }}### Instruction:
{{ .Content }}

{{ else if eq .Role "assistant" }}### Response:
{{ .Content }}

{{ end }}
{{- end }}### Response:
"""

GEMMA3_INSTRUCT = r"""{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{- if and (eq $i 1) $.System }}
{{ $.System }}
{{ end }}
{{ .Content }}<end_of_turn>
{{ else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- if $last }}<start_of_turn>model
{{ end }}
{{- end }}
"""

QWEN25_CODER_TOOLS = r"""{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>
{{- else if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

LLAMA32_TOOLS = r"""<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023

{{ if .System }}{{ .System }}
{{- end }}
{{- if .Tools }}When you receive a tool call response, use the output to format an answer to the orginal user question.

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>
{{- if and $.Tools $last }}

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.

{{ range $.Tools }}
{{- . }}
{{ end }}
{{ .Content }}<|eot_id|>
{{- else }}

{{ .Content }}<|eot_id|>
{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if .ToolCalls }}
{{ range .ToolCalls }}
{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}
{{- else }}

{{ .Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"""

MISTRAL_TOOLS = r"""{{- range $index, $_ := .Messages }}
{{- if eq .Role "user" }}
{{- if and (eq (len (slice $.Messages $index)) 1) $.Tools }}[AVAILABLE_TOOLS] {{ $.Tools }}[/AVAILABLE_TOOLS]
{{- end }}[INST] {{ if and (eq (len (slice $.Messages $index)) 1) $.System }}{{ $.System }}

{{ end }}{{ .Content }}[/INST]
{{- else if eq .Role "assistant" }}
{{- if .Content }} {{ .Content }}</s>
{{- else if .ToolCalls }}[TOOL_CALLS] [
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}]</s>
{{- end }}
{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}}[/TOOL_RESULTS]
{{- end }}
{{- end }}"""

QWEN25_CODER_TOOLS_OUT = r"""<|im_start|>system
You are a knowledgeable assistant. You can answer questions and perform tasks.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user's location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the weather like today in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
22
</tool_response><|im_end|>
<|im_start|>assistant
The current temperature in Paris, France is 22 degrees Celsius.<|im_end|>
<|im_start|>user
What's the weather like today in San Francisco and Toronto?<|im_end|>
<|im_start|>assistant
"""

LLAMA32_TOOLS_OUT = r"""<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023

You are a knowledgeable assistant. You can answer questions and perform tasks.When you receive a tool call response, use the output to format an answer to the orginal user question.

You are a helpful assistant with tool calling capabilities.<|eot_id|><|start_header_id|>user<|end_header_id|>

What's the weather like today in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_current_weather", "parameters": {"format":"celsius","location":"Paris, France"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

22<|eot_id|><|start_header_id|>assistant<|end_header_id|>

The current temperature in Paris, France is 22 degrees Celsius.<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.

{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user's location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}

What's the weather like today in San Francisco and Toronto?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""

MISTRAL_TOOLS_OUT = r"""[INST] What's the weather like today in Paris?[/INST][TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"format":"celsius","location":"Paris, France"}}]</s>[TOOL_RESULTS] {"content": 22}[/TOOL_RESULTS] The current temperature in Paris, France is 22 degrees Celsius.</s>[AVAILABLE_TOOLS] [{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather","parameters":{"type":"object","required":["location","format"],"properties":{"format":{"type":"string","description":"The temperature unit to use. Infer this from the user's location.","enum":["celsius","fahrenheit"]},"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}][/AVAILABLE_TOOLS][INST] You are a knowledgeable assistant. You can answer questions and perform tasks.

What's the weather like today in San Francisco and Toronto?[/INST]"""

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
USER1 = {"role": "user", "content": "Hello, how are you?"}
ASSISTANT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
USER2 = {"role": "user", "content": "I'd like to show off how chat templating works!"}

EXPECTED_SYSTEM_CHAT = {
    "llama3-instruct": (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI'd like to show off how chat templating works!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n"
        "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
        "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n<|im_start|>assistant\n"
    ),
    "mistral-instruct": (
        "[INST] You are a helpful assistant.\n\nHello, how are you?[/INST] I'm doing great. How can I help you today?</s>"
        "[INST] I'd like to show off how chat templating works![/INST]"
    ),
    "alpaca": (
        "You are a helpful assistant.\n\n### Instruction:\nHello, how are you?\n\n### Response:\n"
        "I'm doing great. How can I help you today?\n\n### Instruction:\n"
        "I'd like to show off how chat templating works!\n\n### Response:\n"
    ),
    "gemma3-instruct": (
        "<start_of_turn>user\nYou are a helpful assistant.\n\nHello, how are you?<end_of_turn>\n"
        "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
        "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n\n"
    ),
}
EXPECTED_USER = {
    "llama3-instruct": (
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n",
    "mistral-instruct": "[INST] Hello, how are you?[/INST]",
    "alpaca": "### Instruction:\nHello, how are you?\n\n### Response:\n",
    "gemma3-instruct": "<start_of_turn>user\nHello, how are you?<end_of_turn>\n<start_of_turn>model\n\n",
}
LIBRARY = {
    "llama3-instruct": LLAMA3_INSTRUCT,
    "chatml": CHATML,
    "mistral-instruct": MISTRAL_INSTRUCT,
    "alpaca": ALPACA,
    "gemma3-instruct": GEMMA3_INSTRUCT,
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_templates(name: str) -> None:
    template = LIBRARY[name]
    assert render_go_template(template, messages=[SYSTEM, USER1, ASSISTANT, USER2]) == EXPECTED_SYSTEM_CHAT[name]
    assert render_go_template(template, messages=[USER1]) == EXPECTED_USER[name]


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "format": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "description": "The temperature unit to use. Infer this from the user's location.",
                    },
                },
                "required": ["location", "format"],
            },
        },
    }
]
TOOL_CHAT = [
    {"role": "system", "content": "You are a knowledgeable assistant. You can answer questions and perform tasks."},
    {"role": "user", "content": "What's the weather like today in Paris?"},
    {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "89a1e453-0bce-4de3-a456-c54bed09c520",
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "arguments": {"location": "Paris, France", "format": "celsius"},
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "89a1e453-0bce-4de3-a456-c54bed09c520", "content": "22"},
    {"role": "assistant", "content": "The current temperature in Paris, France is 22 degrees Celsius."},
    {"role": "user", "content": "What's the weather like today in San Francisco and Toronto?"},
]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(QWEN25_CODER_TOOLS, QWEN25_CODER_TOOLS_OUT, id="qwen2.5-coder"),
        pytest.param(LLAMA32_TOOLS, LLAMA32_TOOLS_OUT, id="llama3.2"),
        pytest.param(MISTRAL_TOOLS, MISTRAL_TOOLS_OUT, id="mistral"),
    ],
)
def test_tool_templates(template: str, expected: str) -> None:
    assert render_go_template(template, messages=TOOL_CHAT, tools=TOOLS) == expected


def test_tool_templates_without_tools() -> None:
    rendered = render_go_template(QWEN25_CODER_TOOLS, messages=[USER1])
    assert rendered == "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n"


def test_fill_in_the_middle() -> None:
    rendered = render_go_template(QWEN25_CODER_TOOLS, prompt="def add(", suffix="    return c")
    assert rendered == "<|fim_prefix|>def add(<|fim_suffix|>    return c<|fim_middle|>"
    template = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"
    assert render_go_template(template, prompt="hello") == "hello"
    assert render_go_template(template, prompt="def add(", suffix="return x") == "<PRE> def add( <SUF>return x <MID>"


def test_system_and_prompt_arguments() -> None:
    rendered = render_go_template(CHATML, system="Be brief.", prompt="Hi")
    assert (
        rendered == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


LEGACY_MISTRAL = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
LEGACY_MISTRAL_RESPONSE = LEGACY_MISTRAL + "{{ .Response }}"
MESSAGES_MISTRAL = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n"
    '{{- if eq .Role "user" }}{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n'
    "{{- end }}"
)
LEGACY_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
    "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
LEGACY_ALPACA = (
    "{{ if .System }}{{ .System }}\n\n{{ end }}{{ if .Prompt }}### Instruction:\n{{ .Prompt }}\n\n{{ end }}"
    "### Response:\n{{ .Response }}"
)
FRIEND_CHAT = [
    {"role": "user", "content": "Hello friend!"},
    {"role": "assistant", "content": "Hello human!"},
    {"role": "user", "content": "What is your name?"},
]


@pytest.mark.parametrize("template", [LEGACY_MISTRAL, LEGACY_MISTRAL_RESPONSE, MESSAGES_MISTRAL])
def test_legacy_and_messages_styles_agree(template: str) -> None:
    assert render_go_template(template, messages=FRIEND_CHAT) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )
    with_system = [{"role": "system", "content": "You are a helpful assistant!"}, *FRIEND_CHAT]
    assert render_go_template(template, messages=with_system) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


def test_legacy_final_assistant_message_is_continued() -> None:
    chat = [*FRIEND_CHAT, {"role": "assistant", "content": "My name is Ollama and I"}]
    expected = "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"
    assert render_go_template(LEGACY_MISTRAL_RESPONSE, messages=chat) == expected
    assert render_go_template(LEGACY_MISTRAL, messages=chat) == expected


def test_legacy_chatml_cuts_after_response() -> None:
    chat = [{"role": "system", "content": "You are a helpful assistant!"}, *FRIEND_CHAT]
    assert render_go_template(LEGACY_CHATML, messages=chat) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
        "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_legacy_alpaca() -> None:
    assert render_go_template(LEGACY_ALPACA, messages=[SYSTEM, USER1, ASSISTANT, USER2]) == (
        "You are a helpful assistant.\n\n### Instruction:\nHello, how are you?\n\n### Response:\n"
        "I'm doing great. How can I help you today?"
        "### Instruction:\nI'd like to show off how chat templating works!\n\n### Response:\n"
    )
    assert render_go_template("{{ .Prompt }}", messages=[USER1, ASSISTANT, USER2]) == (
        "Hello, how are you?I'm doing great. How can I help you today?I'd like to show off how chat templating works!"
    )


def test_consecutive_messages_are_merged() -> None:
    template = "{{ .System }}|{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}"
    chat = [
        {"role": "system", "content": "s1"},
        {"role": "system", "content": "s2"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "tool", "content": "t1", "tool_name": "x"},
        {"role": "tool", "content": "t2", "tool_name": "y"},
    ]
    assert render_go_template(template, messages=chat) == "s1\n\ns2|[system:s1\n\ns2][user:a\n\nb][tool:t1][tool:t2]"


def test_thinking_values() -> None:
    template = "{{ range .Messages }}{{ end }}{{ .Think }} {{ .ThinkLevel }} {{ .IsThinkSet }}"
    assert render_go_template(template) == "false  false"
    assert render_go_template(template, think=True, think_level="high", is_think_set=True) == "true high true"
    assert render_go_template("{{ .Prompt }}{{ if .Think }}<think>{{ end }}", prompt="x", think=True) == "x<think>"


def test_tool_values() -> None:
    template = (
        "{{- range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}({{ .Function.Arguments }}) "
        "{{ .Function.Arguments.city }} {{ .Function.Index }} {{ .ID }}|"
        "{{ range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }};{{ end }}{{ end }}{{ end }}"
        "{{- range .Tools }}|{{ .Type }} {{ .Function.Name }}: {{ .Function.Description }}"
        "{{ range $name, $p := .Function.Parameters.Properties }} {{ $name }}:{{ $p.Type }}={{ toTypeScriptType $p }}"
        "{{ end }} {{ .Function.Parameters.Required }}{{ end }}"
    )
    chat = [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "function": {"index": 2, "name": "f", "arguments": {"z": 1000000, "city": "<Paris>"}}}
            ],
        }
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "description": "does f",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "n": {"type": ["integer", "null"]},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "any": {"anyOf": [{"type": "object"}, {"type": "boolean"}]},
                    },
                    "required": ["city"],
                },
            },
        }
    ]
    assert render_go_template(template, messages=chat, tools=tools) == (
        'f({"city":"\\u003cParis\\u003e","z":1000000}) <Paris> 2 call_1|city=<Paris>;z=1e+06;'
        "|function f: does f any:=Record<string, any> | boolean city:string=string n:[integer null]=number | null"
        " tags:array=any[] [city]"
    )
    assert render_go_template("{{ range .Messages }}{{ end }}{{ .Tools }}", tools=tools) == (
        '[{"type":"function","function":{"name":"f","description":"does f","parameters":{"type":"object",'
        '"required":["city"],"properties":{"any":{"anyOf":[{"type":"object"},{"type":"boolean"}]},'
        '"city":{"type":"string"},"n":{"type":["integer","null"]},'
        '"tags":{"type":"array","items":{"type":"string"}}}}}}]'
    )


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        ("{{ .Prompt }}", {"prompt", "response"}),
        ("{{ .System }} {{ .Prompt }}", {"prompt", "response", "system"}),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", {"prompt", "response", "system"}),
        ("{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}", {"prompt", "response", "system", "tools"}),
        ("{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}", {"content", "messages", "role"}),
        (
            '{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}',
            {"content", "messages", "role", "toolname"},
        ),
        ("{{ if .Suffix }}{{ .Prompt }}{{ .Suffix }}{{ end }}", {"prompt", "response", "suffix"}),
        (
            "{{ range $i, $m := .Messages }}{{ $m.Thinking }}{{ $.Tools }}{{ end }}",
            {"$", "$m", "messages", "thinking", "tools"},
        ),
    ],
)
def test_template_variables(template: str, variables: set[str]) -> None:
    assert template_variables(template) == variables
    assert template_variables(parse_template(template)) == variables


def test_parsing_is_cached() -> None:
    assert parse_template(CHATML) is parse_template(CHATML)
    assert isinstance(parse_template(CHATML), GoTemplate)
    assert "messages" in template_variables(QWEN25_CODER_TOOLS) and "suffix" in template_variables(QWEN25_CODER_TOOLS)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ .Prompt ", "template: :1: unclosed action"),
        ('{{define "x"}}{{template "x"}}{{end}}{{template "x"}}', "undefined template specified"),
        ("{{ if .X }}", "template: :1: unexpected EOF"),
        ("a\n{{ end }}", "template: :2: unexpected {{end}}"),
        ("{{ else }}", "template: :1: unexpected {{else}}"),
        ("{{ foo }}", 'template: :1: function "foo" not defined'),
        ("{{ $x }}", 'template: :1: undefined variable "$x"'),
        ("{{ if $x := 1 }}{{ end }}{{ $x }}", 'template: :1: undefined variable "$x"'),
        ("{{ .A | 3 }}", "template: :1: non executable command in pipeline stage 2"),
        ("{{ break }}", "template: :1: {{break}} outside {{range}}"),
        ("{{ range .X }}{{ else }}{{ continue }}{{ end }}", "template: :1: {{continue}} outside {{range}}"),
        ("{{/* x */ }}", "template: :1: comment ends before closing delimiter"),
        ("{{/* x", "template: :1: unclosed comment"),
        ('{{ "abc }}', "template: :1: unterminated quoted string"),
        ("{{ range $i, $j, $k := .X }}{{ end }}", "template: :1: too many declarations in range"),
        ("{{ if }}{{ end }}", "template: :1: missing value for if"),
        ("{{ (.X }}", "template: :1: unclosed left paren"),
        ("{{ .X) }}", "template: :1: unexpected right paren"),
        ("{{ .X , }}", 'template: :1: unexpected "," in operand'),
        ("{{ 3x }}", 'template: :1: bad number syntax: "3x"'),
        ("{{ .X# }}", "template: :1: bad character U+0023 '#'"),
        ("{{ ? }}", 'template: :1: unexpected "?" in command'),
        ('{{ define "a" }}{{ else }}{{ end }}', "template: :1: unexpected {{else}} in define clause"),
        ("{{ nil.X }}", "template: :1: unexpected . after term"),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(template)
    assert str(info.value) == message


DATA: dict[str, Any] = {
    "S": "hello",
    "Empty": "",
    "N": 3,
    "F": 2.5,
    "Zero": 0,
    "T": True,
    "L": ["a", "b", "c"],
    "M": {"b": 2, "a": 1, "c": {"d": "deep"}},
    "Nested": {"List": [{"Name": "x"}, {"Name": "y"}]},
    "Nil": None,
    "EmptyList": [],
    "Html": "<a href='x'>&</a>",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain text", "plain text"),
        (
            "{{ .S }} {{ .N }} {{ .F }} {{ .T }} {{ .L }} {{ .M }}",
            "hello 3 2.5 true [a b c] map[a:1 b:2 c:map[d:deep]]",
        ),
        ("{{ .Missing }}|{{ .Missing.Deeper }}|{{ .M.c.d }}|{{ .M.zzz }}", "||deep|"),
        ("a  {{- .S -}}  b", "ahellob"),
        ("a \n\t{{- /* comment */ -}}\n b", "ab"),
        ("a {{/* comment */}} b", "a  b"),
        ("{{ .S }}\n{{- .S }}", "hellohello"),
        ("{{- 3 -}}", "3"),
        ("{{ -3 }} {{ 1.5e3 }} {{ 0x1F }} {{ 017 }} {{ 'a' }} {{ 1_000 }}", "-3 1500 31 15 97 1000"),
        ('{{ "a\\tb\\u00e9" }}{{ `raw\\n` }}', "a\tbéraw\\n"),
        (
            "{{ if .T }}yes{{ end }}{{ if .Zero }}no{{ end }}{{ if .Empty }}no{{ end }}{{ if .EmptyList }}no{{ end }}"
            "{{ if .Nil }}no{{ end }}{{ if .M }}map{{ end }}",
            "yesmap",
        ),
        ("{{ if eq .N 1 }}one{{ else if eq .N 2 }}two{{ else if eq .N 3 }}three{{ else }}many{{ end }}", "three"),
        (
            "{{ with .S }}[{{ . }}]{{ else }}none{{ end }}{{ with .Empty }}x{{ else with .N }}<{{ . }}>{{ end }}",
            "[hello]<3>",
        ),
        ("{{ range .L }}{{ . }}{{ end }}", "abc"),
        ("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", "0=a 1=b 2=c "),
        ("{{ range $k, $v := .M }}{{ $k }}:{{ $v }};{{ end }}", "a:1;b:2;c:map[d:deep];"),
        ("{{ range $v := .L }}{{ $v }}{{ end }}", "abc"),
        ("{{ range .EmptyList }}x{{ else }}empty{{ end }}{{ range .Nil }}x{{ else }}nil{{ end }}", "emptynil"),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        ('{{ range .L }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}', "ac"),
        ('{{ range .L }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', "a"),
        ("{{ range .Nested.List }}{{ .Name }}{{ $.S }}{{ end }}", "xhelloyhello"),
        ("{{ $x := 1 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", "c"),
        ('{{ $x := "outer" }}{{ if .T }}{{ $x := "inner" }}{{ $x }}{{ end }} {{ $x }}', "inner outer"),
        ('{{ $s := "" }}{{ range .L }}{{ $s = printf "%s%s" $s . }}{{ end }}{{ $s }}', "abc"),
        ('{{ .S | printf "%s!" }} {{ .N | printf "%d-%d" 1 }}', "hello! 1-3"),
        ('{{ (index .Nested.List 1).Name }} {{ index .M "b" }} {{ index .L 0 }} {{ index .M "zz" }}', "y 2 a "),
        ('{{ len .S }} {{ len .L }} {{ len .M }} {{ len "é" }}', "5 3 3 2"),
        ("{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .S 1 3 }} {{ len (slice .L 2) }}", "[b c] [b] el 1"),
        (
            "{{ and .T .N }} {{ and .T .Zero .N }} {{ or .Zero .Empty .S }} {{ or .Zero .Empty }} {{ not .Zero }}",
            "3 0 hello  true",
        ),
        ("{{ and .Zero (index .L 99) }}", "0"),
        (
            '{{ eq .S "hello" }} {{ eq .N 1 2 3 }} {{ ne .N 3 }} {{ lt .N 4 }} {{ le .N 3 }} {{ gt .F 2.6 }} {{ ge "b" "a" }}',
            "true true false true true false true",
        ),
        ('{{ eq .Nil "x" }} {{ eq .Missing .Nil }}', "false true"),
        ('{{ print "a" 1 2 "b" }} {{ print 1 2 }} {{ println "x" 1 }}', "a1 2b 1 2 x 1\n"),
        (
            '{{ printf "%v|%5s|%-4d|%03d|%.2f|%q|%x|%t|%c|%%|%T" .L "ab" 7 7 .F .S 255 .T 65 }}',
            '[a b c]|   ab|7   |007|2.50|"hello"|ff|true|A|%|%!T(MISSING)',
        ),
        ('{{ printf "%d %s" "x" }} {{ printf "%s" 1 2 }}', "%!d(string=x) %!s(MISSING) %!s(int=1)%!(EXTRA int=2)"),
        (
            "{{ json .M }} {{ json .L }} {{ json .Html }} {{ json .F }} {{ json .Nil }}",
            '{"a":1,"b":2,"c":{"d":"deep"}} ["a","b","c"] "\\u003ca href=\'x\'\\u003e\\u0026\\u003c/a\\u003e" 2.5 null',
        ),
        (
            '{{ html .Html }} {{ js .Html }} {{ urlquery "a b&c" }}',
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt; \\u003Ca href\\u003D\\'x\\'\\u003E\\u0026\\u003C/a\\u003E a+b%26c",
        ),
        ('{{ define "item" }}<{{ . }}>{{ end }}{{ range .L }}{{ template "item" . }}{{ end }}', "<a><b><c>"),
        ('{{ block "greet" .S }}hi {{ . }}{{ end }}!', "hi hello!"),
        ("{{ toTypeScriptType .S }}", "any"),
        ('{{ (printf "%s" .S) }} {{ .M.c.d | len }}', "hello 4"),
    ],
)
def test_engine(template: str, expected: str) -> None:
    assert parse_template(template).execute(DATA) == expected


def test_dates() -> None:
    today = datetime.date.today()
    rendered = parse_template("{{ currentDate }} {{ yesterdayDate }}").execute({})
    assert rendered in (
        f"{today.isoformat()} {(today - datetime.timedelta(days=1)).isoformat()}",
        f"{datetime.date.today().isoformat()} {today.isoformat()}",
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ len .N }}", "error calling len: len of type int"),
        ("{{ index .L 5 }}", "error calling index: index out of range: 5"),
        ("{{ .S.Foo }}", "can't evaluate field Foo in type string"),
        ("{{ eq .S 1 }}", "error calling eq: incompatible types for comparison"),
        ("{{ lt .T .T }}", "error calling lt: invalid type for comparison"),
        ('{{ template "nope" . }}', 'no such template "nope"'),
        ("{{ .S 1 }}", "S is not a method but has arguments"),
        ("{{ range .S }}{{ end }}", "range can't iterate over hello"),
        ('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}', "exceeded maximum template depth (100)"),
    ],
)
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(template).execute(DATA)
    assert str(info.value).endswith(message)
    assert str(info.value).startswith("template: :1: executing: ")
