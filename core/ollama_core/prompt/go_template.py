"""Ollama's prompt templates: a Go ``text/template`` engine and Ollama's rendering rules.

The engine covers the language Ollama templates use: text with ``{{- -}}`` trim markers and
comments, fields (``.A.B``), variables (``$x := ...``, ``$x = ...``, ``$``), pipelines,
parenthesised pipelines, ``if``/``else if``/``else``/``end``, ``range`` (with ``$i, $v :=``,
``break``, ``continue``, over lists, maps in key order and integers), ``with``/``else with``,
``define``/``template``/``block``, and Go's built-in functions plus Ollama's ``json``,
``currentDate``, ``yesterdayDate`` and ``toTypeScriptType``. Values follow Go: truthiness,
printing (``fmt`` rules, JSON for tool structures) and comparisons. Missing map keys evaluate
to nil, which tests false and prints as the empty string.

:func:`render_go_template` applies Ollama's ``template.Execute``: messages-style templates get
``.System``, ``.Messages``, ``.Tools`` and the thinking flags; legacy templates are executed once
per user/assistant pair and cut after ``{{ .Response }}`` on the last turn; a prompt with a
suffix renders fill-in-the-middle.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import itertools
import json
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final

import msgspec

from ollama_core.prompt import gofmt

_SPACE: Final = " \t\r\n"
_KEYWORDS: Final = frozenset(
    {"block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"}
)
_MAX_DEPTH: Final = 100
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[bB][01_]+|0[oO][0-7_]+|[0-9_]*\.?[0-9_]*(?:[eE][+-]?[0-9_]+)?)i?"
)
_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


class TemplateError(ValueError):
    """A Go template that fails to parse or to execute; the message reads like Go's."""


# ---------------------------------------------------------------------------------------------
# Syntax tree


class _Node(msgspec.Struct):
    """Base of every template node."""


class _Text(_Node):
    text: str


class _Field(_Node):
    idents: tuple[str, ...]


class _Variable(_Node):
    name: str
    idents: tuple[str, ...] = ()


class _Dot(_Node):
    pass


class _Nil(_Node):
    pass


class _Literal(_Node):
    value: Any


class _Identifier(_Node):
    name: str


class _Chain(_Node):
    node: _Node
    idents: tuple[str, ...]


class _Command(_Node):
    args: list[_Node]


class _Pipe(_Node):
    line: int
    decl: list[str]
    is_assign: bool
    cmds: list[_Command]


class _Action(_Node):
    line: int
    pipe: _Pipe


class _Branch(_Node):
    kind: str
    line: int
    pipe: _Pipe
    body: list[_Node]
    else_body: list[_Node] | None


class _TemplateCall(_Node):
    line: int
    name: str
    pipe: _Pipe | None


class _Break(_Node):
    pass


class _Continue(_Node):
    pass


class _End(_Node):
    line: int


class _Else(_Node):
    line: int


class _Token(msgspec.Struct, frozen=True):
    kind: str
    value: str
    line: int


# ---------------------------------------------------------------------------------------------
# Lexer


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdecimal()


class _Lexer:
    """Splits template text into text, delimiter and action tokens, applying trim markers."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.tokens: list[_Token] = []
        self.paren_depth = 0

    def line_at(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: :{self.line_at(pos)}: {message}")

    def emit(self, kind: str, value: str, pos: int) -> None:
        self.tokens.append(_Token(kind, value, self.line_at(pos)))

    def right_delim(self, pos: int) -> tuple[bool, bool]:
        """Whether ``pos`` is at ``}}`` and whether that delimiter carries a trim marker."""
        src = self.src
        if len(src) > pos + 1 and src[pos] in _SPACE and src[pos + 1] == "-" and src.startswith("}}", pos + 2):
            return True, True
        return src.startswith("}}", pos), False

    def at_terminator(self, pos: int) -> bool:
        if pos >= len(self.src):
            return True
        return self.src[pos] in _SPACE or self.src[pos] in ".,|:()" or self.src.startswith("}}", pos)

    def run(self) -> list[_Token]:
        src = self.src
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos : len(src) if start < 0 else start]
            if trim_next:
                text = text.lstrip(_SPACE)
            inside = start + 2
            left_trim = start >= 0 and src.startswith("-", inside) and src[inside + 1 : inside + 2] in tuple(_SPACE)
            if left_trim:
                text = text.rstrip(_SPACE)
                inside += 2
            if text:
                self.emit("text", text, pos)
            if start < 0:
                self.emit("eof", "", len(src))
                return self.tokens
            if src.startswith("/*", inside):
                close = src.find("*/", inside + 2)
                if close < 0:
                    raise self.error(start, "unclosed comment")
                is_delim, trim_next = self.right_delim(close + 2)
                if not is_delim:
                    raise self.error(start, "comment ends before closing delimiter")
                pos = close + 2 + (2 if trim_next else 0) + 2
                continue
            self.emit("left", "{{", start)
            pos, trim_next = self.action(inside)

    def action(self, pos: int) -> tuple[int, bool]:
        src = self.src
        while True:
            is_delim, trim = self.right_delim(pos)
            if is_delim:
                if self.paren_depth:
                    raise self.error(pos, "unclosed left paren")
                self.emit("right", "}}", pos)
                return pos + (4 if trim else 2), trim
            if pos >= len(src):
                raise self.error(pos, "unclosed action")
            ch = src[pos]
            if ch in _SPACE:
                end = pos
                while end < len(src) and src[end] in _SPACE:
                    end += 1
                if self.right_delim(end - 1) == (True, True):
                    end -= 1
                self.emit("space", src[pos:end], pos)
                pos = end
                continue
            if ch == "=":
                self.emit("assign", "=", pos)
                pos += 1
            elif ch == ":":
                if not src.startswith(":=", pos):
                    raise self.error(pos, "expected :=")
                self.emit("declare", ":=", pos)
                pos += 2
            elif ch == "|":
                self.emit("pipe", "|", pos)
                pos += 1
            elif ch == '"':
                pos = self.quoted(pos, '"', "string", "unterminated quoted string")
            elif ch == "'":
                pos = self.quoted(pos, "'", "charconst", "unterminated character constant")
            elif ch == "`":
                end = src.find("`", pos + 1)
                if end < 0:
                    raise self.error(pos, "unterminated raw quoted string")
                self.emit("raw", src[pos : end + 1], pos)
                pos = end + 1
            elif ch == "$":
                pos = self.word(pos + 1, pos, "variable")
            elif ch == "." and not (pos + 1 < len(src) and src[pos + 1].isdigit()):
                pos = self.word(pos + 1, pos, "field")
            elif ch in "+-." or ch.isdigit():
                pos = self.number(pos)
            elif _is_alnum(ch):
                pos = self.word(pos, pos, "identifier")
            elif ch == "(":
                self.paren_depth += 1
                self.emit("lparen", "(", pos)
                pos += 1
            elif ch == ")":
                self.paren_depth -= 1
                if self.paren_depth < 0:
                    raise self.error(pos, "unexpected right paren")
                self.emit("rparen", ")", pos)
                pos += 1
            elif ch.isascii() and ch.isprintable():
                self.emit("char", ch, pos)
                pos += 1
            else:
                raise self.error(pos, f"unrecognized character in action: U+{ord(ch):04X} '{ch}'")

    def quoted(self, pos: int, quote: str, kind: str, message: str) -> int:
        src = self.src
        end = pos + 1
        while True:
            if end >= len(src) or src[end] == "\n":
                raise self.error(pos, message)
            if src[end] == "\\":
                if src[end + 1 : end + 2] in ("", "\n"):
                    raise self.error(pos, message)
                end += 2
                continue
            if src[end] == quote:
                break
            end += 1
        self.emit(kind, src[pos : end + 1], pos)
        return end + 1

    def word(self, pos: int, start: int, kind: str) -> int:
        src = self.src
        end = pos
        while end < len(src) and _is_alnum(src[end]):
            end += 1
        if not self.at_terminator(end):
            raise self.error(end, f"bad character U+{ord(src[end]):04X} '{src[end]}'")
        word = src[start:end]
        if kind == "identifier":
            kind = "keyword" if word in _KEYWORDS else "bool" if word in ("true", "false") else "identifier"
        elif kind == "field" and word == ".":
            kind = "dot"
        self.emit(kind, word, start)
        return end

    def number(self, pos: int) -> int:
        match = _NUMBER.match(self.src, pos)
        end = match.end() if match else pos
        if not any(c.isdigit() for c in self.src[pos:end]) or (end < len(self.src) and _is_alnum(self.src[end])):
            raise self.error(pos, f"bad number syntax: {gofmt.quote(self.src[pos : end + 1])}")
        self.emit("number", self.src[pos:end], pos)
        return end


def _unquote(text: str) -> str:
    """Go's ``strconv.Unquote`` for a double-quoted, single-quoted or raw string literal."""
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1 : i + 2]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            i += 2
        elif code in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif code.isdigit():
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits):
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def _number(text: str) -> int | float:
    """The value of a Go number or character literal."""
    if text.startswith("'"):
        value = _unquote(text)
        if len(value) != 1:
            raise ValueError("malformed character constant")
        return ord(value)
    if text.endswith("i"):
        raise ValueError(f"complex constants are not supported: {text}")
    plain = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", plain):
        return int(plain, 8)
    try:
        return int(plain, 0)
    except ValueError:
        pass
    if plain.lower().lstrip("+-").startswith("0x"):
        return float.fromhex(plain)
    return float(plain)


# ---------------------------------------------------------------------------------------------
# Parser


class _Parser:
    """Go's ``text/template/parse`` recursive-descent parser over :class:`_Lexer` tokens."""

    def __init__(self, tokens: list[_Token], functions: frozenset[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.functions = functions
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.defines: dict[str, list[_Node]] = {}

    def error(self, message: str, token: _Token | None = None) -> TemplateError:
        line = (token or self.tokens[max(self.pos - 1, 0)]).line
        return TemplateError(f"template: :{line}: {message}")

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        token = self.next_non_space()
        self.pos -= 1 if token.kind != "eof" else 0
        return token

    def unexpected(self, token: _Token, context: str) -> TemplateError:
        if token.kind == "eof":
            shown = "EOF"
        elif token.kind == "keyword":
            shown = f"<{token.value}>"
        elif token.kind in ("string", "raw", "charconst", "number"):
            shown = token.value
        else:
            shown = gofmt.quote(token.value)
        return self.error(f"unexpected {shown} in {context}", token)

    def expect(self, kind: str, context: str) -> _Token:
        token = self.next_non_space()
        if token.kind != kind:
            raise self.unexpected(token, context)
        return token

    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self.peek().kind != "eof":
            if self.peek().kind == "left":
                mark = self.pos
                self.next()
                token = self.next_non_space()
                if token.kind == "keyword" and token.value == "define":
                    self.definition()
                    continue
                self.pos = mark
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                raise self.error(f"unexpected {{{{{'end' if isinstance(node, _End) else 'else'}}}}}")
            root.append(node)
        return root

    def template_name(self, context: str) -> str:
        token = self.next_non_space()
        if token.kind not in ("string", "raw"):
            raise self.unexpected(token, context)
        return _unquote(token.value)

    def definition(self) -> None:
        name = self.template_name("define clause")
        self.expect("right", "define clause")
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, _End):
            raise self.error("unexpected {{else}} in define clause")
        self.defines[name] = body

    def item_list(self) -> tuple[list[_Node], _Node]:
        nodes: list[_Node] = []
        while self.peek_non_space().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return nodes, node
            nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> _Node:
        token = self.next_non_space()
        if token.kind == "text":
            return _Text(token.value)
        if token.kind == "left":
            return self.action()
        raise self.unexpected(token, "input")

    def action(self) -> _Node:
        token = self.next_non_space()
        if token.kind == "keyword":
            word = token.value
            if word in ("if", "range", "with"):
                return self.control(word, token)
            if word == "else":
                following = self.peek_non_space()
                if following.kind == "keyword" and following.value in ("if", "with"):
                    return _Else(token.line)
                self.expect("right", "else")
                return _Else(token.line)
            if word == "end":
                self.expect("right", "end")
                return _End(token.line)
            if word in ("break", "continue"):
                following = self.next_non_space()
                if following.kind != "right":
                    raise self.unexpected(following, f"{{{{{word}}}}}")
                if self.range_depth == 0:
                    raise self.error(f"{{{{{word}}}}} outside {{{{range}}}}", token)
                return _Break() if word == "break" else _Continue()
            if word == "template":
                name = self.template_name("template clause")
                pipe = None
                if self.next_non_space().kind != "right":
                    self.pos -= 1
                    pipe = self.pipeline("template clause", "right")
                return _TemplateCall(token.line, name, pipe)
            if word == "block":
                name = self.template_name("block clause")
                pipe = self.pipeline("block clause", "right")
                saved = self.vars, self.range_depth
                self.vars, self.range_depth = ["$"], 0
                body, end = self.item_list()
                self.vars, self.range_depth = saved
                if not isinstance(end, _End):
                    raise self.error("unexpected {{else}} in block clause")
                self.defines[name] = body
                return _TemplateCall(token.line, name, pipe)
        self.pos -= 1
        return _Action(token.line, self.pipeline("command", "right"))

    def control(self, kind: str, token: _Token) -> _Branch:
        mark = len(self.vars)
        pipe = self.pipeline(kind, "right")
        if kind == "range":
            self.range_depth += 1
        body, end = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: list[_Node] | None = None
        if isinstance(end, _Else):
            following = self.peek_non_space()
            if kind in ("if", "with") and following.kind == "keyword" and following.value == kind:
                self.next_non_space()
                else_body = [self.control(kind, following)]
            else:
                else_body, end = self.item_list()
                if not isinstance(end, _End):
                    raise self.error("expected end; found {{else}}")
        del self.vars[mark:]
        return _Branch(kind, token.line, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_non_space()
        pipe = _Pipe(start.line, [], False, [])
        while (token := self.peek_non_space()).kind == "variable":
            mark = self.pos
            self.next_non_space()
            following = self.peek_non_space()
            if following.kind in ("assign", "declare"):
                self.next_non_space()
                pipe.is_assign = following.kind == "assign"
                pipe.decl.append(token.value)
                self.vars.append(token.value)
                break
            if following.kind == "char" and following.value == ",":
                self.next_non_space()
                pipe.decl.append(token.value)
                self.vars.append(token.value)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in ("variable", "right", "rparen"):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.pos = mark
            break
        while True:
            token = self.next_non_space()
            if token.kind == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.kind in (
                "bool",
                "charconst",
                "dot",
                "field",
                "identifier",
                "number",
                "string",
                "raw",
                "variable",
                "lparen",
            ) or (token.kind == "keyword" and token.value == "nil"):
                self.pos -= 1
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def check_pipeline(self, pipe: _Pipe, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for stage, command in enumerate(pipe.cmds[1:], start=2):
            first = command.args[0]
            if isinstance(first, (_Dot, _Nil, _Literal)):
                raise self.error(f"non executable command in pipeline stage {stage}")

    def command(self) -> _Command:
        command = _Command([])
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                command.args.append(operand)
            token = self.next()
            if token.kind == "space":
                continue
            if token.kind in ("right", "rparen"):
                self.pos -= 1
            elif token.kind != "pipe":
                raise self.unexpected(token, "operand")
            break
        if not command.args:
            raise self.error("empty command")
        return command

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        idents: list[str] = []
        while self.peek().kind == "field":
            idents.append(self.next().value[1:])
        if isinstance(node, _Field):
            return _Field(node.idents + tuple(idents))
        if isinstance(node, _Variable):
            return _Variable(node.name, node.idents + tuple(idents))
        if isinstance(node, (_Literal, _Nil, _Dot)):
            raise self.error("unexpected . after term")
        return _Chain(node, tuple(idents))

    def term(self) -> _Node | None:
        token = self.next_non_space()
        kind = token.kind
        if kind == "identifier":
            if token.value not in self.functions:
                raise self.error(f'function "{token.value}" not defined', token)
            return _Identifier(token.value)
        if kind == "dot":
            return _Dot()
        if kind == "keyword" and token.value == "nil":
            return _Nil()
        if kind == "variable":
            if token.value not in self.vars:
                raise self.error(f'undefined variable "{token.value}"', token)
            return _Variable(token.value)
        if kind == "field":
            return _Field((token.value[1:],))
        if kind == "bool":
            return _Literal(token.value == "true")
        if kind in ("number", "charconst"):
            try:
                return _Literal(_number(token.value))
            except ValueError as exc:
                raise self.error(str(exc), token) from None
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if kind in ("string", "raw"):
            try:
                return _Literal(_unquote(token.value))
            except ValueError as exc:
                raise self.error(str(exc), token) from None
        self.pos -= 1 if kind != "eof" else 0
        return None


# ---------------------------------------------------------------------------------------------
# Values templates see: Ollama's template structs, printed and encoded as Go prints them


def _omitted(value: Any) -> bool:
    """Whether Go's ``omitempty`` leaves ``value`` out."""
    if value is None or value is False:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, (str, list, tuple, dict)) and len(value) == 0


class _GoStruct(msgspec.Struct):
    """A Go struct: fields by Go name; printed and JSON-encoded with its JSON field names."""

    go_fields: ClassVar[Mapping[str, str]] = {}
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    def field(self, name: str) -> Any:
        return getattr(self, self.go_fields[name])

    def go_json(self) -> str:
        parts = []
        for key, attribute, omit_empty in self.json_fields:
            value = getattr(self, attribute)
            if omit_empty and _omitted(value):
                continue
            parts.append(f"{gofmt.json_string(key)}:{gofmt.to_json(value)}")
        return "{" + ",".join(parts) + "}"

    def go_string(self) -> str:
        return self.go_json()


class _JSONMap(dict[str, Any]):
    """A Go map that prints as JSON (Ollama's ``templateArgs`` and ``templateProperties``)."""

    def go_json(self) -> str:
        return gofmt.to_json(dict(self))

    def go_string(self) -> str:
        return self.go_json()


class _OrderedMap(dict[str, Any]):
    """An insertion-ordered map (Ollama's ``ToolPropertiesMap``), encoded in order."""

    def go_json(self) -> str:
        return gofmt.ordered_json(self)

    def go_string(self) -> str:
        return self.go_json()


class _PropertyType(list[str]):
    """A JSON-schema ``type``: one name or several."""

    def go_json(self) -> str:
        return gofmt.json_string(self[0]) if len(self) == 1 else gofmt.to_json(list(self))

    def go_string(self) -> str:
        return "" if not self else self[0] if len(self) == 1 else "[" + " ".join(self) + "]"


class _ToolList(list[Any]):
    """The ``.Tools`` list, printed as a JSON array."""

    def go_json(self) -> str:
        return "[" + ",".join(gofmt.to_json(tool) for tool in self) + "]"

    def go_string(self) -> str:
        return self.go_json()


_TS_TYPES: Final = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


class _ToolProperty(_GoStruct):
    any_of: list[_ToolProperty]
    type: _PropertyType
    items: Any
    description: str
    enum: list[Any]
    properties: _OrderedMap | None
    required: list[str]

    go_fields: ClassVar[Mapping[str, str]] = {
        "AnyOf": "any_of",
        "Type": "type",
        "Items": "items",
        "Description": "description",
        "Enum": "enum",
        "Properties": "properties",
        "Required": "required",
    }
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("anyOf", "any_of", True),
        ("type", "type", True),
        ("items", "items", True),
        ("description", "description", True),
        ("enum", "enum", True),
        ("properties", "properties", True),
        ("required", "required", True),
    )

    def typescript(self) -> str:
        """The property's type written as a TypeScript type."""
        if self.any_of:
            return " | ".join(p.typescript() for p in self.any_of)
        if not self.type:
            return "any"
        return " | ".join(_TS_TYPES.get(t, "any") for t in self.type)


class _ToolParameters(_GoStruct):
    type: str
    defs: Any
    items: Any
    required: list[str]
    properties: _JSONMap | None

    go_fields: ClassVar[Mapping[str, str]] = {
        "Type": "type",
        "Defs": "defs",
        "Items": "items",
        "Required": "required",
        "Properties": "properties",
    }
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("type", "type", False),
        ("$defs", "defs", True),
        ("items", "items", True),
        ("required", "required", True),
        ("properties", "properties", False),
    )


class _ToolFunction(_GoStruct):
    name: str
    description: str
    parameters: _ToolParameters

    go_fields: ClassVar[Mapping[str, str]] = {"Name": "name", "Description": "description", "Parameters": "parameters"}
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("name", "name", False),
        ("description", "description", False),
        ("parameters", "parameters", False),
    )


class _Tool(_GoStruct):
    type: str
    items: Any
    function: _ToolFunction

    go_fields: ClassVar[Mapping[str, str]] = {"Type": "type", "Items": "items", "Function": "function"}
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("type", "type", False),
        ("items", "items", True),
        ("function", "function", False),
    )


class _ToolCallFunction(_GoStruct):
    index: int
    name: str
    arguments: _JSONMap

    go_fields: ClassVar[Mapping[str, str]] = {"Index": "index", "Name": "name", "Arguments": "arguments"}
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (
        ("Index", "index", False),
        ("Name", "name", False),
        ("Arguments", "arguments", False),
    )


class _ToolCall(_GoStruct):
    id: str
    function: _ToolCallFunction

    go_fields: ClassVar[Mapping[str, str]] = {"ID": "id", "Function": "function"}
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = (("ID", "id", False), ("Function", "function", False))


class _Message(_GoStruct):
    role: str
    content: str
    thinking: str
    images: list[Any]
    tool_calls: list[_ToolCall]
    tool_name: str
    tool_call_id: str

    go_fields: ClassVar[Mapping[str, str]] = {
        "Role": "role",
        "Content": "content",
        "Thinking": "thinking",
        "Images": "images",
        "ToolCalls": "tool_calls",
        "ToolName": "tool_name",
        "ToolCallID": "tool_call_id",
    }
    json_fields: ClassVar[tuple[tuple[str, str, bool], ...]] = tuple(
        (go, attribute, False) for go, attribute in go_fields.items()
    )


def _go_any(value: Any) -> Any:
    """A decoded JSON value as Go's ``any`` holds it: every number is a float64."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _go_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_go_any(v) for v in value]
    return value


def _property_type(value: Any) -> _PropertyType:
    if isinstance(value, str):
        return _PropertyType([value])
    if isinstance(value, (list, tuple)):
        return _PropertyType(str(v) for v in value)
    return _PropertyType()


def _tool_property(data: Mapping[str, Any]) -> _ToolProperty:
    nested = data.get("properties")
    return _ToolProperty(
        any_of=[_tool_property(p) for p in data.get("anyOf") or () if isinstance(p, Mapping)],
        type=_property_type(data.get("type")),
        items=_go_any(data.get("items")),
        description=str(data.get("description") or ""),
        enum=_go_any(list(data.get("enum") or ())),
        properties=(
            _OrderedMap({k: _tool_property(v) for k, v in nested.items() if isinstance(v, Mapping)})
            if isinstance(nested, Mapping)
            else None
        ),
        required=[str(r) for r in data.get("required") or ()],
    )


def _tool(data: Mapping[str, Any]) -> _Tool:
    function = data.get("function") or {}
    parameters = function.get("parameters") or {}
    properties = parameters.get("properties")
    return _Tool(
        type=str(data.get("type") or ""),
        items=_go_any(data.get("items")),
        function=_ToolFunction(
            name=str(function.get("name") or ""),
            description=str(function.get("description") or ""),
            parameters=_ToolParameters(
                type=str(parameters.get("type") or ""),
                defs=_go_any(parameters.get("$defs")),
                items=_go_any(parameters.get("items")),
                required=[str(r) for r in parameters.get("required") or ()],
                properties=(
                    _JSONMap({k: _tool_property(v) for k, v in properties.items() if isinstance(v, Mapping)})
                    if isinstance(properties, Mapping)
                    else None
                ),
            ),
        ),
    )


def _arguments(value: Any) -> _JSONMap:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = {}
    return _JSONMap(_go_any(value) if isinstance(value, Mapping) else {})


def _tool_call(data: Mapping[str, Any]) -> _ToolCall:
    function = data.get("function") or {}
    return _ToolCall(
        id=str(data.get("id") or ""),
        function=_ToolCallFunction(
            index=int(function.get("index") or 0),
            name=str(function.get("name") or ""),
            arguments=_arguments(function.get("arguments")),
        ),
    )


def _message(data: Mapping[str, Any]) -> _Message:
    return _Message(
        role=str(data.get("role") or ""),
        content=str(data.get("content") or ""),
        thinking=str(data.get("thinking") or ""),
        images=list(data.get("images") or ()),
        tool_calls=[_tool_call(c) for c in data.get("tool_calls") or ()],
        tool_name=str(data.get("tool_name") or ""),
        tool_call_id=str(data.get("tool_call_id") or ""),
    )


# ---------------------------------------------------------------------------------------------
# Built-in functions


def _is_true(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (bool, int, float)):
        return bool(value)
    if isinstance(value, (str, bytes, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__.lstrip("_")


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    for other in others:
        kinds = {_kind(first), _kind(other)}
        if len(kinds) > 1 and "nil" not in kinds:
            raise TemplateError("incompatible types for comparison")
        if first == other and len(kinds) == 1:
            return True
    return False


def _ne(first: Any, second: Any) -> bool:
    return not _eq(first, second)


def _lt(first: Any, second: Any) -> bool:
    kind = _kind(first)
    if kind not in ("number", "string") or _kind(second) not in ("number", "string"):
        raise TemplateError("invalid type for comparison")
    if kind != _kind(second):
        raise TemplateError("incompatible types for comparison")
    return bool(first < second)


def _le(first: Any, second: Any) -> bool:
    return _lt(first, second) or _eq(first, second)


def _gt(first: Any, second: Any) -> bool:
    return not _le(first, second)


def _ge(first: Any, second: Any) -> bool:
    return not _lt(first, second)


def _not(value: Any) -> bool:
    return not _is_true(value)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (bytes, list, tuple, Mapping)):
        return len(value)
    raise TemplateError(f"len of type {_type_name(value)}")


def _position(index: Any, size: int, *, inclusive: bool = False) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        raise TemplateError(f"cannot index slice/array with type {_type_name(index)}")
    if index < 0 or index > size or (index == size and not inclusive):
        raise TemplateError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    for index in indexes:
        if item is None:
            raise TemplateError("index of untyped nil")
        if isinstance(item, Mapping):
            item = item.get(index)
        elif isinstance(item, str):
            item = item.encode()[_position(index, len(item.encode()))]
        elif isinstance(item, (list, tuple, bytes)):
            item = item[_position(index, len(item))]
        else:
            raise TemplateError(f"can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise TemplateError(f"can't slice item of type {_type_name(item)}")
    if len(indexes) > 3:
        raise TemplateError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise TemplateError("cannot 3-index slice a string")
    size = len(item)
    bounds = [_position(i, size, inclusive=True) for i in indexes]
    for low, high in itertools.pairwise(bounds):
        if low > high:
            raise TemplateError(f"invalid slice index: {low} > {high}")
    start = bounds[0] if bounds else 0
    stop = bounds[1] if len(bounds) > 1 else size
    return item[start:stop]


def _sprint(*args: Any) -> str:
    out = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(gofmt.sprint(arg))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(gofmt.sprint(arg) for arg in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|[0-9]+)?(?:\.(\*|[0-9]*))?(.?)", re.DOTALL)


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_type_name(arg)}={gofmt.sprint(arg)})"


def _format_number(verb: str, flags: str, precision: int | None, arg: Any) -> str | None:
    if isinstance(arg, bool):
        return None
    if verb in "dboxXcqU" and isinstance(arg, int):
        sign = "+" if "+" in flags and arg >= 0 else ""
        if verb == "d":
            return sign + str(arg)
        if verb == "c":
            return chr(arg)
        if verb == "q":
            return "'" + gofmt.quote(chr(arg))[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
        if verb == "U":
            return f"U+{arg:04X}"
        prefix = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}[verb] if "#" in flags else ""
        body = format(abs(arg), {"b": "b", "o": "o", "x": "x", "X": "X"}[verb])
        return ("-" if arg < 0 else sign) + prefix + body
    if verb in "eEfFgG" and isinstance(arg, float):
        if verb in "gG" and precision is None:
            text = gofmt.format_float(arg)
            return text.upper() if verb == "G" else text
        text = format(arg, f"{'+' if '+' in flags else ''}.{6 if precision is None else precision}{verb}")
        return text.replace("inf", "+Inf").replace("nan", "NaN") if verb in "fF" else text
    return None


def _format_value(verb: str, flags: str, precision: int | None, arg: Any) -> str:
    if verb == "v":
        return gofmt.go_syntax(arg) if "#" in flags else gofmt.sprint(arg)
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else _bad_verb(verb, arg)
    if verb in ("s", "q", "x", "X") and (isinstance(arg, str) or hasattr(arg, "go_string")):
        text = arg if isinstance(arg, str) else arg.go_string()
        if precision is not None and verb == "s":
            text = text[:precision]
        if verb == "s":
            return text
        if verb == "q":
            return gofmt.quote(text)
        hexed = text.encode().hex()
        return hexed.upper() if verb == "X" else hexed
    if verb == "s" and isinstance(arg, (list, tuple)):
        return "[" + " ".join(_format_value("s", flags, precision, a) for a in arg) + "]"
    number = _format_number(verb, flags, precision, arg)
    return number if number is not None else _bad_verb(verb, arg)


def _sprintf(template: str, *args: Any) -> str:
    out: list[str] = []
    position = 0
    used = 0
    for match in _VERB.finditer(template):
        out.append(template[position : match.start()])
        position = match.end()
        flags, width_text, precision_text, verb = match.groups()
        if verb == "%" and not flags and width_text is None and precision_text is None:
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            continue
        width = precision = None
        if width_text == "*":
            width, used = (args[used] if used < len(args) and isinstance(args[used], int) else None), used + 1
        elif width_text:
            width = int(width_text)
        if precision_text == "*":
            precision, used = (args[used] if used < len(args) and isinstance(args[used], int) else None), used + 1
        elif precision_text is not None:
            precision = int(precision_text or "0")
        if used >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        text = _format_value(verb, flags, precision, args[used])
        used += 1
        if width is not None and len(text) < width:
            if "-" in flags:
                text = text.ljust(width)
            elif "0" in flags and verb in "dfFeEgGxXbo" and text[:1] in "+-":
                text = text[0] + text[1:].rjust(width - 1, "0")
            else:
                text = text.rjust(width, "0" if "0" in flags and verb in "dfFeEgGxXbo" else " ")
        out.append(text)
    out.append(template[position:])
    if used < len(args):
        extra = ", ".join(f"{_type_name(a)}={gofmt.sprint(a)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _printf(template: Any, *args: Any) -> str:
    if not isinstance(template, str):
        raise TemplateError(f"wrong type for value; expected string; got {_type_name(template)}")
    return _sprintf(template, *args)


def _escape_argument(args: Sequence[Any]) -> str:
    return args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(*args)


def _html(*args: Any) -> str:
    text = _escape_argument(args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
    return "".join(table.get(ch, ch) for ch in text)


def _js(*args: Any) -> str:
    text = _escape_argument(args)
    table = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}
    out = []
    for ch in text:
        if ch in table:
            out.append(table[ch])
        elif ord(ch) < 0x20 or not (ch.isascii() or unicodedata.category(ch)[0] in "LMNPS" or ch == " "):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_escape_argument(args), safe="")


def _call(function: Any, *args: Any) -> Any:
    raise TemplateError(f"can't call non-function of type {_type_name(function)}")


def _json(value: Any) -> str:
    try:
        return gofmt.to_json(value)
    except (TypeError, ValueError):
        return ""


def _current_date(*_: Any) -> str:
    return datetime.date.today().isoformat()


def _yesterday_date(*_: Any) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


def _to_typescript_type(value: Any) -> str:
    return value.typescript() if isinstance(value, _ToolProperty) else "any"


_FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "call": _call,
    "eq": _eq,
    "ge": _ge,
    "gt": _gt,
    "html": _html,
    "index": _index,
    "js": _js,
    "le": _le,
    "len": _len,
    "lt": _lt,
    "ne": _ne,
    "not": _not,
    "print": _sprint,
    "printf": _printf,
    "println": _sprintln,
    "slice": _slice,
    "urlquery": _urlquery,
    "json": _json,
    "currentDate": _current_date,
    "yesterdayDate": _yesterday_date,
    "toTypeScriptType": _to_typescript_type,
}
_FUNCTION_NAMES: Final = frozenset(_FUNCTIONS) | {"and", "or"}


# ---------------------------------------------------------------------------------------------
# Execution


class _Missing:
    """No value: the absent final argument of a pipeline's first command."""


_MISSING: Final = _Missing()


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


class _State:
    """One execution: the output, the variable stack and the current line for errors."""

    def __init__(self, defines: Mapping[str, list[_Node]], out: list[str], depth: int = 0) -> None:
        self.defines = defines
        self.out = out
        self.vars: list[list[Any]] = []
        self.line = 1
        self.depth = depth

    def error(self, message: str) -> TemplateError:
        return TemplateError(f"template: :{self.line}: executing: {message}")

    def lookup(self, name: str) -> Any:
        for variable in reversed(self.vars):
            if variable[0] == name:
                return variable[1]
        raise self.error(f"undefined variable: {name}")

    def assign(self, name: str, value: Any) -> None:
        for variable in reversed(self.vars):
            if variable[0] == name:
                variable[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    def walk(self, dot: Any, nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                self.line = node.line
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append("" if value is None else gofmt.sprint(value))
            elif isinstance(node, _Branch):
                self.line = node.line
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_with(dot, node)
            elif isinstance(node, _TemplateCall):
                self.line = node.line
                self.call_template(dot, node)
            elif isinstance(node, _Break):
                raise _BreakLoop
            elif isinstance(node, _Continue):
                raise _ContinueLoop

    def walk_if_with(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        if _is_true(value):
            self.walk(value if node.kind == "with" else dot, node.body)
        elif node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe, declare=False)
        items: Iterator[tuple[Any, Any]]
        if value is None:
            items = iter(())
        elif isinstance(value, (bool, float, str)):
            raise self.error(f"range can't iterate over {gofmt.sprint(value)}")
        elif isinstance(value, int):
            if len(node.pipe.decl) > 1:
                raise self.error(f"can't use {value} to iterate over more than one variable")
            items = ((i, i) for i in range(value))
        elif isinstance(value, Mapping):
            items = ((k, value[k]) for k in sorted(value, key=str))
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
        else:
            raise self.error(f"range can't iterate over {gofmt.sprint(value)}")
        ran = False
        for key, element in items:
            ran = True
            iteration = len(self.vars)
            targets = list(
                zip(node.pipe.decl, (element,) if len(node.pipe.decl) == 1 else (key, element), strict=False)
            )
            for name, item in targets:
                if node.pipe.is_assign:
                    self.assign(name, item)
                else:
                    self.vars.append([name, item])
            try:
                self.walk(element, node.body)
            except _ContinueLoop:
                pass
            except _BreakLoop:
                del self.vars[iteration:]
                break
            del self.vars[iteration:]
        if not ran and node.else_body is not None:
            self.walk(dot, node.else_body)
        del self.vars[mark:]

    def call_template(self, dot: Any, node: _TemplateCall) -> None:
        body = self.defines.get(node.name)
        if body is None:
            raise self.error(f'no such template "{node.name}"')
        if self.depth >= _MAX_DEPTH:
            raise self.error(f"exceeded maximum template depth ({_MAX_DEPTH})")
        value = self.pipeline(dot, node.pipe) if node.pipe is not None else None
        state = _State(self.defines, self.out, self.depth + 1)
        state.vars = [["$", value]]
        state.walk(value, body)

    def pipeline(self, dot: Any, pipe: _Pipe, *, declare: bool = True) -> Any:
        value: Any = _MISSING
        for command in pipe.cmds:
            value = self.command(dot, command, value)
        if declare:
            for name in pipe.decl:
                if pipe.is_assign:
                    self.assign(name, value)
                else:
                    self.vars.append([name, value])
        return value

    def not_a_function(self, args: Sequence[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error("can't give argument to non-function")

    def command(self, dot: Any, command: _Command, final: Any) -> Any:
        first = command.args[0]
        if isinstance(first, _Field):
            return self.field_chain(dot, first.idents, command.args, final)
        if isinstance(first, _Chain):
            return self.chain(dot, first, command.args, final)
        if isinstance(first, _Identifier):
            return self.function(dot, first.name, command.args, final)
        if isinstance(first, _Variable):
            value = self.lookup(first.name)
            if not first.idents:
                self.not_a_function(command.args, final)
                return value
            return self.field_chain(value, first.idents, command.args, final)
        self.not_a_function(command.args, final)
        if isinstance(first, _Pipe):
            return self.pipeline(dot, first, declare=True)
        if isinstance(first, _Dot):
            return dot
        if isinstance(first, _Nil):
            raise self.error("nil is not a command")
        assert isinstance(first, _Literal)
        return first.value

    def chain(self, dot: Any, node: _Chain, args: Sequence[_Node], final: Any) -> Any:
        if isinstance(node.node, _Nil):
            raise self.error("indirection through explicit nil")
        return self.field_chain(self.argument(dot, node.node), node.idents, args, final)

    def field_chain(self, receiver: Any, idents: Sequence[str], args: Sequence[_Node], final: Any) -> Any:
        for ident in idents[:-1]:
            receiver = self.field(receiver, ident, has_args=False)
        return self.field(receiver, idents[-1], has_args=len(args) > 1 or final is not _MISSING)

    def field(self, receiver: Any, name: str, *, has_args: bool) -> Any:
        if receiver is None:
            return None
        if isinstance(receiver, _GoStruct) and name in receiver.go_fields:
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function")
            return receiver.field(name)
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            return receiver.get(name)
        raise self.error(f"can't evaluate field {name} in type {_type_name(receiver)}")

    def function(self, dot: Any, name: str, args: Sequence[_Node], final: Any) -> Any:
        operands: list[Callable[[], Any]] = [functools.partial(self.argument, dot, arg) for arg in args[1:]]
        if final is not _MISSING:
            operands.append(lambda: final)
        if name in ("and", "or"):
            if not operands:
                raise self.error(f"wrong number of args for {name}: want at least 1 got 0")
            value = None
            for operand in operands:
                value = operand()
                if _is_true(value) != (name == "and"):
                    return value
            return value
        values = [operand() for operand in operands]
        function = _FUNCTIONS[name]
        try:
            inspect.signature(function).bind(*values)
        except TypeError:
            raise self.error(f"wrong number of args for {name}: got {len(values)}") from None
        try:
            return function(*values)
        except TemplateError as exc:
            raise self.error(f"error calling {name}: {exc}") from None
        except TypeError as exc:
            raise self.error(f"error calling {name}: {exc}") from None

    def argument(self, dot: Any, node: _Node) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.field_chain(dot, node.idents, [node], _MISSING)
        if isinstance(node, _Variable):
            value = self.lookup(node.name)
            return self.field_chain(value, node.idents, [node], _MISSING) if node.idents else value
        if isinstance(node, _Pipe):
            return self.pipeline(dot, node)
        if isinstance(node, _Identifier):
            return self.function(dot, node.name, [node], _MISSING)
        if isinstance(node, _Chain):
            return self.chain(dot, node, [node], _MISSING)
        assert isinstance(node, _Literal)
        return node.value


# ---------------------------------------------------------------------------------------------
# Templates


def _identifiers(nodes: Sequence[_Node]) -> Iterator[str]:
    """Field and variable names as Ollama's ``template.Identifiers`` walks them."""
    for node in nodes:
        if isinstance(node, _Action):
            yield from _identifiers([node.pipe])
        elif isinstance(node, _Branch):
            yield from _identifiers([node.pipe])
            yield from _identifiers(node.body)
            yield from _identifiers(node.else_body or [])
        elif isinstance(node, _TemplateCall):
            if node.pipe is None:
                raise TemplateError("undefined template specified")
            yield from _identifiers([node.pipe])
        elif isinstance(node, _Pipe):
            for command in node.cmds:
                yield from _identifiers(command.args)
        elif isinstance(node, _Field):
            yield from node.idents
        elif isinstance(node, _Variable):
            yield node.name
            yield from node.idents


class _Cutter:
    """Ollama's ``deleteNode``: keep everything up to the first ``.Response`` field, drop the rest."""

    def __init__(self) -> None:
        self.cut = False

    def hit(self, node: _Node) -> bool:
        if isinstance(node, _Field) and "Response" in node.idents:
            self.cut = True
            return False
        return self.cut

    def nodes(self, nodes: Sequence[_Node]) -> list[_Node]:
        return [kept for node in nodes if (kept := self.node(node)) is not None]

    def node(self, node: _Node) -> _Node | None:
        if self.hit(node):
            return None
        if isinstance(node, _Branch):
            body = self.nodes(node.body) if not self.cut else []
            else_body = None if node.else_body is None else [] if self.cut else self.nodes(node.else_body)
            return _Branch(node.kind, node.line, node.pipe, body, else_body)
        if isinstance(node, _Action):
            pipe = self.node(node.pipe)
            return None if pipe is None else _Action(node.line, pipe)  # type: ignore[arg-type]
        if isinstance(node, _Pipe):
            commands = []
            for command in node.cmds:
                args = self.nodes(command.args)
                if not args:
                    return None
                commands.append(_Command(args))
            return _Pipe(node.line, node.decl, node.is_assign, commands)
        return node


class GoTemplate:
    """A parsed Go template, as Ollama parses a Modelfile TEMPLATE.

    Like Ollama, a template that mentions neither ``.Messages`` nor ``.Response`` gets
    ``{{ .Response }}`` appended. Use :func:`parse_template` to build one (parses are cached).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        parser = _Parser(_Lexer(source).run(), _FUNCTION_NAMES)
        root = parser.parse()
        self._defines: dict[str, list[_Node]] = parser.defines
        names = list(_identifiers(root))
        for body in self._defines.values():
            names += _identifiers(body)
        variables = {name.lower() for name in names}
        if "messages" not in variables and "response" not in variables:
            root.append(_Action(0, _Pipe(0, [], False, [_Command([_Field(("Response",))])])))
            variables.add("response")
        self.variables: frozenset[str] = frozenset(variables)
        self._root = root

    def execute(self, data: Any, *, cut_after_response: bool = False) -> str:
        """Run the template with ``data`` as dot; with ``cut_after_response`` everything after the
        first ``.Response`` field is left out."""
        out: list[str] = []
        state = _State(self._defines, out)
        state.vars = [["$", data]]
        root = _Cutter().nodes(self._root) if cut_after_response else self._root
        try:
            state.walk(data, root)
        except (_BreakLoop, _ContinueLoop):
            raise state.error("break or continue outside range") from None
        except RecursionError:
            raise state.error("template nested too deeply") from None
        return "".join(out)


@functools.lru_cache(maxsize=128)
def parse_template(source: str) -> GoTemplate:
    """Parse a Go template (cached by text). Raises :class:`TemplateError` with Go's message."""
    try:
        return GoTemplate(source)
    except RecursionError:
        raise TemplateError("template: :1: template nested too deeply") from None


def template_variables(template: str | GoTemplate) -> frozenset[str]:
    """Lower-cased names of the fields and variables a template references, as Ollama's
    ``Template.Vars``: ``tools`` means tool support, ``suffix`` fill-in-the-middle support."""
    parsed = parse_template(template) if isinstance(template, str) else template
    return parsed.variables


def _collate(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[_Message]]:
    """Join system messages, and merge consecutive messages of one role (except ``tool``)."""
    system: list[str] = []
    collated: list[_Message] = []
    for data in messages:
        message = _message(data)
        if message.role == "system":
            system.append(message.content)
        if collated and collated[-1].role == message.role and message.role != "tool":
            collated[-1].content += "\n\n" + message.content
        else:
            collated.append(message)
    return "\n\n".join(system), collated


def render_go_template(
    template: str | GoTemplate,
    *,
    messages: Sequence[Mapping[str, Any]] = (),
    system: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool = False,
    think_level: str = "",
    is_think_set: bool = False,
    prompt: str | None = None,
    suffix: str | None = None,
) -> str:
    """Render a prompt with a Go template the way Ollama does.

    ``messages`` are chat messages (``role``, ``content``, ``thinking``, ``images``,
    ``tool_calls``, ``tool_name``, ``tool_call_id``); ``system`` is prepended to them as a system
    message and ``prompt`` appended as a user message. A non-empty ``prompt`` with a non-empty
    ``suffix`` renders fill-in-the-middle with only ``.Prompt``, ``.Suffix`` and the thinking
    values. Raises :class:`TemplateError` when the template does not parse or fails to execute.
    """
    parsed = parse_template(template) if isinstance(template, str) else template
    thinking = {"Think": think, "ThinkLevel": think_level, "IsThinkSet": is_think_set}
    if prompt and suffix:
        return parsed.execute({"Prompt": prompt, "Suffix": suffix, "Response": "", **thinking})
    chat = list(messages)
    if system:
        chat.insert(0, {"role": "system", "content": system})
    if prompt:
        chat.append({"role": "user", "content": prompt})
    system_text, collated = _collate(chat)
    if "messages" in parsed.variables:
        data = {
            "System": system_text,
            "Messages": collated,
            "Tools": None if tools is None else _ToolList(_tool(t) for t in tools),
            "Response": "",
            **thinking,
        }
        return parsed.execute(data)
    return _render_legacy(parsed, collated, thinking)


def _render_legacy(template: GoTemplate, messages: Sequence[_Message], thinking: Mapping[str, Any]) -> str:
    """Execute a ``.System``/``.Prompt``/``.Response`` template once per exchange."""
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(template.execute({**turn, **thinking}))
        turn.update(System="", Prompt="", Response="")

    for message in messages:
        if message.role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = message.content
        elif message.role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = message.content
        elif message.role == "assistant":
            turn["Response"] = message.content
    out.append(template.execute({**turn, **thinking}, cut_after_response=True))
    return "".join(out)
