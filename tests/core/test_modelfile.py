"""Modelfile parsing with Ollama's grammar, create-request splitting, and `ollama show` output."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from ollama_core.modelfile import (
    Command,
    CreateParts,
    Modelfile,
    ModelfileError,
    format_command,
    format_modelfile,
    format_parameters,
    model_directory_files,
    parse_modelfile,
    parse_requires,
)

INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def pairs(text: str | bytes) -> list[tuple[str, str]]:
    return [(c.name, c.args) for c in parse_modelfile(text).commands]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            f'\nFROM model1\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE """{LLAMA3}"""    \n',
            [
                ("model", "model1"),
                ("adapter", "adapter1"),
                ("license", "MIT"),
                ("param1", "value1"),
                ("param2", "value2"),
                ("template", LLAMA3),
            ],
            id="every-kind",
        ),
        pytest.param(
            '\nFROM "     model 1"\nADAPTER      adapter3\nLICENSE "MIT       "\nPARAMETER param1        value1\n'
            'TEMPLATE """   {{ .Prompt }}   """    \n',
            [
                ("model", "     model 1"),
                ("adapter", "adapter3"),
                ("license", "MIT       "),
                ("param1", "value1"),
                ("template", "   {{ .Prompt }}   "),
            ],
            id="trim-space",
        ),
        pytest.param('FROM "FOO  BAR  "', [("model", "FOO  BAR  ")], id="quoted-from"),
        pytest.param("FROM     FOOO BAR    ", [("model", "FOOO BAR")], id="inner-spaces"),
        pytest.param("FROM /what/is/the path ", [("model", "/what/is/the path")], id="path-with-space"),
        pytest.param("FROM llama3:7b-instruct-q4_K_M", [("model", "llama3:7b-instruct-q4_K_M")], id="tag"),
        pytest.param("PARAMETER param1 value1\nFROM foo", [("param1", "value1"), ("model", "foo")], id="any-order"),
        pytest.param(
            "PARAMETER what the \nFROM lemons make lemonade ",
            [("what", "the"), ("model", "lemons make lemonade")],
            id="trailing-spaces",
        ),
        pytest.param(
            "from foo\nSyStEm hi\nParameter top_k 1",
            [("model", "foo"), ("system", "hi"), ("top_k", "1")],
            id="case-insensitive",
        ),
        pytest.param(
            "\nFROM foo\nRENDERER renderer1\nPARSER parser1\nDRAFT ./assistant\nREQUIRES 0.14.0\n",
            [
                ("model", "foo"),
                ("renderer", "renderer1"),
                ("parser", "parser1"),
                ("draft", "./assistant"),
                ("requires", "0.14.0"),
            ],
            id="newer-instructions",
        ),
        pytest.param("\n# comment\nFROM foo\n\t", [("model", "foo")], id="comment"),
        pytest.param(
            "  # indented comment\nFROM foo # not a comment",
            [("model", "foo # not a comment")],
            id="comment-only-at-line-start",
        ),
        pytest.param("FROM test\n\tSYSTEM 你好👋", [("model", "test"), ("system", "你好👋")], id="multibyte"),
        pytest.param("\ufeffFROM foo\nSYSTEM x", [("model", "foo"), ("system", "x")], id="bom"),
        pytest.param("FROM foo\r\nSYSTEM a b\r\n", [("model", "foo"), ("system", "a b")], id="crlf"),
        pytest.param(
            "FROM foo\nSYSTEM single 'quotes' stay",
            [("model", "foo"), ("system", "single 'quotes' stay")],
            id="single-quotes",
        ),
    ],
)
def test_parse(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('SYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
        ('SYSTEM """\nThis is a\nmultiline system."""\n', "\nThis is a\nmultiline system."),
        ('SYSTEM """This is a\nmultiline system."""', "This is a\nmultiline system."),
        ('SYSTEM """This is a multiline system."""', "This is a multiline system."),
        (
            'SYSTEM """\nThis is a multiline system with "quotes".\n"""\n',
            '\nThis is a multiline system with "quotes".\n',
        ),
        ('SYSTEM """"""\n', ""),
        ('SYSTEM ""\n', ""),
        ('SYSTEM "\'"\n', "'"),
        ('SYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""\n', "''\"'\"\"'\"\"'\"'''''\"\"'\"\"'"),
        ('SYSTEM "line one\nline two"', "line one\nline two"),
        ('TEMPLATE """\n{{ .Prompt }}\n"""', "\n{{ .Prompt }}\n"),
    ],
)
def test_quoted_values(text: str, expected: str) -> None:
    assert pairs("FROM foo\n" + text)[1][1] == expected


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("stop ### User:", "### User:"),
        ("stop ### User: ", "### User:"),
        ('stop "### User:"', "### User:"),
        ('stop "### User: "', "### User: "),
        ('stop """### User:"""', "### User:"),
        ('stop """### User:\n"""', "### User:\n"),
        ("stop <|eot_id|>", "<|eot_id|>"),
        ("num_ctx 1", "1"),
        ("penalize_newline true", "true"),
    ],
)
def test_parameter_lines(raw: str, value: str) -> None:
    name = raw.split(" ", 1)[0]
    assert pairs(f"FROM foo\nPARAMETER {raw}\n") == [("model", "foo"), (name, value)]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("\nFROM foo\nBADCOMMAND param1 value1\n", INVALID_COMMAND, 3),
        ("FROM foo\n\n\n  BAD-COMMAND x", INVALID_COMMAND, 4),
        ("FROM\n", INVALID_COMMAND, 2),
        ("FROM foo\r\nSYSTEM x\r\nBAD z\r\n", INVALID_COMMAND, 3),
        (
            "\nFROM foo\nMESSAGE badguy I'm a bad guy!\n",
            'message role must be one of "system", "user", or "assistant"',
            3,
        ),
        ("FROM foo\nMESSAGE User hi\n", 'message role must be one of "system", "user", or "assistant"', 2),
    ],
)
def test_errors_carry_line_numbers(text: str, message: str, line: int) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    assert info.value.line == line
    assert str(info.value) == f"(line {line}): {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FROM line"),
        ("PARAMETER param1 value1", "no FROM line"),
        ("# only a comment\n", "no FROM line"),
        ("\nFROM foo\nPARAMETER param1\n", "unexpected EOF: param1"),
        ("\nFROM foo\nMESSAGE system\n", "unexpected EOF: system"),
        ("\nFROM foo\nMESSAGE system", "unexpected EOF"),
        ('\nFROM foo\nSYSTEM """This is a multiline system.""\n\t\t\t', "unexpected EOF"),
        ('\nFROM foo\nSYSTEM "\n\t\t\t', "unexpected EOF"),
        ('FROM foo\nSYSTEM "hello" world\n', "unexpected EOF"),
        ("FROM", "unexpected EOF"),
    ],
)
def test_errors_without_line_numbers(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    assert str(info.value) == message


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8-sig"])
def test_byte_order_marks(encoding: str) -> None:
    text = "FROM bob\nPARAMETER param1 1\nSYSTEM You are a utf16 file. 👋\n"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-8-sig": b""}[encoding]
    assert pairs(bom + text.encode(encoding)) == [
        ("model", "bob"),
        ("param1", "1"),
        ("system", "You are a utf16 file. 👋"),
    ]


def test_command_lines_are_recorded() -> None:
    modelfile = parse_modelfile('# c\nFROM foo\nSYSTEM """\na\n"""\nPARAMETER top_k 3\n')
    assert [c.line for c in modelfile.commands] == [2, 3, 6]


def test_control_characters_are_dropped_outside_quotes() -> None:
    assert pairs("FROM foo\nSYSTEM a\x1bb\x00c")[1] == ("system", "abc")


# -- create requests ----------------------------------------------------------------------------


def test_create_request_from_name() -> None:
    modelfile = parse_modelfile(
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nSYSTEM You are a bot.\nLICENSE license1\n"
        "LICENSE license2\nMESSAGE user Hello there!\nMESSAGE assistant Hi! How are you?\nTEMPLATE {{ .Prompt }}\n"
        "RENDERER qwen3-coder\nPARSER qwen3-coder\nREQUIRES v0.14.1\n"
    )
    parts = modelfile.to_create_request(Path("/nonexistent"))
    assert parts == CreateParts(
        from_="test",
        template="{{ .Prompt }}",
        system="You are a bot.",
        license=["license1", "license2"],
        parameters={"temperature": 0.5, "top_k": 1},
        messages=[{"role": "user", "content": "Hello there!"}, {"role": "assistant", "content": "Hi! How are you?"}],
        requires="0.14.1",
        renderer="qwen3-coder",
        parser="qwen3-coder",
    )


def test_stop_parameters_accumulate_and_deprecated_ones_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    modelfile = parse_modelfile(
        'FROM x\nPARAMETER stop <|im_end|>\nPARAMETER mirostat 2\nPARAMETER stop "<|im_start|>"\nPARAMETER num_ctx 4096\n'
    )
    with caplog.at_level(logging.WARNING):
        parts = modelfile.to_create_request(Path("."))
    assert parts.parameters == {"stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 4096}
    assert "mirostat is deprecated" in caplog.text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("PARAMETER bogus 1", "(line 2): unknown parameter 'bogus'"),
        ("PARAMETER num_ctx lots", "(line 2): invalid int value [lots]"),
        ("REQUIRES latest", "(line 2): requires must be a valid semver (e.g. 0.14.0)"),
        ("ADAPTER ./missing.gguf", "(line 2): stat "),
        ("DRAFT ./missing.gguf", "(line 2): stat "),
    ],
)
def test_create_request_errors(tmp_path: Path, line: str, message: str) -> None:
    modelfile = parse_modelfile(f"FROM base\n{line}\n")
    with pytest.raises(ModelfileError) as info:
        modelfile.to_create_request(tmp_path)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.14.0", "0.14.0"),
        ("v1.2.3", "1.2.3"),
        ("1.2", "1.2"),
        ("1", "1"),
        ("1.0.0-rc.1+build.5", "1.0.0-rc.1+build.5"),
    ],
)
def test_requires_accepts_semver(version: str, expected: str) -> None:
    assert parse_requires(version) == expected


@pytest.mark.parametrize("version", ["01.2.3", "1.2.3.4", "1.2-rc1", "x", "", "1.2.3-01"])
def test_requires_rejects_other_versions(version: str) -> None:
    with pytest.raises(ModelfileError):
        parse_requires(version)


def test_create_request_local_files(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    (tmp_path / "mmproj.gguf").write_bytes(b"GGUF\x03\x00\x00\x01")
    (tmp_path / "lora.gguf").write_bytes(b"GGUF\x03\x00\x00\x02")
    (tmp_path / "draft.gguf").write_bytes(b"GGUF\x03\x00\x00\x03")
    modelfile = parse_modelfile("FROM ./model.gguf\nFROM mmproj.gguf\nADAPTER lora.gguf\nDRAFT ./draft.gguf\n")
    parts = modelfile.to_create_request(tmp_path)
    assert parts.from_ is None
    assert parts.files == [tmp_path / "model.gguf", tmp_path / "mmproj.gguf"]
    assert parts.adapters == [tmp_path / "lora.gguf"]
    assert parts.draft_files == [tmp_path / "draft.gguf"]


def test_create_request_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    parts = parse_modelfile("FROM ~/m.gguf").to_create_request(Path("/elsewhere"))
    assert parts.files == [tmp_path / "m.gguf"]


def test_create_request_name_and_projector(tmp_path: Path) -> None:
    (tmp_path / "mmproj.gguf").write_bytes(b"GGUF")
    parts = parse_modelfile("FROM llama3.2:latest\nFROM ./mmproj.gguf").to_create_request(tmp_path)
    assert parts.from_ == "llama3.2:latest"
    assert parts.files == [tmp_path / "mmproj.gguf"]


def test_draft_must_differ_from_from(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    modelfile = parse_modelfile("FROM ./model.gguf\nDRAFT ./model.gguf")
    with pytest.raises(ModelfileError, match="DRAFT must not reference the same local path as FROM"):
        modelfile.to_create_request(tmp_path)


def test_model_directory(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "2_Dense").mkdir(parents=True)
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (model / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").write_text("{}")
    (model / "chat_template.jinja").write_text("{{ messages }}")
    (model / "README.md").write_text("# readme")
    (model / "2_Dense" / "config.json").write_text("{}")
    (model / "2_Dense" / "model.safetensors").write_bytes(b"\x08\x00")
    (model / "tokenizer.model").write_bytes(bytes(range(256)))
    expected = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "2_Dense/model.safetensors",
        "config.json",
        "tokenizer.json",
        "2_Dense/config.json",
        "chat_template.jinja",
        "tokenizer.model",
    ]
    assert [p.relative_to(model).as_posix() for p in model_directory_files(model)] == expected
    parts = parse_modelfile("FROM model").to_create_request(tmp_path)
    assert [p.relative_to(model).as_posix() for p in parts.files] == expected


def test_model_directory_prefers_gguf_then_bin(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    assert [p.name for p in model_directory_files(tmp_path)] == ["a.gguf"]


def test_model_directory_without_weights(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ModelfileError, match="no Modelfile or safetensors files found"):
        parse_modelfile("FROM .").to_create_request(tmp_path)


def test_model_directory_rejects_escaping_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / ".cache" / "blob"
    outside.parent.mkdir()
    outside.write_bytes(b"GGUF\x03\x00")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.gguf").symlink_to(outside)
    with pytest.raises(ModelfileError, match=r"insecure path: \.\./\.cache/blob"):
        parse_modelfile("FROM ./model").to_create_request(tmp_path)


# -- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (Command("model", "/blobs/sha256-abc"), "FROM /blobs/sha256-abc"),
        (Command("system", "plain"), "SYSTEM plain"),
        (Command("system", "two\nlines"), 'SYSTEM "two\nlines"'),
        (Command("system", ' say "hi"'), 'SYSTEM """ say "hi""""'),
        (Command("template", "{{ .Prompt }}"), "TEMPLATE {{ .Prompt }}"),
        (Command("license", "MIT "), 'LICENSE "MIT "'),
        (Command("message", "user: hello there"), "MESSAGE user hello there"),
        (Command("message", "assistant: a\nb"), 'MESSAGE assistant "a\nb"'),
        (Command("stop", "<|eot_id|>"), "PARAMETER stop <|eot_id|>"),
        (Command("stop", "User: "), 'PARAMETER stop "User: "'),
        (Command("draft", "/blobs/d"), "DRAFT /blobs/d"),
        (Command("requires", "0.14.0"), "REQUIRES 0.14.0"),
    ],
)
def test_format_command(command: Command, line: str) -> None:
    assert format_command(command) == line


@pytest.mark.parametrize(
    "text",
    [
        "\nFROM foo\nADAPTER adapter1\nLICENSE MIT\nPARAMETER param1 value1\nPARAMETER param2 value2\nTEMPLATE template1\n"
        "MESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
        "MESSAGE assistant Hello, I want to parse all the things!\n",
        '\nFROM foo\nADAPTER adapter1\nLICENSE """\nVery long and boring legal text.\nBlah blah blah.\n"Oh look, a quote!"\n"""\n\n'
        'PARAMETER param1 value1\nTEMPLATE template1\nMESSAGE system """\nYou are a store greeter. Always respond with "Hello!".\n"""\n',
        '\nFROM foo\nSYSTEM ""\n',
        f'FROM foo\nTEMPLATE """{LLAMA3}"""\nPARAMETER stop " <|eot_id|> "\nDRAFT d\nRENDERER r\nPARSER p\nREQUIRES 1.2.3\n',
    ],
)
def test_text_round_trip(text: str) -> None:
    modelfile = parse_modelfile(text)
    again = parse_modelfile(modelfile.to_text())
    assert [(c.name, c.args) for c in again.commands] == [(c.name, c.args) for c in modelfile.commands]


def test_format_modelfile_for_show(tmp_path: Path) -> None:
    for name in ("sha256-aaa", "sha256-bbb", "sha256-ccc"):
        (tmp_path / name).write_bytes(b"GGUF")
    text = format_modelfile(
        name="smollm2:latest",
        model_path=str(tmp_path / "sha256-aaa"),
        adapters=[str(tmp_path / "sha256-bbb")],
        projectors=[str(tmp_path / "sha256-ccc")],
        template="{{ .System }}\n{{ .Prompt }}",
        system="You are terse.",
        parser="qwen3",
        parameters={"temperature": 0.2, "stop": ["<|im_end|>", "<|im_start|>"], "num_ctx": 4096, "use_mmap": False},
        license=["Apache 2.0"],
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    )
    assert text == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this, replace FROM with:\n"
        "# FROM smollm2:latest\n"
        "\n"
        f"FROM {tmp_path}/sha256-aaa\n"
        f"ADAPTER {tmp_path}/sha256-bbb\n"
        f"FROM {tmp_path}/sha256-ccc\n"
        'TEMPLATE "{{ .System }}\n{{ .Prompt }}"\n'
        "SYSTEM You are terse.\n"
        "PARSER qwen3\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER stop <|im_end|>\n"
        "PARAMETER stop <|im_start|>\n"
        "PARAMETER num_ctx 4096\n"
        "PARAMETER use_mmap false\n"
        "LICENSE Apache 2.0\n"
        "MESSAGE user Hi\n"
        "MESSAGE assistant Hello!\n"
    )
    reparsed = parse_modelfile(text)
    assert [(c.name, c.args) for c in reparsed.commands][6:9] == [
        ("temperature", "0.2"),
        ("stop", "<|im_end|>"),
        ("stop", "<|im_start|>"),
    ]
    parts = reparsed.to_create_request(Path("/models/blobs"))
    assert parts.adapters == [tmp_path / "sha256-bbb"]
    assert parts.files == [tmp_path / "sha256-aaa", tmp_path / "sha256-ccc"]
    assert parts.parameters == {
        "temperature": 0.2,
        "stop": ["<|im_end|>", "<|im_start|>"],
        "num_ctx": 4096,
        "use_mmap": False,
    }
    assert parts.template == "{{ .System }}\n{{ .Prompt }}"
    assert parts.messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def test_format_modelfile_minimal() -> None:
    assert format_modelfile(name="m", model_path="/b/x") == (
        '# Modelfile generated by "ollama show"\n# To build a new Modelfile based on this, replace FROM with:\n'
        "# FROM m\n\nFROM /b/x\n"
    )


def test_format_parameters() -> None:
    text = format_parameters(
        {
            "stop": ["<|im_start|>", "<|im_end|>"],
            "temperature": 0.7,
            "num_ctx": 4096,
            "top_k": 40.0,
            "use_mmap": True,
            "tab": 'a"b\n',
            "big": 1e6,
        }
    )
    assert text.split("\n") == [
        'stop                           "<|im_start|>"',
        'stop                           "<|im_end|>"',
        "temperature                    0.7",
        "num_ctx                        4096",
        "top_k                          40",
        "use_mmap                       true",
        'tab                            "a\\"b\\n"',
        "big                            1e+06",
    ]
    assert format_parameters({}) == ""


def test_modelfile_struct_defaults() -> None:
    assert Modelfile().to_text() == ""


def test_model_directory_reached_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "config.json").write_text("{}")
    (real / "model.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    parts = parse_modelfile(f"FROM {tmp_path / 'link'}\n").to_create_request(tmp_path)
    assert sorted(p.name for p in parts.files) == ["config.json", "model.safetensors"]
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"\0" * 16)
    (real / "model.safetensors").unlink()
    (real / "model.safetensors").symlink_to(outside)
    with pytest.raises(ModelfileError, match="insecure path"):
        parse_modelfile(f"FROM {real}\n").to_create_request(tmp_path)
