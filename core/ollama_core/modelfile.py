"""Modelfiles: parsing (with Ollama's exact grammar and errors), splitting into /api/create parts,
and the text ``ollama show --modelfile`` prints.

The parser is the character state machine of Ollama's ``parser/parser.go``: keywords are
case-insensitive letters, ``#`` starts a comment only where a command could start, a value runs
to the end of the line unless it opens a ``"`` or ``\"\"\"`` quote, which may span lines.
"""

from __future__ import annotations

import codecs
import fnmatch
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from ollama_core.options import DEPRECATED_OPTIONS, parse_parameter_value
from ollama_core.prompt.gofmt import go_syntax, is_print, sprint

log = logging.getLogger(__name__)

INSTRUCTIONS: Final[tuple[str, ...]] = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
"""Every Modelfile instruction keyword, lower-cased."""

MESSAGE_ROLES: Final[frozenset[str]] = frozenset({"system", "user", "assistant"})
"""Roles a ``MESSAGE`` may use (lower case only, as Ollama requires)."""

_INVALID_COMMAND = "command must be one of " + ", ".join(f'"{name}"' for name in INSTRUCTIONS[:-1])
_INVALID_COMMAND += f', or "{INSTRUCTIONS[-1]}"'
_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
_QUOTED_COMMANDS = frozenset({"license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"})
_SEMVER = re.compile(
    r"v(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)
_SPACE = " \t"
_NEWLINE = "\r\n"

_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)


class ModelfileError(ValueError):
    """A Modelfile that cannot be parsed or turned into a create request.

    ``line`` is the 1-based line the error was found on, or 0 when Ollama reports none; the
    message then reads ``(line N): ...`` exactly as Ollama's.
    """

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"(line {line}): {message}" if line > 0 else message)
        self.message = message
        self.line = line


class Command(msgspec.Struct, frozen=True):
    """One instruction: ``name`` is ``model`` for FROM, the parameter name for PARAMETER, else the
    lower-cased keyword; ``args`` is the unquoted value (``role: text`` for MESSAGE)."""

    name: str
    args: str
    line: int = 0


class CreateParts(msgspec.Struct, kw_only=True):
    """What a Modelfile contributes to an /api/create request.

    ``files``, ``adapters`` and ``draft_files`` are absolute local paths still to be hashed and
    uploaded as blobs; ``from_`` is the base model name when FROM names no local path.
    """

    from_: str | None = None
    files: list[Path] = msgspec.field(default_factory=list)
    adapters: list[Path] = msgspec.field(default_factory=list)
    draft_files: list[Path] = msgspec.field(default_factory=list)
    template: str | None = None
    system: str | None = None
    license: list[str] = msgspec.field(default_factory=list)
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    messages: list[dict[str, str]] = msgspec.field(default_factory=list)
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None


class Modelfile(msgspec.Struct):
    """A parsed Modelfile: its commands in order."""

    commands: list[Command] = msgspec.field(default_factory=list)

    def to_text(self) -> str:
        """The Modelfile text for these commands, one per line (Ollama's ``Modelfile.String``)."""
        return "".join(format_command(command) + "\n" for command in self.commands)

    def to_create_request(self, base_dir: Path) -> CreateParts:
        """Split the commands into /api/create parts; relative paths resolve against ``base_dir``.

        Raises ``ModelfileError`` for an unknown or malformed parameter, an invalid REQUIRES, a
        missing ADAPTER/DRAFT path, a model directory without model files, or a DRAFT that is the
        FROM path.
        """
        parts = CreateParts()
        files: dict[Path, None] = {}
        drafts: dict[Path, None] = {}
        model_paths: list[Path] = []
        draft_paths: list[Path] = []
        for command in self.commands:
            name, args, line = command.name, command.args, command.line
            if name == "model":
                path = _expand_path(args, base_dir, line)
                found = _local_files(path, line, missing_ok=True)
                if found is None:
                    parts.from_ = args
                    continue
                _reject_same_path(path, draft_paths, line)
                model_paths.append(path)
                files.update(dict.fromkeys(found))
            elif name == "draft":
                path = _expand_path(args, base_dir, line)
                found = _local_files(path, line, missing_ok=False) or []
                _reject_same_path(path, model_paths, line)
                draft_paths.append(path)
                drafts.update(dict.fromkeys(found))
            elif name == "adapter":
                path = _expand_path(args, base_dir, line)
                parts.adapters = _local_files(path, line, missing_ok=False) or []
            elif name == "template":
                parts.template = args
            elif name == "system":
                parts.system = args
            elif name == "license":
                parts.license.append(args)
            elif name == "renderer":
                parts.renderer = args
            elif name == "parser":
                parts.parser = args
            elif name == "requires":
                parts.requires = parse_requires(args, line)
            elif name == "message":
                role, _, content = args.partition(": ")
                parts.messages.append({"role": role, "content": content})
            elif name in DEPRECATED_OPTIONS:
                log.warning("parameter %s is deprecated", name)
            else:
                _add_parameter(parts.parameters, name, args, line)
        parts.files = list(files)
        parts.draft_files = list(drafts)
        return parts


def parse_requires(value: str, line: int = 0) -> str:
    """A REQUIRES version: a semantic version with an optional ``v`` prefix, returned without it."""
    version = value if value.startswith("v") else "v" + value
    if not _SEMVER.fullmatch(version):
        raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)", line)
    return version[1:]


def _add_parameter(parameters: dict[str, Any], name: str, raw: str, line: int) -> None:
    try:
        value = parse_parameter_value(name, raw)
    except ValueError as exc:
        raise ModelfileError(str(exc), line) from None
    existing = parameters.get(name)
    if isinstance(existing, list) and isinstance(value, list):
        existing.extend(value)
    else:
        parameters[name] = value


def _decode(source: str | bytes) -> str:
    """Text of a Modelfile: a UTF-8 or UTF-16 byte-order mark is honoured and removed."""
    if isinstance(source, str):
        return source.removeprefix("\ufeff")
    if source.startswith(codecs.BOM_UTF8):
        return source[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    if source.startswith(codecs.BOM_UTF16_BE):
        return source[2:].decode("utf-16-be", errors="replace")
    if source.startswith(codecs.BOM_UTF16_LE):
        return source[2:].decode("utf-16-le", errors="replace")
    return source.decode("utf-8", errors="replace")


def _unquote(text: str) -> str | None:
    """The value inside ``\"\"\"...\"\"\"`` or ``"..."``, the text itself if unquoted, ``None`` if a
    quote is still open."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _step(ch: str, state: int) -> tuple[int, str, str | None]:
    """The next state for ``ch``, the character to keep ("" for none) and an error, if any."""
    if state == _NIL:
        if ch == "#":
            return _COMMENT, "", None
        if ch in _SPACE or ch in _NEWLINE:
            return _NIL, "", None
        return _NAME, ch, None
    if state == _NAME:
        if ch.isascii() and ch.isalpha():
            return _NAME, ch, None
        if ch in _SPACE:
            return _VALUE, "", None
        return _NIL, "", _INVALID_COMMAND
    if state == _VALUE:
        if ch in _NEWLINE or ch in _SPACE:
            return _NIL, ch, None
        return _VALUE, ch, None
    if state == _PARAMETER:
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            return _PARAMETER, ch, None
        if ch in _SPACE:
            return _VALUE, "", None
        return _NIL, "", "unexpected EOF"
    if state == _MESSAGE:
        if ch.isascii() and ch.isalpha():
            return _MESSAGE, ch, None
        if ch in _SPACE:
            return _VALUE, "", None
        return _NIL, "", "unexpected EOF"
    if ch in _NEWLINE:
        return _NIL, "", None
    return _COMMENT, "", None


def parse_modelfile(source: str | bytes) -> Modelfile:
    """Parse Modelfile text (or bytes, UTF-8 or UTF-16 with a byte-order mark).

    Raises ``ModelfileError``: ``(line N): command must be one of ...`` for an unknown keyword,
    ``(line N): message role must be one of ...``, ``unexpected EOF`` for an unterminated quote
    or a missing value, and ``no FROM line``.
    """
    text = _decode(source)
    commands: list[Command] = []
    state = _NIL
    line = 1
    start = 1
    buffer: list[str] = []
    name = ""
    role = ""
    previous = ""
    for ch in text:
        if ch in _NEWLINE and not (ch == "\n" and previous == "\r"):
            line += 1
        previous = ch
        following, kept, error = _step(ch, state)
        if error == "unexpected EOF":
            raise ModelfileError(f"unexpected EOF: {''.join(buffer)}")
        if error is not None:
            raise ModelfileError(error, line)
        if following != state:
            if state == _NIL:
                start = line
            elif state == _NAME:
                word = "".join(buffer).lower()
                if word not in INSTRUCTIONS:
                    raise ModelfileError(_INVALID_COMMAND, line)
                if word == "from":
                    name = "model"
                elif word == "parameter":
                    following = _PARAMETER
                elif word == "message":
                    following = _MESSAGE
                    name = word
                else:
                    name = word
            elif state == _PARAMETER:
                name = "".join(buffer)
            elif state == _MESSAGE:
                role = "".join(buffer)
                if role not in MESSAGE_ROLES:
                    raise ModelfileError(_INVALID_ROLE, line)
            elif state == _VALUE:
                value = _unquote("".join(buffer).strip())
                if value is None or kept in (" ", "\t"):
                    buffer.append(kept)
                    continue
                if role:
                    value = f"{role}: {value}"
                    role = ""
                commands.append(Command(name, value, start))
            buffer.clear()
            state = following
        if kept and is_print(kept):
            buffer.append(kept)
    if state == _VALUE:
        value = _unquote("".join(buffer).strip())
        if value is None:
            raise ModelfileError("unexpected EOF")
        commands.append(Command(name, f"{role}: {value}" if role else value, start))
    elif state not in (_NIL, _COMMENT):
        raise ModelfileError("unexpected EOF")
    if not any(command.name == "model" for command in commands):
        raise ModelfileError("no FROM line")
    return Modelfile(commands)


def _quote(text: str) -> str:
    if "\n" in text or text.startswith(" ") or text.endswith(" "):
        return f'"""{text}"""' if '"' in text else f'"{text}"'
    return text


def format_command(command: Command) -> str:
    """One command as a Modelfile line, quoting values with newlines or edge spaces."""
    if command.name == "model":
        return f"FROM {command.args}"
    if command.name in _QUOTED_COMMANDS:
        return f"{command.name.upper()} {_quote(command.args)}"
    if command.name == "message":
        role, _, content = command.args.partition(": ")
        return f"MESSAGE {role} {_quote(content)}"
    return f"PARAMETER {command.name} {_quote(command.args)}"


def _parameter_commands(parameters: Mapping[str, Any]) -> Iterable[Command]:
    for name, value in parameters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            yield Command(name, sprint(item))


def format_modelfile(
    *,
    name: str,
    model_path: str,
    adapters: Sequence[str] = (),
    draft: str = "",
    projectors: Sequence[str] = (),
    template: str | None = None,
    system: str = "",
    renderer: str = "",
    parser: str = "",
    parameters: Mapping[str, Any] | None = None,
    license: Sequence[str] = (),
    messages: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The ``modelfile`` text of /api/show for a stored model named ``name`` (its short name).

    Paths are the blob paths of the model, adapter, draft and projector layers; ``template`` is
    printed when not ``None``.
    """
    commands = [Command("model", model_path)]
    commands += [Command("adapter", path) for path in adapters]
    if draft:
        commands.append(Command("draft", draft))
    commands += [Command("model", path) for path in projectors]
    if template is not None:
        commands.append(Command("template", template))
    if system:
        commands.append(Command("system", system))
    if renderer:
        commands.append(Command("renderer", renderer))
    if parser:
        commands.append(Command("parser", parser))
    commands += _parameter_commands(parameters or {})
    commands += [Command("license", text) for text in license]
    commands += [Command("message", f"{m.get('role', '')}: {m.get('content', '')}") for m in messages]
    header = (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        f"# FROM {name}\n\n"
    )
    return header + Modelfile(commands).to_text()


def format_parameters(parameters: Mapping[str, Any]) -> str:
    """The ``parameters`` text of /api/show: ``name`` padded to 30 columns, then the value in Go
    syntax; list values give one line per element."""
    lines = []
    for name, value in parameters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        lines += [f"{name:<30} {go_syntax(item)}" for item in values]
    return "\n".join(lines)


def _expand_path(path: str, base_dir: Path, line: int) -> Path:
    """An absolute path: ``~`` and ``~user`` expanded, relative paths taken from ``base_dir``."""
    if path.startswith(("/", "\\")) or os.path.isabs(path):
        return Path(os.path.abspath(path))
    if path.startswith("~"):
        expanded = os.path.expanduser(path)
        if expanded == path:
            user = path[1:].split("/", 1)[0]
            raise ModelfileError(f"failed to find user '{user}'", line)
        return Path(os.path.abspath(expanded))
    return Path(os.path.abspath(base_dir / path))


def _reject_same_path(path: Path, others: Sequence[Path], line: int) -> None:
    real = os.path.realpath(path)
    if any(os.path.realpath(other) == real for other in others):
        raise ModelfileError(f"DRAFT must not reference the same local path as FROM: {path}", line)


def _local_files(path: Path, line: int, *, missing_ok: bool) -> list[Path] | None:
    """The files to upload for a local path (a file, or a model directory's files); ``None`` when
    the path does not exist and ``missing_ok``."""
    try:
        is_dir = path.is_dir() if path.exists() else None
    except OSError as exc:
        raise ModelfileError(f"stat {path}: {exc.strerror or exc}", line) from None
    if is_dir is None:
        if missing_ok:
            return None
        raise ModelfileError(f"stat {path}: no such file or directory", line)
    if not is_dir:
        return [path]
    try:
        candidates = model_directory_files(path)
    except ModelfileError as exc:
        raise ModelfileError(exc.message, line) from None
    files = []
    root = os.path.realpath(path)
    for found in candidates:
        real = Path(os.path.realpath(found))
        relative = os.path.relpath(real, root)
        if relative == ".." or relative.startswith(".." + os.sep) or os.path.isabs(relative):
            if ".cache" in relative:
                raise ModelfileError(
                    f"insecure path: {relative}\n\nUse --local-dir <dir> when downloading model to disable caching",
                    line,
                )
            raise ModelfileError(f"insecure path: {relative}", line)
        files.append(real)
    return files


def _sniff(path: Path) -> str:
    """A coarse ``http.DetectContentType``: zip archives, binary data, or text."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if any(b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F for b in head):
        return "application/octet-stream"
    return "text/plain"


def _glob(directory: Path, pattern: str, content_type: str = "") -> list[Path]:
    """Matches of ``pattern`` (``*`` never crosses ``/``); any match of another content type
    fails the whole glob, as Ollama's does."""
    head, _, tail = pattern.rpartition("/")
    parents = [directory] if not head else sorted(p for p in directory.iterdir() if p.is_dir())
    matches = sorted(
        child
        for parent in parents
        if parent.is_dir()
        for child in parent.iterdir()
        if fnmatch.fnmatchcase(child.name, tail)
    )
    for match in matches:
        if content_type and match.is_file() and (found := _sniff(match)) != content_type:
            raise ModelfileError(f"invalid content type: expected {found} for {match}")
    return matches


def _first_glob(directory: Path, candidates: Sequence[tuple[str, str]]) -> list[Path]:
    for pattern, content_type in candidates:
        try:
            found = _glob(directory, pattern, content_type)
        except ModelfileError:
            continue
        if found:
            return found
    return []


def model_directory_files(directory: Path) -> list[Path]:
    """The files of a model directory that Ollama uploads: the weights (safetensors, PyTorch or
    GGUF, by priority) plus JSON configs, ``chat_template.jinja`` and ``tokenizer.model``."""
    files = _first_glob(directory, [("model*.safetensors", "")])
    if files:
        files += _glob(directory, "*/model*.safetensors")
    else:
        files = _first_glob(
            directory,
            [
                ("consolidated*.safetensors", ""),
                ("pytorch_model*.bin", "application/zip"),
                ("consolidated*.pth", "application/zip"),
                ("*.gguf", "application/octet-stream"),
                ("*.bin", "application/octet-stream"),
            ],
        )
    if not files:
        raise ModelfileError("no Modelfile or safetensors files found")
    files += _glob(directory, "*.json", "text/plain")
    files += _glob(directory, "*/*.json", "text/plain")
    files += _glob(directory, "chat_template.jinja", "text/plain")
    files += _first_glob(
        directory, [("tokenizer.model", "application/octet-stream"), ("*/tokenizer.model", "text/plain")]
    )
    return files
