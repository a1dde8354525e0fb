"""What a chat template supports: tools, suffix (insert) and thinking, for Go and Jinja templates.

Go templates are scanned into a small tree of text, actions and blocks: enough to find the
fields they reference and the literal tags around ``.Thinking`` inside a ``range .Messages``
loop, which is how Ollama recognises a template's thinking support.
"""

from __future__ import annotations

import re

import msgspec

_SPACE = " \t\r\n"
_TRIM_SPACE = frozenset(_SPACE)
_KEYWORD = re.compile(r"^\s*([A-Za-z_]\w*)\b\s*(.*)$", re.DOTALL)
_REFERENCE = re.compile(r"\$\w*(?:\.[A-Za-z_]\w*)*|(?<![\w)\]])(?:\.[A-Za-z_]\w*)+")
_BLOCK_KEYWORDS = frozenset({"if", "range", "with"})
_DEFINE_KEYWORDS = frozenset({"define", "block"})


class GoTemplateSyntaxError(ValueError):
    """The text is not a well-formed Go template (unclosed action, string or block)."""


class _Reference(msgspec.Struct, frozen=True):
    """A field (``.A.B``) or variable (``$x.A``) reference; ``names`` as Go's parser splits them."""

    names: tuple[str, ...]
    is_field: bool


class _Node(msgspec.Struct):
    """Text, an action, or a block (if/range/with/define/block) with its body and else branch."""

    kind: str
    text: str = ""
    references: list[_Reference] = msgspec.field(default_factory=list)
    body: list[_Node] = msgspec.field(default_factory=list)
    else_body: list[_Node] | None = None
    chained: bool = False


def jinja_template_has_tools(template: str) -> bool:
    """Whether a Jinja chat template handles tools (mentions ``tools`` or ``tool_call``)."""
    return "tools" in template or "tool_call" in template


def jinja_template_has_thinking(template: str) -> bool:
    """Whether a Jinja chat template handles thinking (``<think>``/``</think>`` or splits on ``</think>``)."""
    if "<think>" in template and "</think>" in template:
        return True
    splits = "content.split('</think>')" in template or 'content.split("</think>")' in template
    return splits and "reasoning_content" not in template and "<SPECIAL_12>" not in template


def go_template_identifiers(template: str) -> set[str]:
    """Lower-cased names of every field and variable a Go template references (``.Tools`` → ``tools``).

    Raises ``GoTemplateSyntaxError`` for a malformed template.
    """
    names: set[str] = set()
    for kind, content in _lex(template):
        if kind == "action":
            for reference in _references(content):
                names.update(name.lower() for name in reference.names)
    return names


def go_template_thinking_tags(template: str) -> tuple[str, str]:
    """The literal opening and closing tags around ``.Thinking`` inside ``range .Messages``.

    Empty strings when the template has no such construct. Raises ``GoTemplateSyntaxError`` for
    a malformed template.
    """
    root = _parse(template)
    tags = ["", ""]
    _find_thinking_tags(root, [root], tags)
    return tags[0], tags[1]


def _lex(template: str) -> list[tuple[str, str]]:
    """Split a Go template into ``("text", ...)`` and ``("action", ...)`` items, applying trim markers."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    while True:
        start = template.find("{{", pos)
        text = template[pos:] if start < 0 else template[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start < 0:
            if text:
                items.append(("text", text))
            return items
        inner = start + 2
        if template.startswith("-", inner) and template[inner + 1 : inner + 2] in _TRIM_SPACE:
            text = text.rstrip(_SPACE)
            inner += 2
        if text:
            items.append(("text", text))
        end = _action_end(template, inner)
        content = template[inner:end]
        trim_next = len(content) >= 2 and content[-1] == "-" and content[-2] in _SPACE
        if trim_next:
            content = content[:-1]
        if not content.startswith("/*"):
            items.append(("action", content))
        pos = end + 2


def _action_end(template: str, pos: int) -> int:
    """Index of the ``}}`` closing the action whose content starts at ``pos``."""
    if template.startswith("/*", pos):
        close = template.find("*/", pos + 2)
        if close < 0:
            raise GoTemplateSyntaxError("unclosed comment")
        pos = close + 2
    length = len(template)
    while pos < length:
        char = template[pos]
        if char == "}" and template.startswith("}}", pos):
            return pos
        if char in "\"'`":
            pos = _quoted_end(template, pos)
        else:
            pos += 1
    raise GoTemplateSyntaxError("unclosed action")


def _quoted_end(template: str, pos: int) -> int:
    """Index just past the string or character literal that starts at ``pos``."""
    quote = template[pos]
    pos += 1
    while pos < len(template):
        char = template[pos]
        if char == "\\" and quote != "`":
            pos += 2
            continue
        if char == quote:
            return pos + 1
        if char == "\n" and quote != "`":
            break
        pos += 1
    raise GoTemplateSyntaxError("unterminated quoted string")


def _references(content: str) -> list[_Reference]:
    """Field and variable references in an action, ignoring quoted text."""
    unquoted: list[str] = []
    pos = 0
    while pos < len(content):
        char = content[pos]
        if char in "\"'`":
            end = _quoted_end(content, pos)
            unquoted.append(" ")
            pos = end
        else:
            unquoted.append(char)
            pos += 1
    references = []
    for match in _REFERENCE.finditer("".join(unquoted)):
        token = match.group(0)
        if token.startswith("$"):
            references.append(_Reference(tuple(token.split(".")), is_field=False))
        else:
            references.append(_Reference(tuple(token[1:].split(".")), is_field=True))
    return references


def _parse(template: str) -> _Node:
    """Build the block tree of a Go template's main body (``define``d templates are left out)."""
    root = _Node("list")
    stack: list[_Node] = [root]

    def container() -> list[_Node]:
        top = stack[-1]
        return top.else_body if top.else_body is not None else top.body

    for kind, content in _lex(template):
        if kind == "text":
            container().append(_Node("text", text=content))
            continue
        match = _KEYWORD.match(content)
        keyword, rest = (match.group(1), match.group(2)) if match else ("", content)
        if keyword in _BLOCK_KEYWORDS or keyword in _DEFINE_KEYWORDS:
            block = _Node(keyword, references=_references(rest))
            if keyword in _BLOCK_KEYWORDS:
                container().append(block)
            stack.append(block)
        elif keyword == "else":
            top = stack[-1]
            if len(stack) == 1 or top.kind in _DEFINE_KEYWORDS or top.else_body is not None:
                raise GoTemplateSyntaxError("unexpected else")
            top.else_body = []
            chained = _KEYWORD.match(rest)
            if chained and chained.group(1) in ("if", "with"):
                block = _Node(chained.group(1), references=_references(chained.group(2)), chained=True)
                top.else_body.append(block)
                stack.append(block)
        elif keyword == "end":
            while len(stack) > 1 and stack[-1].chained:
                stack.pop()
            if len(stack) == 1:
                raise GoTemplateSyntaxError("unexpected end")
            stack.pop()
        else:
            container().append(_Node("action", references=_references(content)))
    if len(stack) != 1:
        raise GoTemplateSyntaxError(f"unclosed {stack[-1].kind}")
    return root


def _find_thinking_tags(node: _Node, ancestors: list[_Node], tags: list[str]) -> None:
    """Walk ``node``'s children; for every ``.Thinking`` field inside ``range .Messages``, take the
    first and last text of the nearest enclosing list as the tags (the last match wins)."""
    for child in _children(node):
        ancestors.append(child)
        for reference in child.references:
            if reference.is_field and reference.names[0] == "Thinking":
                _take_tags(ancestors, tags)
        _find_thinking_tags(child, ancestors, tags)
        ancestors.pop()


def _children(node: _Node) -> list[_Node]:
    """A list's nodes; a block's body and else branch as lists; nothing for leaves."""
    if node.kind == "list":
        return node.body
    if node.kind not in _BLOCK_KEYWORDS:
        return []
    lists = [_Node("list", body=node.body)]
    if node.else_body is not None:
        lists.append(_Node("list", body=node.else_body))
    return lists


def _take_tags(ancestors: list[_Node], tags: list[str]) -> None:
    loop = next((n for n in reversed(ancestors) if n.kind == "range"), None)
    if loop is None or not any(r.is_field and r.names[0] == "Messages" for r in loop.references):
        return
    enclosing = next((n for n in reversed(ancestors[:-1]) if n.kind == "list"), None)
    if enclosing is None or not enclosing.body:
        return
    first, last = enclosing.body[0], enclosing.body[-1]
    if first.kind == "text":
        tags[0] = first.text.strip()
    if last.kind == "text":
        tags[1] = last.text.strip()
