"""Environment settings read as Ollama reads them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ollama_core.settings import Settings, parse_bool, parse_duration, parse_host


@pytest.mark.parametrize(
    ("value", "scheme", "host", "port", "url"),
    [
        (None, "http", "127.0.0.1", 11434, "http://127.0.0.1:11434"),
        ("", "http", "127.0.0.1", 11434, "http://127.0.0.1:11434"),
        ("0.0.0.0", "http", "0.0.0.0", 11434, "http://127.0.0.1:11434"),
        ("0.0.0.0:8080", "http", "0.0.0.0", 8080, "http://127.0.0.1:8080"),
        (":9000", "http", "", 9000, "http://127.0.0.1:9000"),
        ("example.com", "http", "example.com", 11434, "http://example.com:11434"),
        ("http://example.com", "http", "example.com", 80, "http://example.com:80"),
        ("https://example.com", "https", "example.com", 443, "https://example.com:443"),
        ("https://example.com:1234/path", "https", "example.com", 1234, "https://example.com:1234"),
        ("ollama.com", "https", "ollama.com", 443, "https://ollama.com:443"),
        ("[::1]:5000", "http", "::1", 5000, "http://[::1]:5000"),
        ("'127.0.0.1:7000'", "http", "127.0.0.1", 7000, "http://127.0.0.1:7000"),
        ("127.0.0.1:99999", "http", "127.0.0.1", 11434, "http://127.0.0.1:11434"),
    ],
)
def test_parse_host(value: str | None, scheme: str, host: str, port: int, url: str) -> None:
    parsed = parse_host(value)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.url) == (scheme, host, port, url)


def test_loopback_detection() -> None:
    assert parse_host("127.0.0.1:1").is_loopback
    assert parse_host("[::1]:1").is_loopback
    assert parse_host("localhost:1").is_loopback
    assert not parse_host("0.0.0.0:1").is_loopback


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("0", 0.0), ("10", 10.0), ("1.5", 1.5), ("300ms", 0.3), ("2h", 7200.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1", "-1m", "-5s"])
def test_negative_durations_mean_forever(text: str) -> None:
    assert parse_duration(text) == math.inf


@pytest.mark.parametrize("text", ["", "abc", "5x", "m", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_bool_follows_go_rules() -> None:
    assert not parse_bool(None) and not parse_bool("") and not parse_bool("0") and not parse_bool("false")
    assert parse_bool("1") and parse_bool("true") and parse_bool("yes-ish")


def test_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "OLLAMA_MODELS": str(tmp_path),
            "OLLAMA_KEEP_ALIVE": "10m",
            "OLLAMA_NUM_PARALLEL": "4",
            "OLLAMA_MAX_QUEUE": "7",
            "OLLAMA_ORIGINS": "http://a.example, app://*",
            "OLLAMA_HOST": "0.0.0.0:1234",
            "OLLAMA_KV_CACHE_TYPE": "Q8_0",
            "OLLAMA_FLASH_ATTENTION": "1",
            "OLLAMA_DISABLED_PLUGINS": " arch_gemma4, ,ollama_api.openai.plugin",
        }
    )
    assert s.models_dir == tmp_path and s.keep_alive == 600 and s.num_parallel == 4 and s.max_queue == 7
    assert s.origins == ("http://a.example", "app://*") and s.host.port == 1234
    assert s.kv_cache_type == "q8_0" and s.flash_attention is True
    assert s.disabled_plugins == ("arch_gemma4", "ollama_api.openai.plugin")
    default = Settings.from_env({})
    assert default.keep_alive == 300 and default.num_parallel == 1 and default.max_queue == 512
    assert default.models_dir == Path.home() / ".ollama" / "models" and default.flash_attention is None
    assert default.disabled_plugins == ()
