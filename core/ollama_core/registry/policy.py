"""Which registries may be contacted, at which addresses, and within which limits.

Every connection is checked after name resolution and before the socket opens: all addresses a
host resolves to must be acceptable. Link-local, cloud-metadata, unspecified, multicast and
reserved addresses are always refused. Loopback and private addresses are refused unless the
policy allows them, or the registry host is listed explicitly in ``registries``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from ollama_core.registry.errors import RefusedError, TransientError
from ollama_core.store import MAX_MANIFEST_SIZE

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
"""Host names of cloud instance-metadata services; refused before any lookup."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
"""Instance-metadata addresses (AWS, ECS, AWS IPv6, Alibaba, Oracle); always refused."""

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")

ALWAYS_REFUSED = frozenset({"metadata", "link-local", "unspecified", "multicast", "reserved"})


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address carried inside an IPv4-mapped, NAT64 or 6to4 IPv6 address, else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def classify(ip: IPAddress) -> str:
    """One of ``metadata``, ``link-local``, ``unspecified``, ``multicast``, ``reserved``,
    ``loopback``, ``private`` (any other non-global address) or ``public``."""
    inner = embedded_ipv4(ip)
    for candidate in {ip, inner}:
        if candidate in METADATA_ADDRESSES:
            return "metadata"
    for candidate in {ip, inner}:
        if candidate.is_link_local:
            return "link-local"
        if candidate.is_unspecified or candidate in _THIS_NETWORK:
            return "unspecified"
        if candidate.is_multicast:
            return "multicast"
    if ip.is_loopback or inner.is_loopback:
        return "loopback"
    if any(c.is_reserved or c == _BROADCAST for c in {ip, inner}):
        return "reserved"
    if not (ip.is_global and inner.is_global):
        return "private"
    return "public"


def parse_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (a ``%zone`` suffix is dropped), or ``None``."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` as ``(lower-case host, port or None)``; brackets around IPv6 are removed."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, int(port) if port.isdigit() else None
    return host, None


@dataclass(frozen=True)
class RegistryPolicy:
    """Where registry traffic may go and how long and how large each part of it may be.

    ``registries`` lists allowed registry hosts (``host`` matches any port, ``host:port`` one port);
    empty means any host that resolves to public addresses. Listed hosts may also resolve to
    loopback and private addresses. ``trusted_realms`` lists token-service hosts accepted besides
    the registry itself. Timeouts are in seconds; a transfer that receives fewer than
    ``min_speed`` bytes per second over any ``speed_window`` fails as stalled.
    """

    registries: tuple[str, ...] = ()
    trusted_realms: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    body_deadline: float = 60.0
    min_speed: int = 1024
    speed_window: float = 30.0
    max_manifest_size: int = MAX_MANIFEST_SIZE
    max_token_size: int = 64 << 10
    max_error_size: int = 64 << 10
    max_blob_size: int = 1 << 40
    max_redirects: int = 5
    retries: int = 5
    retry_backoff: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistryPolicy:
        """The policy set by ``OLLAMA_REGISTRIES`` (comma-separated allowed hosts) and
        ``OLLAMA_REGISTRY_REALMS`` (comma-separated extra token hosts); defaults otherwise."""
        env = os.environ if env is None else env
        return cls(
            registries=_split_list(env.get("OLLAMA_REGISTRIES")),
            trusted_realms=_split_list(env.get("OLLAMA_REGISTRY_REALMS")),
        )

    def is_listed(self, host: str, port: int | None = None) -> bool:
        """Whether ``host`` (optionally ``host:port``) is named in ``registries``."""
        name, own_port = split_host(host)
        port = own_port if port is None else port
        for entry in self.registries:
            entry_name, entry_port = split_host(entry)
            if entry_name == name and (entry_port is None or entry_port == port):
                return True
        return False

    def check_registry(self, host: str) -> None:
        """Refuse a registry host (``host[:port]`` from a model name) that the policy does not allow."""
        name, _ = split_host(host)
        self.check_name(name)
        if self.registries and not self.is_listed(host):
            raise RefusedError(f"registry {host} is not allowed (allowed registries: {', '.join(self.registries)})")

    def check_name(self, name: str) -> None:
        """Refuse host names of metadata services and IP literals that are refused outright."""
        name = name.strip().lower().rstrip(".")
        if name in METADATA_HOSTS:
            raise RefusedError(f"refusing to connect to {name}: cloud metadata service")
        ip = parse_ip(name)
        if ip is not None and (kind := classify(ip)) in ALWAYS_REFUSED:
            raise RefusedError(f"refusing to connect to {name}: {kind} address")

    def check_realm(self, realm_host: str, realm_port: int, registry_host: str, registry_port: int) -> None:
        """Refuse a token realm that is neither the registry itself nor a trusted realm host."""
        if (realm_host, realm_port) == (registry_host, registry_port):
            return
        for entry in self.trusted_realms:
            name, port = split_host(entry)
            if name == realm_host and (port is None or port == realm_port):
                return
        raise RefusedError(
            f"token realm host {realm_host}:{realm_port} does not match registry host {registry_host}:{registry_port}"
        )

    def check_address(self, host: str, port: int, ip: IPAddress) -> None:
        """Refuse connecting to ``ip`` (an address of ``host``) unless the policy allows its kind."""
        kind = classify(ip)
        if kind == "public":
            return
        listed = self.is_listed(host, port)
        if kind == "loopback" and (self.allow_loopback or listed):
            return
        if kind == "private" and (self.allow_private or listed):
            return
        raise RefusedError(f"refusing to connect to {host} ({ip}): {kind} address")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; raises :class:`RefusedError` if any is refused."""
        self.check_name(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise TransientError(f"cannot resolve host {host}: {exc}") from None
        addresses: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            text = str(sockaddr[0])
            ip = parse_ip(text)
            if ip is None:
                raise RefusedError(f"refusing to connect to {host}: unrecognised address {text}")
            self.check_address(host, port, ip)
            if text not in addresses:
                addresses.append(text)
        if not addresses:
            raise TransientError(f"cannot resolve host {host}: no addresses")
        return addresses


def _split_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())
