"""Model names: parsing, defaults, validation, display forms and case rules (reference section 5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollama_core.names import InvalidNameError, ModelName, is_valid_name

H80 = "h" * 80
HOST350 = "a" * 350


@pytest.mark.parametrize(
    ("text", "parts", "scheme", "display"),
    [
        ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest"), "https", "llama3.2:latest"),
        ("llama3.2:1b", ("registry.ollama.ai", "library", "llama3.2", "1b"), "https", "llama3.2:1b"),
        ("myuser/m", ("registry.ollama.ai", "myuser", "m", "latest"), "https", "myuser/m:latest"),
        ("example.com:5000/ns/m:v1", ("example.com:5000", "ns", "m", "v1"), "https", "example.com:5000/ns/m:v1"),
        ("example.com/library/m", ("example.com", "library", "m", "latest"), "https", "example.com/library/m:latest"),
        ("registry.ollama.ai/library/m:latest", ("registry.ollama.ai", "library", "m", "latest"), "https", "m:latest"),
        ("registry.ollama.ai/myuser/m", ("registry.ollama.ai", "myuser", "m", "latest"), "https", "myuser/m:latest"),
        ("REGISTRY.Ollama.AI/Library/M:Latest", ("REGISTRY.Ollama.AI", "Library", "M", "Latest"), "https", "M:Latest"),
        ("http://localhost:5000/ns/m:t", ("localhost:5000", "ns", "m", "t"), "http", "localhost:5000/ns/m:t"),
        ("HTTPS://example.com/ns/m", ("example.com", "ns", "m", "latest"), "https", "example.com/ns/m:latest"),
        ("127.0.0.1:11434/a/b:c", ("127.0.0.1:11434", "a", "b", "c"), "https", "127.0.0.1:11434/a/b:c"),
        ("_private/_m:_t", ("registry.ollama.ai", "_private", "_m", "_t"), "https", "_private/_m:_t"),
        (
            "m.v1-x_y:7b-q4_K_M",
            ("registry.ollama.ai", "library", "m.v1-x_y", "7b-q4_K_M"),
            "https",
            "m.v1-x_y:7b-q4_K_M",
        ),
        ("m..x:t..u", ("registry.ollama.ai", "library", "m..x", "t..u"), "https", "m..x:t..u"),
        ("qwen3:0.6b", ("registry.ollama.ai", "library", "qwen3", "0.6b"), "https", "qwen3:0.6b"),
        (f"{H80}/{H80}:{H80}", ("registry.ollama.ai", H80, H80, H80), "https", f"{H80}/{H80}:{H80}"),
        (f"{HOST350}/n/m", (HOST350, "n", "m", "latest"), "https", f"{HOST350}/n/m:latest"),
    ],
)
def test_valid_names(text: str, parts: tuple[str, str, str, str], scheme: str, display: str) -> None:
    name = ModelName.parse(text)
    assert name.parts() == parts
    assert (name.host, name.namespace, name.model, name.tag) == parts
    assert name.scheme == scheme
    assert name.display() == display
    assert name.full() == f"{parts[0]}/{parts[1]}/{parts[2]}:{parts[3]}"
    assert str(name) == name.full()
    assert is_valid_name(text)
    assert ModelName.parse(name.display()).casefold_key() == name.casefold_key()
    assert ModelName.parse(name.full()).parts() == parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "/",
        "//",
        "m:",
        ":t",
        "/m",
        "ns/",
        "a//m",
        "h//ns/m",
        "h/ns/m/",
        "x/y/z/w",
        "a/b/c/d:e",
        "m:t:u",
        "m@sha256:" + "a" * 64,
        "m:t@sha256-" + "a" * 64,
        "@sha256:" + "a" * 64,
        ".",
        "..",
        "../m",
        "ns/..",
        "../../etc/passwd",
        "a/../b",
        "./m",
        ".hidden",
        "-m",
        "m:-t",
        "m:.t",
        "m:..",
        "ns.x/m",
        "example.com:5000/m",
        "localhost:11434/m:latest",
        "m space",
        " m",
        "m\n",
        "m\x00",
        "mödel",
        "m?",
        "m*",
        "m\\x",
        "m/",
        "m#1",
        "h" * 81,
        "m:" + "t" * 81,
        "n" * 81 + "/m",
        "a" * 351 + "/n/m",
        "ftp://h/ns/m",
        "file:///etc/passwd",
        "https://m",
        "https://ns/m",
        "://h/ns/m",
        "https:///ns/m",
    ],
)
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        ModelName.parse(text)
    assert str(info.value) == "invalid model name"
    assert isinstance(info.value, ValueError)
    assert not is_valid_name(text)


@pytest.mark.parametrize(
    "parts",
    [
        ("..", "library", "m", "latest"),
        ("registry.ollama.ai", "a/b", "m", "latest"),
        ("registry.ollama.ai", "library", "..", "latest"),
        ("registry.ollama.ai", "library", "m", ""),
        ("registry.ollama.ai", "library", "m", "a/b"),
        ("registry.ollama.ai", "library", "m", "."),
    ],
)
def test_constructing_an_invalid_name_directly_is_refused(parts: tuple[str, str, str, str]) -> None:
    with pytest.raises(InvalidNameError):
        ModelName(*parts)


def test_scheme_must_be_http_or_https() -> None:
    with pytest.raises(InvalidNameError):
        ModelName("h", "n", "m", "t", scheme="gopher")


def test_case_is_kept_and_matched_by_casefold_key() -> None:
    upper = ModelName.parse("LLaMA3.2:Latest")
    lower = ModelName.parse("llama3.2")
    assert upper.model == "LLaMA3.2"
    assert upper != lower
    assert upper.casefold_key() == lower.casefold_key()
    assert ModelName.parse("Example.COM/NS/m").casefold_key() == ("example.com", "ns", "m", "latest")
    assert upper.casefold_key() != ModelName.parse("llama3.1").casefold_key()


def test_scheme_is_not_part_of_the_display_forms() -> None:
    plain = ModelName.parse("localhost:5000/ns/m:t")
    insecure = ModelName.parse("http://localhost:5000/ns/m:t")
    assert insecure.display() == plain.display()
    assert insecure.full() == plain.full()
    assert insecure.parts() == plain.parts()


def test_non_string_input_is_invalid() -> None:
    assert not is_valid_name(None)  # type: ignore[arg-type]


_FIRST = "abcXYZ019_"
_NS_CHARS = _FIRST + "-"
_MODEL_CHARS = _NS_CHARS + "."


def _part(rest: str, max_len: int) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: a + b, st.sampled_from(_FIRST), st.text(rest, max_size=max_len - 1))


@given(
    host=_part(_MODEL_CHARS + ":", 40),
    namespace=_part(_NS_CHARS, 80),
    model=_part(_MODEL_CHARS, 80),
    tag=_part(_MODEL_CHARS, 80),
)
def test_valid_parts_round_trip_through_every_form(host: str, namespace: str, model: str, tag: str) -> None:
    name = ModelName(host, namespace, model, tag)
    assert ModelName.parse(name.full()) == name
    assert ModelName.parse(name.display()).casefold_key() == name.casefold_key()
    assert ModelName.parse("https://" + name.full()) == name


@given(st.text(max_size=120))
def test_any_text_parses_to_safe_path_components_or_fails(text: str) -> None:
    try:
        name = ModelName.parse(text)
    except InvalidNameError:
        return
    for part in name.parts():
        assert part and part.isascii()
        assert "/" not in part and "\\" not in part and "\x00" not in part
        assert part not in (".", "..")
        assert not part.startswith(".")


@given(st.text(alphabet="ab/:.@-_", max_size=20))
def test_separator_soup_parses_to_safe_parts_or_fails(text: str) -> None:
    try:
        name = ModelName.parse(text)
    except InvalidNameError:
        return
    assert all(part and "/" not in part and not part.startswith(".") for part in name.parts())
    assert "@" not in name.full()
