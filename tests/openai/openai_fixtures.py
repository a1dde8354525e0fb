"""Session fixtures for the ``/v1`` tests: the session server, SmolLM2 on it, a tools-capable
variant of it, and an ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from openai import OpenAI

from live_server import Server

TOOLS_TEMPLATE = """\
{{- if or .System .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}
{{ end }}
{{- if .Tools }}You may call these tools. To call one, answer with \
<tool_call>{"name": <tool name>, "arguments": <arguments object>}</tool_call>.
<tools>
{{- range .Tools }}
{{ .Function }}
{{- end }}
</tools>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}{{ else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>{{ end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
"""
"""A ChatML Go template that offers tools (SmolLM2's own chat template does not)."""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo"]}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time",
        "parameters": {"type": "object", "properties": {}},
    },
}


@dataclass
class V1:
    """Where the ``/v1`` tests run."""

    server: Server
    model: str
    tools_model: str
    client: OpenAI

    @property
    def url(self) -> str:
        """The ``/v1`` base URL."""
        return self.server.url + "/v1"


@pytest.fixture(scope="session")
def v1(server: Server, smollm2: str) -> Iterator[V1]:
    """The ``/v1`` server with ``smollm2`` and ``smollm2-tools`` (SmolLM2 with a tools template)."""
    created = httpx.post(
        server.url + "/api/create",
        json={"model": "smollm2-tools", "from": smollm2, "template": TOOLS_TEMPLATE, "stream": False},
        timeout=120,
    )
    assert created.status_code == 200, created.text
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        yield V1(server=server, model=smollm2, tools_model="smollm2-tools", client=client)
    finally:
        client.close()
