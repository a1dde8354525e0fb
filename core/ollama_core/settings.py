"""Server and client settings, read from ``OLLAMA_*`` environment variables as Ollama reads them."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0
FOREVER = math.inf

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go duration (``"5m"``, ``"1h30m"``, ``"-1m"``, ``"0"``) or plain seconds; return seconds.

    Negative durations mean "forever" and are returned as ``math.inf``.
    Raises ``ValueError`` for anything else.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        seconds = float(s)
    except ValueError:
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-")
        pos, seconds = 0, 0.0
        while pos < len(body):
            m = _DURATION_PART.match(body, pos)
            if not m:
                raise ValueError(f"time: invalid duration {text!r}") from None
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if not body:
            raise ValueError(f"time: invalid duration {text!r}") from None
        seconds *= sign
    if math.isnan(seconds):
        raise ValueError(f"time: invalid duration {text!r}")
    return FOREVER if seconds < 0 else seconds


def parse_bool(text: str | None) -> bool:
    """Go ``ParseBool`` semantics, where a non-empty unparsable value counts as true."""
    if text is None:
        return False
    s = text.strip().strip("'\"").strip()
    if not s:
        return False
    if s in {"0", "f", "F", "false", "FALSE", "False"}:
        return False
    return True


@dataclass(frozen=True)
class HostAddress:
    """Where the server listens, or where a client connects."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL clients use (``0.0.0.0`` and empty hosts become loopback)."""
        host = self.host
        if host in {"", "0.0.0.0"}:
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """Whether the listener is bound to a loopback address only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_host(value: str | None) -> HostAddress:
    """Parse ``OLLAMA_HOST`` as Ollama does (scheme optional; default ``http://127.0.0.1:11434``)."""
    s = (value or "").strip().strip("'\"").strip()
    default_port = DEFAULT_PORT
    scheme, sep, hostport = s.partition("://")
    if not sep:
        scheme, hostport = "http", s
        if s == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    host, port_text = _split_host_port(hostport)
    if host is None:
        stripped = hostport.strip("[]")
        host = stripped or "127.0.0.1"
        port_text = str(default_port)
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        port = default_port
    return HostAddress(scheme=scheme, host=host, port=port)


def _split_host_port(hostport: str) -> tuple[str | None, str]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1 and hostport[end + 1 : end + 2] == ":":
            return hostport[1:end], hostport[end + 2 :]
        return None, ""
    if hostport.count(":") == 1:
        host, port = hostport.split(":")
        return host, port
    return None, ""


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip().strip("'\"").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _env(env, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from its environment.

    ``disabled_plugins`` (``OLLAMA_DISABLED_PLUGINS``, comma-separated) names plugins not to load:
    entry-point names as ``ollama plugins`` lists them (``arch_gemma4``) or built-in module names.
    """

    host: HostAddress = field(default_factory=lambda: parse_host(None))
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    keep_alive: float = DEFAULT_KEEP_ALIVE
    num_parallel: int = 1
    max_loaded_models: int = 0
    max_queue: int = 512
    context_length: int = 0
    load_timeout: float = 300.0
    origins: tuple[str, ...] = ()
    debug: int = 0
    noprune: bool = False
    flash_attention: bool | None = None
    kv_cache_type: str = "f16"
    gpu_overhead: int = 0
    sched_spread: bool = False
    api_key: str | None = None
    max_blob_size: int = 1 << 40
    max_request_size: int = 64 << 20
    disabled_plugins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        models = _env(env, "OLLAMA_MODELS")
        keep_alive = DEFAULT_KEEP_ALIVE
        if (raw := _env(env, "OLLAMA_KEEP_ALIVE")) is not None:
            try:
                keep_alive = parse_duration(raw)
            except ValueError:
                keep_alive = DEFAULT_KEEP_ALIVE
        load_timeout = 300.0
        if (raw := _env(env, "OLLAMA_LOAD_TIMEOUT")) is not None:
            try:
                load_timeout = parse_duration(raw)
            except ValueError:
                pass
            if load_timeout <= 0:
                load_timeout = FOREVER
        debug_raw = _env(env, "OLLAMA_DEBUG")
        debug = 0
        if debug_raw is not None:
            debug = int(debug_raw) if debug_raw.isdigit() else int(parse_bool(debug_raw))
        fa_raw = _env(env, "OLLAMA_FLASH_ATTENTION")
        origins = tuple(o.strip() for o in (_env(env, "OLLAMA_ORIGINS") or "").split(",") if o.strip())
        return cls(
            host=parse_host(env.get("OLLAMA_HOST")),
            models_dir=Path(models).expanduser() if models else Path.home() / ".ollama" / "models",
            keep_alive=keep_alive,
            num_parallel=max(1, _int(env, "OLLAMA_NUM_PARALLEL", 1)),
            max_loaded_models=max(0, _int(env, "OLLAMA_MAX_LOADED_MODELS", 0)),
            max_queue=max(1, _int(env, "OLLAMA_MAX_QUEUE", 512)),
            context_length=max(0, _int(env, "OLLAMA_CONTEXT_LENGTH", 0)),
            load_timeout=load_timeout,
            origins=origins,
            debug=debug,
            noprune=parse_bool(_env(env, "OLLAMA_NOPRUNE")),
            flash_attention=None if fa_raw is None else parse_bool(fa_raw),
            kv_cache_type=(_env(env, "OLLAMA_KV_CACHE_TYPE") or "f16").lower(),
            gpu_overhead=max(0, _int(env, "OLLAMA_GPU_OVERHEAD", 0)),
            sched_spread=parse_bool(_env(env, "OLLAMA_SCHED_SPREAD")),
            api_key=_env(env, "OLLAMA_API_KEY"),
            max_blob_size=max(1, _int(env, "OLLAMA_MAX_BLOB_SIZE", 1 << 40)),
            max_request_size=max(1024, _int(env, "OLLAMA_MAX_REQUEST_SIZE", 64 << 20)),
            disabled_plugins=_names(_env(env, "OLLAMA_DISABLED_PLUGINS")),
        )
