"""HTTP access to one repository of a registry: URLs, Bearer auth, redirects and error replies.

Synchronous httpx: pulls and pushes run in a worker thread of the server, and parallel blob parts
use a small thread pool that shares this client's connection pool. Redirects are never followed
implicitly. :meth:`RegistryClient.follow` follows those that stay on the registry and, where the
caller allows it, one hop to the blob storage the registry announces; credentials are only ever
sent to the registry itself.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import httpx

from ollama_core import __version__
from ollama_core.errors import RequestError
from ollama_core.names import ModelName
from ollama_core.registry.auth import fetch_token, parse_challenge
from ollama_core.registry.bodies import network_errors, read_limited, summarize
from ollama_core.registry.errors import RefusedError, RegistryError, UpstreamError
from ollama_core.registry.policy import RegistryPolicy
from ollama_core.registry.transport import GuardedTransport

log = logging.getLogger(__name__)

USER_AGENT = (
    f"ollama-core/{__version__} ({platform.machine().lower()} {platform.system().lower()}) "
    f"Python/{platform.python_version()}"
)

Body = bytes | Callable[[], Iterable[bytes]] | None
"""A request body: bytes, or a factory of a fresh chunk iterator (so a request can be resent)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url`` with the port made explicit."""
    return (url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0))


class RegistryClient:
    """A session with the registry of ``name`` for its ``namespace/model`` repository.

    ``insecure`` selects ``http``; a name spelled with ``http://`` requires it. The registry host
    is checked against the policy before anything is sent.
    """

    def __init__(self, name: ModelName, *, insecure: bool, policy: RegistryPolicy) -> None:
        if name.scheme == "http" and not insecure:
            raise RequestError(400, "insecure protocol http")
        policy.check_registry(name.host)
        self.name = name
        self.policy = policy
        self.base = httpx.URL(f"{'http' if insecure else 'https'}://{name.host}/")
        self.repository = f"{name.namespace}/{name.model}"
        self._token = ""
        self._http = httpx.Client(
            transport=GuardedTransport(policy),
            timeout=httpx.Timeout(
                connect=policy.connect_timeout,
                read=policy.read_timeout,
                write=policy.read_timeout,
                pool=policy.connect_timeout,
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection."""
        self._http.close()

    def manifest_url(self, tag: str) -> httpx.URL:
        """``/v2/<ns>/<model>/manifests/<tag>``."""
        return self.base.join(f"/v2/{self.repository}/manifests/{tag}")

    def blob_url(self, digest: str) -> httpx.URL:
        """``/v2/<ns>/<model>/blobs/<digest>`` (``digest`` must already be validated)."""
        return self.base.join(f"/v2/{self.repository}/blobs/{digest}")

    def uploads_url(self) -> httpx.URL:
        """``/v2/<ns>/<model>/blobs/uploads/``."""
        return self.base.join(f"/v2/{self.repository}/blobs/uploads/")

    def is_registry(self, url: httpx.URL) -> bool:
        """Whether ``url`` has the registry's scheme, host and port."""
        return origin(url) == origin(self.base)

    def send(
        self, method: str, url: httpx.URL, *, what: str, headers: Mapping[str, str] | None = None, body: Body = None
    ) -> httpx.Response:
        """Stream a request to the registry, answering one Bearer challenge; the caller closes it."""
        if not self.is_registry(url):
            raise RefusedError(f"{what}: {url.host} is not the registry host")
        response = self._send(method, url, what=what, headers=headers, body=body, authorize=True)
        if response.status_code != 401:
            return response
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return response
        response.close()
        self._token = fetch_token(self._http, challenge, self.base, self.policy)
        return self._send(method, url, what=what, headers=headers, body=body, authorize=True)

    def send_storage(
        self, method: str, url: httpx.URL, *, what: str, headers: Mapping[str, str] | None = None, body: Body = None
    ) -> httpx.Response:
        """Stream a request to blob storage the registry redirected to (no credentials)."""
        return self._send(method, url, what=what, headers=headers, body=body, authorize=False)

    def follow(
        self, method: str, url: httpx.URL, *, what: str, headers: Mapping[str, str] | None = None, storage: bool
    ) -> tuple[httpx.Response, httpx.URL]:
        """Send, following redirects within the registry and, if ``storage``, one hop to blob storage.

        Returns the final response (the caller closes it) and the URL that produced it.
        """
        for _ in range(self.policy.max_redirects + 1):
            if self.is_registry(url):
                response = self.send(method, url, what=what, headers=headers)
            else:
                response = self.send_storage(method, url, what=what, headers=headers)
            if not response.is_redirect:
                return response, url
            target = self.redirect_target(response, url, what)
            if not self.is_registry(target):
                if not (storage and self.is_registry(url)):
                    raise RefusedError(f"{what}: refusing redirect to {target.host}")
                self.check_storage(target, what)
            url = target
        raise UpstreamError(f"{what}: too many redirects")

    def redirect_target(self, response: httpx.Response, url: httpx.URL, what: str) -> httpx.URL:
        """The absolute ``Location`` of ``response`` (which is closed)."""
        location = response.headers.get("location", "")
        response.close()
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise UpstreamError(f"{what}: invalid redirect location") from None
        if target.scheme not in _DEFAULT_PORTS or not target.host:
            raise RefusedError(f"{what}: refusing redirect to a non-http(s) location")
        return target

    def check_storage(self, target: httpx.URL, what: str) -> None:
        """Check a blob-storage location before use: no https downgrade, every address allowed."""
        if self.base.scheme == "https" and target.scheme != "https":
            raise RefusedError(f"{what}: refusing redirect from https to http")
        self.policy.resolve(target.host, origin(target)[2])

    def location(self, response: httpx.Response, url: httpx.URL, what: str) -> httpx.URL:
        """The upload location a registry response names (``Docker-Upload-Location`` first); same host only."""
        value = response.headers.get("docker-upload-location") or response.headers.get("location", "")
        if not value:
            raise UpstreamError(f"{what}: the registry sent no upload location")
        try:
            target = url.join(value)
        except httpx.InvalidURL:
            raise UpstreamError(f"{what}: invalid upload location") from None
        if not self.is_registry(target):
            raise RefusedError(f"{what}: refusing upload location on another host ({target.host})")
        return target

    def error(self, response: httpx.Response, what: str) -> RegistryError:
        """The error for an unexpected reply; its body is read (bounded) and the response closed."""
        try:
            body = read_limited(response, self.policy.max_error_size, self.policy.body_deadline, what)
        except RegistryError:
            body = b""
        finally:
            response.close()
        status = response.status_code
        if status == 404:
            return UpstreamError(f"{what}: file does not exist", status=404)
        if status == 401:
            return UpstreamError(f"{what}: unauthorized: access denied")
        if response.is_redirect:
            return UpstreamError(f"{what}: unexpected redirect ({status})")
        detail = summarize(body)
        return UpstreamError(f"{what}: {status}: {detail}" if detail else f"{what}: {status}")

    def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        what: str,
        headers: Mapping[str, str] | None,
        body: Body,
        authorize: bool,
    ) -> httpx.Response:
        merged = dict(headers or {})
        if authorize and self._token:
            merged["Authorization"] = f"Bearer {self._token}"
        content = body() if callable(body) else body
        request = self._http.build_request(method, url, headers=merged, content=content)
        log.debug("%s %s", method, url)
        with network_errors(what):
            return self._http.send(request, stream=True)
