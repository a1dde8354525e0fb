"""Registry v2 Bearer token flow: parse a ``WWW-Authenticate`` challenge and fetch a token.

The realm must be the registry host itself (or a host the policy trusts) and may not downgrade
``https`` to ``http``. Tokens are requested anonymously (no key signature) and the response is
size- and time-capped.
"""

from __future__ import annotations

import base64
import re
import secrets
import time

import httpx
import msgspec

from ollama_core.registry.bodies import network_errors, read_limited, summarize
from ollama_core.registry.errors import RefusedError, UpstreamError
from ollama_core.registry.policy import RegistryPolicy

_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,8192}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Challenge(msgspec.Struct, frozen=True):
    """The parameters of a ``WWW-Authenticate: Bearer`` challenge."""

    realm: str
    service: str = ""
    scope: str = ""


class TokenResponse(msgspec.Struct):
    """A token service reply: ``{"token": ...}`` (Ollama) or ``{"access_token": ...}`` (OAuth style)."""

    token: str = ""
    access_token: str = ""


def parse_challenge(header: str) -> Challenge | None:
    """The Bearer challenge in ``header``, or ``None`` if it is not one or names no realm."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    realm = params.get("realm", "")
    if not realm:
        return None
    return Challenge(realm=realm, service=params.get("service", ""), scope=params.get("scope", ""))


def token_url(challenge: Challenge, registry: httpx.URL, policy: RegistryPolicy) -> httpx.URL:
    """The URL to ask for a token, after checking the realm against the registry and policy."""
    try:
        realm = httpx.URL(challenge.realm)
    except httpx.InvalidURL:
        raise UpstreamError(f"invalid token realm {challenge.realm!r}") from None
    if realm.scheme not in _DEFAULT_PORTS or not realm.host:
        raise RefusedError(f"token realm {challenge.realm!r} is not an http(s) URL")
    if registry.scheme == "https" and realm.scheme != "https":
        raise RefusedError(f"token realm {challenge.realm!r} downgrades https to http")
    policy.check_realm(
        realm.host.lower(),
        realm.port or _DEFAULT_PORTS[realm.scheme],
        registry.host.lower(),
        registry.port or _DEFAULT_PORTS[registry.scheme],
    )
    params: dict[str, str | list[str]] = {
        "service": challenge.service,
        "scope": [scope for scope in challenge.scope.split(" ") if scope],
        "ts": str(int(time.time())),
        "nonce": base64.b64encode(secrets.token_bytes(16)).decode(),
    }
    return realm.copy_merge_params(params)


def fetch_token(http: httpx.Client, challenge: Challenge, registry: httpx.URL, policy: RegistryPolicy) -> str:
    """A bearer token for ``challenge``; raises :class:`RefusedError` or :class:`UpstreamError`."""
    url = token_url(challenge, registry, policy)
    with network_errors("token request"):
        response = http.send(http.build_request("GET", url), stream=True)
    try:
        if response.is_redirect:
            raise UpstreamError(f"token request: unexpected redirect ({response.status_code})")
        body = read_limited(response, policy.max_token_size, policy.body_deadline, "token request")
    finally:
        response.close()
    if response.status_code >= 400:
        raise UpstreamError(f"{response.status_code}: {summarize(body)}" if body else str(response.status_code))
    try:
        reply = msgspec.json.decode(body, type=TokenResponse)
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"token request: invalid response: {exc}") from None
    token = reply.token or reply.access_token
    if not _TOKEN_RE.fullmatch(token):
        raise UpstreamError("token request: the token service returned no usable token")
    return token
