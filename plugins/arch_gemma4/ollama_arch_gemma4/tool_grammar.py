"""A GBNF grammar that admits only Gemma 4 tool calls to given tools, so ``tool_choice`` can be enforced.

A call is written as the chat template writes it: ``<|tool_call>call:NAME{key:value,...}<tool_call|>``
with bare keys in sorted order and strings between ``<|"|>`` delimiters (the markers and the
delimiter are single tokens, referenced as tokens). Arguments follow each tool's JSON schema:
its required properties, strings (or their ``enum``), integers, numbers, booleans, nested
objects and arrays; a property without a usable schema takes any value. String contents may
not contain ``<``, which keeps the delimiter out of them; numbers have at most 15 digits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

CALL_OPEN = "<|tool_call>"
CALL_CLOSE = "<tool_call|>"
QUOTE = '<|"|>'

_BASE = r"""
string ::= <|"|> [^<]* <|"|>
integer ::= "-"? [0-9]{1,15}
number ::= "-"? [0-9]{1,15} ("." [0-9]{1,15})?
boolean ::= "true" | "false"
any ::= string | number | boolean | "null" | "[" (any ("," any)*)? "]" | "{" (key ":" any ("," key ":" any)*)? "}"
key ::= [a-zA-Z_] [a-zA-Z0-9_]*
"""


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Rules:
    def __init__(self) -> None:
        self.rules: dict[str, str] = {}

    def add(self, hint: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9]+", "-", hint).strip("-").lower() or "r"
        candidate, n = name, 1
        while candidate in self.rules and self.rules[candidate] != body:
            n += 1
            candidate = f"{name}-{n}"
        self.rules[candidate] = body
        return candidate

    def value(self, schema: Any, hint: str) -> str:
        if not isinstance(schema, Mapping):
            return "any"
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum and all(isinstance(v, str) and "<" not in v for v in enum):
            choices = " | ".join(_literal(v) for v in enum)
            return self.add(hint, f'<|"|> ({choices}) <|"|>')
        if kind == "string":
            return "string"
        if kind == "integer":
            return "integer"
        if kind == "number":
            return "number"
        if kind == "boolean":
            return "boolean"
        if kind == "array":
            item = self.value(schema.get("items"), hint + "-item")
            return self.add(hint, f'"[" ({item} ("," {item})*)? "]"')
        if kind == "object" or "properties" in schema:
            return self.add(hint, self.object_body(schema, hint))
        return "any"

    def object_body(self, schema: Mapping[str, Any], hint: str) -> str:
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            return '"{" (key ":" any ("," key ":" any)*)? "}"'
        required = [k for k in schema.get("required") or [] if isinstance(k, str) and k in properties]
        keys = sorted(required or properties)
        parts = [f"{_literal(key + ':')} {self.value(properties[key], hint + '-' + key)}" for key in keys]
        return '"{" ' + ' "," '.join(parts) + ' "}"'


def tool_call_grammar(tools: Sequence[Mapping[str, Any]]) -> str:
    """GBNF for exactly one call to one of ``tools`` (OpenAI-style ``{"function": {...}}``), as the
    JSON-schema constraint used for other models also allows."""
    rules = _Rules()
    calls = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = str(function.get("name") or "")
        if not name:
            continue
        parameters = function.get("parameters") if isinstance(function.get("parameters"), Mapping) else {}
        arguments = rules.add(f"args-{name}", rules.object_body(parameters, f"arg-{name}"))
        calls.append(f'{_literal("call:" + name)} {arguments}')
    if not calls:
        raise ValueError("no named tools to call")
    lines = [
        "root ::= call",
        "call ::= <|tool_call> (" + " | ".join(calls) + ") <tool_call|>",
        *(f"{name} ::= {body}" for name, body in rules.rules.items()),
    ]
    return "\n".join(lines) + _BASE
