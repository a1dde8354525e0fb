"""An httpx transport whose connections obey a :class:`RegistryPolicy`.

Host names are resolved and every address is checked before a socket opens (the socket then
connects to a checked address, so a second lookup cannot change the answer). Reads on a
connection fail as stalled when fewer than ``min_speed`` bytes per second arrive over any
``speed_window`` once a response has started, which bounds slow-drip responses that never trip
the per-read idle timeout.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from ollama_core.registry.policy import RegistryPolicy

MAX_CONNECTIONS = 32

_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


class _SpeedMeter:
    """Tumbling-window throughput check for the response side of one connection."""

    def __init__(self, min_speed: int, window: float) -> None:
        self._min_bytes = min_speed * window
        self._window = window
        self._start: float | None = None
        self._received = 0

    def reset(self) -> None:
        self._start = None
        self._received = 0

    def update(self, received: int) -> None:
        if not received:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._received += received
        if now - self._start >= self._window:
            if self._received < self._min_bytes:
                raise httpcore.ReadTimeout(
                    f"transfer stalled: {self._received} bytes in {now - self._start:.1f} s "
                    f"(minimum {self._min_bytes / self._window:.0f} bytes/s)"
                )
            self._start = now
            self._received = 0


class _MeteredStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, policy: RegistryPolicy) -> None:
        self._inner = inner
        self._policy = policy
        self._meter = _SpeedMeter(policy.min_speed, policy.speed_window)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, timeout)
        self._meter.update(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._meter.reset()
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _MeteredStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._policy)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to addresses the policy accepts; never Unix sockets."""

    def __init__(self, policy: RegistryPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self._policy.resolve(host, port):
            try:
                stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _MeteredStream(stream, self._policy)
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for registries")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _mapped():
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            with _mapped():
                close()


class GuardedTransport(httpx.BaseTransport):
    """An HTTP/1.1 transport over :class:`GuardedBackend`, without proxies.

    Certificates are verified against certifi's bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``.
    """

    def __init__(self, policy: RegistryPolicy) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


@contextmanager
def _mapped() -> Iterator[None]:
    """Re-raise httpcore errors as their httpx counterparts (policy refusals pass through)."""
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise
